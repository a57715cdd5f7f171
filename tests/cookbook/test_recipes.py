"""The real tinker-cookbook 0.6.1, unmodified, offline, through ``tinkerkit run``.

One ``tinkerkit run --backend mock`` runs every recipe below with the command line a user
would type, shrunk to a few tiny steps (tests/cookbook/driver.py); the recipes find the
server through ``TINKER_BASE_URL`` and their default models' real tokenizers (Qwen3.5's,
248,320 ids) and image processor by hub id through the run's private overlay. Each test
asserts what its recipe wrote: metrics, checkpoints, files.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

pytest.importorskip("tinker_cookbook")
safetensors_numpy = pytest.importorskip("safetensors.numpy")

from tests.cookbook.session import Results  # noqa: E402

QWEN35_VOCAB = 248_320
# guess_number evaluates 412 ten-turn episodes (4,120 sample() calls) at step 0 and at
# the end: about 1 minute on a quiet 2-core machine (before the mock head drew tokens
# directly, O(sqrt V), over 17 minutes). No wall-clock bound here: shared machines are
# noisy; the count of episodes and turns below pins the work done.


def _ran(cookbook: Results, recipe: str) -> dict[str, object]:
    row = cookbook.recipes.get(recipe)
    assert row is not None, (
        f"{recipe} did not run (exit {cookbook.exit_code}):\n{cookbook.log_tail}"
    )
    assert row["error"] is None, row["error"]
    return row


def test_the_run_exits_with_the_recipes_code(cookbook):
    assert cookbook.exit_code == 0, cookbook.log_tail
    assert set(cookbook.recipes) == {
        "sl_basic",
        "download",
        "math_rl",
        "dpo",
        "prompt_distillation",
        "shorter",
        "guess_number",
        "vlm_classifier",
    }


def test_sl_basic_on_the_cookbooks_conversations_loss_falls(cookbook):
    _ran(cookbook, "sl_basic")
    config = json.loads((cookbook.out / "sl_basic" / "config.json").read_text())
    assert config["model_name"] == "Qwen/Qwen3.5-9B-Base"  # the recipe's default model
    rows = cookbook.metrics("sl_basic")
    nll = [float(r["train_mean_nll"]) for r in rows]
    assert [r["step"] for r in rows] == [0, 1, 2]
    # an untrained stand-in is near-uniform over the real vocabulary; lr 1e-2 learns fast
    assert abs(nll[0] - math.log(QWEN35_VOCAB)) < 2.0
    assert nll[-1] < nll[0] - 1.0, nll
    final = [json.loads(line) for line in (cookbook.out / "sl_basic" / "checkpoints.jsonl").open()]
    assert final[-1]["name"] == "final"
    assert final[-1]["state_path"].startswith("tinker://mock-")


def test_weights_download_of_the_training_checkpoint(cookbook):
    _ran(cookbook, "download")
    folder = cookbook.out / "download"
    assert sorted(p.name for p in folder.iterdir()) == [
        "adapter_config.json",
        "adapter_model.safetensors",
    ]
    adapter = json.loads((folder / "adapter_config.json").read_text())
    assert adapter["r"] == 32  # the recipe's default lora_rank
    assert adapter["base_model_name_or_path"] == "Qwen/Qwen3.5-9B-Base"
    tensors = safetensors_numpy.load_file(str(folder / "adapter_model.safetensors"))
    b_tensors = [v for k, v in tensors.items() if "lora_B" in k]
    assert b_tensors and all(32 in t.shape for t in tensors.values())
    # LoRA B starts at zero: three SFT steps moved it
    assert max(float(np.abs(t).max()) for t in b_tensors) > 0


def test_math_rl_arithmetic_with_its_default_loss(cookbook):
    _ran(cookbook, "math_rl")
    config = json.loads((cookbook.out / "math_rl" / "config.json").read_text())
    assert config["loss_fn"] == "stable_reinforce"  # the recipe's default
    steps = [r for r in cookbook.metrics("math_rl") if "env/all/reward/total" in r]
    assert len(steps) == 2
    for row in steps:
        assert row["env/all/total_episodes"] == 16  # 4 groups of 4
        # random tokens never end in a parsable answer: the format penalty, computed
        assert row["env/all/format"] == 0.0 and row["env/all/correct"] == 0.0
        assert row["env/all/reward/total"] == pytest.approx(-0.1)
        assert row["tokens/trained"] > 0
        # the sampler's logprobs are the trainer's (what stable_reinforce relies on)
        assert abs(row["optim/kl_sample_train_v1"]) < 1e-5


def test_dpo_on_a_local_comparisons_file(cookbook):
    _ran(cookbook, "dpo")
    rows = cookbook.metrics("dpo")
    losses = [float(r["dpo_loss"]) for r in rows]
    assert len(losses) == 2
    assert losses[0] == pytest.approx(math.log(2), abs=1e-4)  # policy == reference at step 0
    assert losses[1] < losses[0] - 0.2
    assert rows[1]["accuracy"] > rows[0]["accuracy"]


def test_prompt_distillation_student_learns_the_labels(cookbook):
    _ran(cookbook, "prompt_distillation")
    config = json.loads((cookbook.out / "prompt_distillation" / "config.json").read_text())
    assert config["model_name"] == "Qwen/Qwen3.6-35B-A3B"  # the recipe's default model
    nll = [float(r["train_mean_nll"]) for r in cookbook.metrics("prompt_distillation")]
    assert len(nll) == 2 and nll[1] < nll[0] - 1.0, nll


def test_preference_shorter_computes_rewards_and_trains(cookbook):
    _ran(cookbook, "shorter")
    steps = [r for r in cookbook.metrics("shorter") if "env/all/reward/total" in r]
    assert len(steps) == 2
    for row in steps:
        assert row["env/all/total_episodes"] == 4
        # truncated completions (max_tokens=8) are invalid format: win-loss 0, penalty -1
        assert row["env/all/format"] == 0.0 and row["env/all/win_minus_loss"] == 0.0
        assert row["env/all/reward/total"] == -1.0
        assert row["grad_norm"] > 0  # pairwise rewards differ within a group: a real update
        assert row["kl_pre_post_v2"] > 0  # (v1 is an unbiased estimate: either sign)


def test_guess_number_evaluates_every_step(cookbook):
    row = _ran(cookbook, "guess_number")
    rows = cookbook.metrics("guess_number")
    evals = [r for r in rows if "test/env/all/total_episodes" in r]
    assert [r["step"] for r in evals] == [0, 1]  # eval_every=1: before and after the step
    for r in evals:
        assert r["test/env/all/total_episodes"] == 412
        assert r["test/env/all/turns_per_episode"] == 10.0
        assert r["test/env/all/reward/total"] == pytest.approx(-10.0)
    assert row["error"] is None, row


def test_vlm_classifier_trains_on_a_local_image_folder(cookbook):
    """The recipe's launcher with its defaults (Qwen3.5-397B-A17B, qwen3_5_disable_thinking)
    on 3 classes of shapes, 4 train and 2 test images each: its ``ClassifierDataset`` reads
    the folder with ``datasets`` offline, its renderer sizes every image with the overlay's
    processor, and the service takes the datums and sampling prompts as built."""
    from tinkerkit.rules.images import Processor

    _ran(cookbook, "vlm_classifier")
    (run,) = (cookbook.out / "vlm_classifier").iterdir()  # the recipe names its own folder
    config = json.loads((run / "config.json").read_text())
    assert config["model_name"] == "Qwen/Qwen3.5-397B-A17B"
    assert config["renderer_name"] == "qwen3_5_disable_thinking"

    seen = json.loads((cookbook.out / "vlm_classifier.json").read_text())
    assert seen["image_processor"] == "Qwen2VLImageProcessorPil"  # from the overlay, offline
    assert seen["classes"] == ["blue_triangle", "green_square", "red_circle"]  # imagefolder
    # Every datum and the evaluator's prompt: one image, counted as the server counts it
    # (64×64 → 64 tokens, 80×64 → 72, 64×96 → 70; sizes as on disk, under max_image_size).
    sizes = {(64, 64): 64, (80, 64): 72, (64, 96): 70}
    texts = []
    for chunks in [*(d["chunks"] for d in seen["datums"]), seen["prompt"]]:
        (image,) = [c for c in chunks if c["type"] == "image"]
        assert image["format"] == "jpeg"  # the renderer re-encodes PIL images
        size = (image["width"], image["height"])
        assert image["expected_tokens"] == sizes[size] == Processor().tokens(size[1], size[0])
        texts.append(sum(c["length"] for c in chunks if c["type"] != "image"))
    assert len(seen["datums"]) == 6 and all(d["weights"] > 0 for d in seen["datums"])

    rows = cookbook.metrics(run.relative_to(cookbook.out).as_posix())
    assert [r["step"] for r in rows] == [0, 1, 2, 3]  # 2 epochs of 12 images, batches of 6
    lo, hi = 6 * (min(texts[:-1]) + 64), 6 * (max(texts[:-1]) + 72)
    assert all(r["num_sequences"] == 6 and lo <= r["num_tokens"] <= hi for r in rows)
    nll = [float(r["train_mean_nll"]) for r in rows]
    assert abs(nll[0] - math.log(QWEN35_VOCAB)) < 2.0
    assert nll[-1] < 0.75 * nll[0], nll
    # eval_every=2: the recipe's NLL evaluator (test split) and sampling evaluator ran
    evals = [r for r in rows if "test/nll" in r]
    assert [r["step"] for r in evals] == [0, 2]
    assert evals[1]["test/nll"] < evals[0]["test/nll"] - 1.0
    assert all(0.0 <= r["accuracy"] <= 1.0 for r in evals)
    checkpoints = [json.loads(line) for line in (run / "checkpoints.jsonl").open()]
    assert [c["name"] for c in checkpoints] == ["000002", "final"]  # save_every=2
    assert all(c["sampler_path"].startswith("tinker://mock-") for c in checkpoints)
