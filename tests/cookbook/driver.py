"""Runs real tinker-cookbook 0.6.1 recipes, unmodified, one after another in this process.

Started by ``conftest.py`` as ``tinkerkit run --backend mock -- python driver.py OUT NAME...``,
so every recipe finds ``TINKER_BASE_URL``/``TINKER_API_KEY`` and its tokenizer (and a
vision model's image processor) by hub id, exactly as it would online. Each recipe is its
module's own ``__main__`` (``runpy``) with the command line a user would type, shrunk to a
few tiny steps; the two that are library calls in the cookbook (DPO on a local comparisons
file, ``weights.download``) are called as documented, and the VLM classifier gets a local
image folder as one more entry of its dataset table. After each recipe,
``OUT/results.jsonl`` gains a line: name, seconds, error.
"""

from __future__ import annotations

import json
import runpy
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import tinker_cookbook

COOKBOOK = Path(tinker_cookbook.__file__).parent
CONVERSATIONS = COOKBOOK / "example_data" / "conversations.jsonl"


def recipe(module: str, *args: str) -> Callable[[Path], None]:
    """The recipe as ``python -m module args...``."""

    def run(out: Path) -> None:
        argv = [module, *(a.format(out=out) for a in args)]
        saved = sys.argv
        sys.argv = argv
        try:
            runpy.run_module(module, run_name="__main__", alter_sys=True)
        finally:
            sys.argv = saved

    return run


def dpo(out: Path) -> None:
    """``preference.train_dpo`` on a comparisons file on disk (the recipe's CLI only knows hub sets)."""
    from tinker_cookbook.preference import train_dpo
    from tinker_cookbook.preference.dpo_datasets import DPODatasetBuilderFromComparisons
    from tinker_cookbook.preference.preference_datasets import ComparisonBuilderFromJsonl
    from tinker_cookbook.supervised.types import ChatDatasetBuilderCommonConfig

    model = "Qwen/Qwen3.5-9B-Base"
    path = out / "comparisons.jsonl"
    with path.open("w") as f:
        for i in range(8):
            question = f"What is {i} + {i}?"
            comparison = {
                "prompt_conversation": [{"role": "user", "content": question}],
                "completion_A": [{"role": "assistant", "content": f"{2 * i}"}],
                "completion_B": [{"role": "assistant", "content": f"I think it is {i}."}],
            }
            f.write(json.dumps({"comparison": comparison, "label": "A"}) + "\n")
    common = ChatDatasetBuilderCommonConfig(
        model_name_for_tokenizer=model, renderer_name="qwen3_5", max_length=512, batch_size=4
    )
    builder = DPODatasetBuilderFromComparisons(
        common_config=common, comparison_builder=ComparisonBuilderFromJsonl(train_path=str(path))
    )
    config = train_dpo.Config(
        log_path=str(out / "dpo"),
        model_name=model,
        recipe_name="tinkerkit_offline_dpo",
        renderer_name="qwen3_5",
        dataset_builder=builder,
        learning_rate=1e-2,
        dpo_beta=0.1,
        max_steps=2,
    )
    train_dpo.main(config)


def download(out: Path) -> None:
    """``weights.download`` of the SFT run's final training checkpoint."""
    from tinker_cookbook import weights

    rows = [json.loads(line) for line in (out / "sl_basic" / "checkpoints.jsonl").open()]
    state_path = rows[-1]["state_path"]
    weights.download(tinker_path=state_path, output_dir=str(out / "download"))
    (out / "download.json").write_text(json.dumps({"tinker_path": state_path}))


PROMPT_DISTILLATION_DATA = [
    ("Bonjour, comment allez-vous aujourd'hui ?", "fr"),
    ("The weather is lovely this morning.", "en"),
    ("Wie spät ist es bitte?", "de"),
    ("¿Dónde está la estación de tren?", "es"),
    ("Сегодня очень холодно.", "ru"),
    ("今天的天气很好。", "zh"),
    ("Bugün hava çok güzel.", "tr"),
    ("Hôm nay trời đẹp quá.", "vi"),
]


def prompt_distillation(out: Path) -> None:
    """The student half of the recipe, on data in ``create_data.py``'s output format."""
    data = out / "prompt_distillation_lang.jsonl"
    with data.open("w") as f:
        for text, label in PROMPT_DISTILLATION_DATA:
            messages = [{"role": "user", "content": text}, {"role": "assistant", "content": label}]
            f.write(json.dumps({"messages": messages}, ensure_ascii=False) + "\n")
    recipe(
        "tinker_cookbook.recipes.prompt_distillation.train",
        f"file_path={data}",
        "log_path={out}/prompt_distillation",
        "batch_size=4",
        "max_length=256",
        "learning_rate=1e-2",
        "max_steps=2",
        "eval_every=0",
    )(out)


