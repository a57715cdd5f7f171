"""Train on the ``local`` backend, export (peft / merged), and match the sampler's logprobs.

Downloads go through public ``RestClient`` calls only, as on Tinker: an
``external_weights`` path downloads, a ``weights``/``sampler_weights`` path is the same
``UnsupportedSourceError`` (export it with ``save_weights_external``) offline and online.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import peft
import pytest
import torch
from click.testing import CliRunner
from transformers import AutoModelForCausalLM

import tinkerkit as tk
import tinkerkit.export as tke
from tinkerkit.backends.local.models import export_base
from tinkerkit.backends.store import CheckpointStore
from tinkerkit.cli_export import group
from tinkerkit.export.parity import token_logprobs
from tinkerkit.testing.data import prompt_completion_datum

TEXTS = ["Q: What is 2+2? A: 4", "Hello world, tiny model.", "abc abc abc"]


@pytest.fixture
def trained(tk_home: Path) -> dict[str, Any]:
    service = tk.connect("local")
    training = service.create_lora_training_client(
        base_model="tinkerkit/tiny", rank=8, seed=0
    ).result()
    tok = training.get_tokenizer()
    data = [
        prompt_completion_datum(tok, "Q: 2+2? A:", " 4"),
        prompt_completion_datum(tok, "Say hi:", " hello there"),
    ]
    for _ in range(4):
        training.forward_backward(data, "cross_entropy")
        training.optim_step(tk.types.AdamParams(learning_rate=1e-2))
    sampler_path = training.save_weights_for_sampler("x").result().path
    external = training.save_weights_external("x").result().path  # the same weights
    sampling = service.create_sampling_client(model_path=sampler_path).result()
    seqs = [tok.encode(t, add_special_tokens=True) for t in TEXTS]
    reference = [
        sampling.compute_logprobs(tk.types.ModelInput.from_ints(s)).result()[1:] for s in seqs
    ]
    return dict(
        service=service,
        training=training,
        path=sampler_path,
        external=external,
        sampling=sampling,
        seqs=seqs,
        reference=reference,
    )


def max_diff(model: Any, trained: dict[str, Any]) -> float:
    worst = 0.0
    for seq, ref in zip(trained["seqs"], trained["reference"], strict=True):
        ours = token_logprobs(model, seq)
        worst = max(worst, *(abs(a - b) for a, b in zip(ours, ref, strict=True)))
    return worst


def test_peft_and_merged_match_the_backend(trained: dict[str, Any], tmp_path: Path) -> None:
    base_dir = export_base("tinkerkit/tiny", tmp_path / "base")  # = `tinkerkit models export-base`
    kw = dict(service=trained["service"], base_model="tinkerkit/tiny", progress=False)
    path = trained["external"]
    peft_dir = tke.export(path, tmp_path / "peft", format="peft", **kw)
    merged_dir = tke.export(path, tmp_path / "merged", format="merged", **kw)

    config = json.loads((peft_dir / "adapter_config.json").read_text())
    assert config["r"] == 8 and config["task_type"] == "CAUSAL_LM"
    assert set(config["target_modules"]) >= {"q_proj", "down_proj", "lm_head"}

    peft_model = peft.PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(base_dir), str(peft_dir)
    ).eval()
    merged = AutoModelForCausalLM.from_pretrained(merged_dir).eval()
    untrained = AutoModelForCausalLM.from_pretrained(base_dir).eval()
    assert max_diff(peft_model, trained) < 1e-4
    assert max_diff(merged, trained) < 1e-4
    assert max_diff(untrained, trained) > 1e-3

    report = tke.verify(merged_dir, trained["sampling"])
    assert report.ok and report.max_abs_diff < 1e-4 and report.n_tokens > 20
    bad = tke.verify(untrained, trained["sampling"], TEXTS)
    assert not bad.ok and bad.max_abs_diff > 1e-3


def test_cli_export_end_to_end(trained: dict[str, Any], tmp_path: Path) -> None:
    out = tmp_path / "cli-peft"
    result = CliRunner().invoke(
        group,
        [
            "export",
            trained["external"],
            "--format",
            "peft",
            "--base-model",
            "tinkerkit/tiny",
            "--out",
            str(out),
            "--backend",
            "local",
            "--no-progress",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "wrote" in result.output
    model, _ = tke.load_for_inference("tinkerkit/tiny", adapter=out)
    assert max_diff(model, trained) < 1e-4
    # A second export into the same folder is refused, not merged into it.
    again = CliRunner().invoke(
        group, ["export", trained["external"], "--out", str(out), "--backend", "local"]
    )
    assert (
        again.exit_code == 1 and again.output.startswith("error:") and "not empty" in again.output
    )


def test_external_checkpoint_downloads_offline(trained: dict[str, Any], tmp_path: Path) -> None:
    got_ext = tke.download(
        trained["external"], tmp_path / "ext", service=trained["service"], progress=False
    )
    merged = tke.merge("tinkerkit/tiny", got_ext, tmp_path / "merged")
    model, tok = tke.load_for_inference(merged)
    assert max_diff(model, trained) < 1e-4
    assert isinstance(tke.generate(model, tok, "Q: 2+2? A:", max_new_tokens=4), str)
    reply = tke.generate(model, tok, [{"role": "user", "content": "hi"}], max_new_tokens=4)
    assert isinstance(reply, str)


def test_offline_download_goes_through_the_public_rest_call(
    trained: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tinker

    asked: list[str] = []
    public = tinker.RestClient.get_external_weights_urls

    def spy(self: tinker.RestClient, tinker_path: str) -> Any:
        asked.append(tinker_path)
        return public(self, tinker_path)

    monkeypatch.setattr(tinker.RestClient, "get_external_weights_urls", spy)
    out = tke.download(
        trained["external"], tmp_path / "ext", service=trained["service"], progress=False
    )
    assert asked == [trained["external"]]
    assert sorted(p.name for p in out.iterdir()) == [
        "adapter_config.json",
        "adapter_model.safetensors",
    ]

    def no_store(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("download read the offline store, which Tinker does not have")

    # A sampler path never reaches the store either: it is refused before any call.
    monkeypatch.setattr(CheckpointStore, "files", no_store)
    with pytest.raises(tke.UnsupportedSourceError):
        tke.download(trained["path"], tmp_path / "s", service=trained["service"])


def test_state_and_sampler_paths_fail_offline_as_on_tinker(
    trained: dict[str, Any], tmp_path: Path
) -> None:
    class Rest:  # the 0.38 RestClient of the service: no archive URL
        pass

    online = type("S", (), {"create_rest_client": lambda self: Rest()})()
    state = trained["training"].save_state("s").result().path
    for path, advice in [
        (state, f"create_training_client_from_state({state!r})"),
        (trained["path"], "save_weights_external('<name>')"),
    ]:
        messages = []
        for service in (trained["service"], online):
            with pytest.raises(tke.UnsupportedSourceError) as info:
                tke.download(path, tmp_path / "out", service=service, progress=False)
            messages.append(str(info.value))
        assert messages[0] == messages[1]
        assert advice in messages[0] and "external_weights" in messages[0]
    assert not (tmp_path / "out").exists()


def test_unknown_base_model_is_a_clear_error(trained: dict[str, Any], tmp_path: Path) -> None:
    result = CliRunner().invoke(
        group,
        [
            "export",
            trained["external"],
            "--format",
            "merged",
            "--base-model",
            "someone/Unknown-7B",
            "--out",
            str(tmp_path / "m"),
            "--backend",
            "local",
        ],
    )
    assert result.exit_code == 1
    assert "never downloads" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "m").exists()


def test_older_sdk_archive_url_is_used(trained: dict[str, Any], tmp_path: Path) -> None:
    archive = next(iter(CheckpointStore().files(trained["path"]).values()))

    class Response:
        url = archive.resolve().as_uri()

    class Rest:
        def get_checkpoint_archive_url_from_tinker_path(self, path: str) -> Any:
            return type("F", (), {"result": lambda self: Response()})()

    service = type("S", (), {"create_rest_client": lambda self: Rest()})()
    out = tke.download(trained["path"], tmp_path / "old", service=service, progress=False)
    assert sorted(p.name for p in out.iterdir()) == [
        "adapter_config.json",
        "adapter_model.safetensors",
    ]
    assert torch.is_tensor(tke.load_adapter(out).weights[next(iter(tke.load_adapter(out).weights))])
