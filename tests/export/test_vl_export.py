"""A vision-language adapter trained on ``local`` exports as PEFT and merged like a text
one (issue 24): both score an image datum as the service does, through transformers'
own Qwen3-VL class and image processor."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import peft
import pytest
import torch
from transformers import AutoModelForImageTextToText

import tinkerkit as tk
import tinkerkit.export as tke
from tests.conformance.test_images import image_datum
from tests.images import shape_png
from tinkerkit.backends.local.models import export_base
from tinkerkit.backends.local.vision import vision_inputs
from tinkerkit.models.stand_ins import ModelNames
from tinkerkit.rules import images

MODEL = "tinkerkit/tiny-vl"


def _logprobs(model, model_input) -> tuple[np.ndarray, np.ndarray]:
    """Target logprobs of ``model_input`` under an HF VL model, and which are text."""
    vision = ModelNames().vision(MODEL)
    ids, pictures = images.read(model_input, vision, "test")
    tokens = torch.tensor([ids])
    inner = model.get_base_model() if isinstance(model, peft.PeftModel) else model
    extra, _ = vision_inputs(inner.model, vision, tokens, [pictures])
    with torch.no_grad():
        logits = model(input_ids=tokens, **extra).logits[0].float()
    picked = torch.log_softmax(logits, -1)[:-1].gather(-1, tokens[0, 1:, None])[:, 0]
    return picked.numpy(), np.asarray(ids[1:]) != vision.image_token


def test_a_vl_adapter_exports_as_peft_and_merged(tk_home: Path, tmp_path: Path) -> None:
    service = tk.connect("local")
    training = service.create_lora_training_client(base_model=MODEL, rank=8, seed=0).result()
    rng = np.random.default_rng(0)
    data = [image_datum(shape_png(n, rng)) for n in ("circle", "square")]
    for _ in range(3):
        training.forward_backward(data, "cross_entropy")
        training.optim_step(tk.types.AdamParams(learning_rate=1e-2))
    external = training.save_weights_external("vl").result().path
    sampler_path = training.save_weights_for_sampler("vl").result().path
    sampling = service.create_sampling_client(model_path=sampler_path).result()
    reference = np.asarray(sampling.compute_logprobs(data[0].model_input).result()[1:], float)

    base_dir = export_base(MODEL, tmp_path / "base")
    assert (base_dir / "preprocessor_config.json").is_file()
    kw = dict(service=service, base_model=MODEL, progress=False)
    peft_dir = tke.export(external, tmp_path / "peft", format="peft", **kw)
    merged_dir = tke.export(external, tmp_path / "merged", format="merged", **kw)
    config = json.loads((peft_dir / "adapter_config.json").read_text())
    assert set(config["target_modules"]) >= {"q_proj", "down_proj", "lm_head"}

    merged = AutoModelForImageTextToText.from_pretrained(merged_dir).eval()
    adapted = peft.PeftModel.from_pretrained(
        AutoModelForImageTextToText.from_pretrained(base_dir), str(peft_dir)
    ).eval()
    untrained = AutoModelForImageTextToText.from_pretrained(base_dir).eval()
    for model, close in ((merged, True), (adapted, True), (untrained, False)):
        ours, text = _logprobs(model, data[0].model_input)
        worst = float(np.abs(ours[text] - reference[text]).max())
        assert (worst < 1e-4) if close else (worst > 1e-3), worst


def test_export_base_cli_writes_tiny_vl(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from tinkerkit.cli import main

    out = tmp_path / "tiny-vl"
    result = CliRunner().invoke(main, ["models", "export-base", MODEL, "--out", str(out)])
    assert result.exit_code == 0, result.output
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "qwen3_vl" and config["image_token_id"] == 262
    processor = json.loads((out / "preprocessor_config.json").read_text())
    assert processor["patch_size"] == 16 and processor["merge_size"] == 2
    pytest.importorskip("PIL")


def test_a_local_vl_folder_mapped_by_name_reads_images(tk_home: Path, tmp_path: Path) -> None:
    """A user's Qwen3-VL folder (here tiny-vl written out) mapped to a name trains on
    images on ``local`` with its own config and processor: the same logprobs as the
    built-in it was written from."""
    folder = export_base(MODEL, tmp_path / "my-vl")
    datum = image_datum(shape_png("square", np.random.default_rng(5)))
    scores = []
    for service, name in (
        (tk.connect("local"), MODEL),
        (tk.connect("local", models={"me/my-vl": str(folder)}), "me/my-vl"),
    ):
        training = service.create_lora_training_client(base_model=name, rank=4, seed=0).result()
        out = training.forward([datum], "cross_entropy").result()
        scores.append(out.loss_fn_outputs[0]["logprobs"].to_numpy())
    np.testing.assert_allclose(scores[0], scores[1], atol=1e-5)
    assert ModelNames({"me/my-vl": str(folder)}).vision("me/my-vl") == ModelNames().vision(MODEL)