SHAPES = {
    "red_circle": (220, 30, 30),
    "green_square": (30, 190, 30),
    "blue_triangle": (30, 30, 220),
}
# (width, height): square and not, so the processor's resize is exercised both ways
SHAPE_SIZES = [(64, 64), (80, 64), (64, 96)]
VLM_MODEL = "Qwen/Qwen3.5-397B-A17B"  # the recipe's default model and renderer
VLM_RENDERER = "qwen3_5_disable_thinking"


def shapes_folder(root: Path, per_class: dict[str, int]) -> Path:
    """``root/<split>/<class>/<i>.png``: coloured shapes on noise, which
    ``datasets.load_dataset(root)`` reads as an ``imagefolder`` (``image``, ``label``)."""
    import numpy as np
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(0)
    for split, n in per_class.items():
        for name, colour in SHAPES.items():
            (root / split / name).mkdir(parents=True)
            for i in range(n):
                width, height = SHAPE_SIZES[i % len(SHAPE_SIZES)]
                noise = rng.integers(80, 176, size=(height, width, 3), dtype=np.uint8)
                image = Image.fromarray(noise)
                draw = ImageDraw.Draw(image)
                r = int(rng.integers(12, 18))
                x = int(rng.integers(r, width - r))
                y = int(rng.integers(r, height - r))
                if name == "red_circle":
                    draw.ellipse([x - r, y - r, x + r, y + r], fill=colour)
                elif name == "green_square":
                    draw.rectangle([x - r, y - r, x + r, y + r], fill=colour)
                else:
                    draw.polygon([(x, y - r), (x - r, y + r), (x + r, y + r)], fill=colour)
                image.save(root / split / name / f"{i}.png")
    return root


def _chunks(model_input) -> list[dict[str, object]]:
    """What a ``ModelInput`` holds: text chunks' lengths, image chunks' sizes and counts."""
    import io

    from PIL import Image

    rows: list[dict[str, object]] = []
    for chunk in model_input.chunks:
        if chunk.type == "image":
            with Image.open(io.BytesIO(chunk.data)) as image:
                width, height = image.size
            rows.append(
                {
                    "type": "image",
                    "format": chunk.format,
                    "expected_tokens": chunk.expected_tokens,
                    "width": width,
                    "height": height,
                }
            )
        else:
            rows.append({"type": chunk.type, "length": chunk.length})
    return rows


