"""Runs real tinker-cookbook 0.6.1 recipes, unmodified, one after another in this process.

Started by ``conftest.py`` as ``tinkerkit run --backend mock -- python driver.py OUT NAME...``,
so every recipe finds ``TINKER_BASE_URL``/``TINKER_API_KEY`` and its tokenizer by hub id,
exactly as it would online. Each recipe is its module's own ``__main__`` (``runpy``) with
the command line a user would type, shrunk to a few tiny steps; the two that are library
calls in the cookbook (DPO on a local comparisons file, ``weights.download``) are called as
documented. After each recipe, ``OUT/results.jsonl`` gains a line: name, seconds, error.
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