def vlm_classifier(out: Path) -> None:
    """The recipe's launcher, ``python -m ...vlm_classifier.train`` with its own defaults
    (Qwen3.5-397B-A17B, ``qwen3_5_disable_thinking``, NLL and sampling evaluators), on a
    local image folder: ``dataset=shapes`` names a builder added to the recipe's dataset
    and evaluator tables, each the recipe's own ``ClassifierDataset``/``ClassifierEvaluator``
    on that folder (the recipe's builders only name hub datasets)."""
    import chz
    from tinker_cookbook.image_processing_utils import get_image_processor
    from tinker_cookbook.recipes.vlm_classifier import data
    from tinker_cookbook.recipes.vlm_classifier import eval as vlm_eval
    from tinker_cookbook.renderers import TrainOnWhat
    from tinker_cookbook.supervised.types import SupervisedDatasetBuilder

    folder = str(shapes_folder(out / "shapes", {"train": 4, "test": 2}))

    @chz.chz
    class ShapesDatasetBuilder(SupervisedDatasetBuilder):
        model_name_for_tokenizer: str
        renderer_name: str
        num_repeats: float = 1
        batch_size: int = 32
        max_length: int = 8192
        train_on_what: TrainOnWhat | None = None
        examples_per_class: int | None = None
        subset_seed: int = 0
        max_image_size: int = 480
        run_nll_evaluator: bool = False

        def config(self, split: str) -> data.ClassifierDatasetConfig:
            return data.ClassifierDatasetConfig(
                dataset=folder,
                dataset_split=split,
                model_name_for_tokenizer=self.model_name_for_tokenizer,
                renderer_name=self.renderer_name,
                num_repeats=self.num_repeats if split == "train" else 1,
                batch_size=self.batch_size,
                max_length=self.max_length,
                train_on_what=self.train_on_what or TrainOnWhat.LAST_ASSISTANT_MESSAGE,
                examples_per_class=self.examples_per_class if split == "train" else None,
                subset_seed=self.subset_seed,
                max_image_size=self.max_image_size,
                hflip_probability=0.5 if split == "train" else 0.0,
            )

        def __call__(self):
            train = data.ClassifierDataset(self.config("train"))
            test = data.ClassifierDataset(self.config("test")) if self.run_nll_evaluator else None
            return train, test

    @chz.chz
    class ShapesEvaluatorBuilder(vlm_eval.Caltech101EvaluatorBuilder):
        def __call__(self) -> vlm_eval.ClassifierEvaluator:
            return vlm_eval.ClassifierEvaluator(
                vlm_eval.ClassifierEvaluatorConfig(
                    dataset=folder,
                    dataset_split="test",
                    model_name_for_tokenizer=self.model_name_for_tokenizer,
                    renderer_name=self.renderer_name,
                    temperature=self.temperature,
                    max_tokens=self.max_tokens,
                    top_p=self.top_p,
                    top_k=self.top_k,
                    n_eval=self.n_eval,
                    max_parallel_tasks=self.max_parallel_tasks,
                    max_image_size=self.max_image_size,
                )
            )

    data.DATASETS["shapes"] = ShapesDatasetBuilder
    vlm_eval.EVALUATORS["shapes"] = ShapesEvaluatorBuilder
    try:
        recipe(
            "tinker_cookbook.recipes.vlm_classifier.train",
            "experiment_dir={out}/vlm_classifier",
            "dataset=shapes",
            "batch_size=6",
            "num_epochs=2",
            "learning_rate=1e-2",
            "lora_rank=8",
            "save_every=2",
            "eval_every=2",
            "n_eval=3",
            "max_tokens=8",
            "behavior_if_log_dir_exists=raise",
        )(out)
        # What the recipe sent: a batch of its datums and an evaluator prompt, as built.
        builder = data.get_dataset_builder("shapes", VLM_MODEL, VLM_RENDERER, batch_size=6)
        train_set, _ = builder()
        evaluator = vlm_eval.get_evaluator_builder("shapes", VLM_MODEL, VLM_RENDERER)()
        example = evaluator.shuffled_dataset[0]
        seen = {
            "image_processor": type(get_image_processor(VLM_MODEL)).__name__,
            "classes": train_set.class_labels.names,
            "datums": [
                {
                    "chunks": _chunks(d.model_input),
                    "weights": float(sum(d.loss_fn_inputs["weights"].data)),
                }
                for d in train_set.get_batch(0)
            ],
            "prompt": _chunks(evaluator.build_generation_prompt(example)),
        }
        (out / "vlm_classifier.json").write_text(json.dumps(seen))
    finally:
        del data.DATASETS["shapes"], vlm_eval.EVALUATORS["shapes"]


RECIPES: dict[str, Callable[[Path], None]] = {
    "sl_basic": recipe(
        "tinker_cookbook.recipes.sl_basic",
        "log_path={out}/sl_basic",
        "dataset_builder=tinker_cookbook.supervised.data:FromConversationFileBuilder",
        f"dataset_builder.file_path={CONVERSATIONS}",
        "dataset_builder.common_config.model_name_for_tokenizer=Qwen/Qwen3.5-9B-Base",
        "dataset_builder.common_config.renderer_name=qwen3_5",
        "dataset_builder.common_config.max_length=1024",
        "dataset_builder.common_config.batch_size=2",
        "learning_rate=1e-2",
        "max_steps=3",
    ),
    "download": download,
    "math_rl": recipe(
        "tinker_cookbook.recipes.math_rl.train",
        "env=arithmetic",
        "log_path={out}/math_rl",
        "group_size=4",
        "groups_per_batch=4",
        "max_steps=2",
        "behavior_if_log_dir_exists=raise",
    ),
    "dpo": dpo,
    "prompt_distillation": prompt_distillation,
    "shorter": recipe(
        "tinker_cookbook.recipes.preference.shorter.train",
        "log_path={out}/shorter",
        "batch_size=2",
        "group_size=2",
        "max_tokens=8",
        "max_steps=2",
    ),
    "guess_number": recipe(
        "tinker_cookbook.recipes.multiplayer_rl.guess_number.train",
        "log_path={out}/guess_number",
        "batch_size=2",
        "group_size=2",
        "max_tokens=8",
        "max_steps=1",
        "eval_every=1",
    ),
    "vlm_classifier": vlm_classifier,
}


def main() -> None:
    out = Path(sys.argv[1])
    names = sys.argv[2:] or list(RECIPES)
    for name in names:
        start = time.perf_counter()
        error = None
        try:
            RECIPES[name](out)
        except BaseException as e:  # a recipe's failure is its test's failure, not the run's
            error = "".join(traceback.format_exception(e))
            print(error, file=sys.stderr)
        row = {"name": name, "seconds": time.perf_counter() - start, "error": error}
        with (out / "results.jsonl").open("a") as f:
            f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
