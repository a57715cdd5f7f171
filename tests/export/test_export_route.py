"""Export from a run in one command: a run folder, or its ``weights`` / ``sampler_weights``
path, goes through a training client (``create_training_client_from_state`` →
``save_weights_external`` → download → convert), locally, under ``tinkerkit run`` and —
mocked with respx — on the service, where it asks first; the loops' ``export_final``;
mock adapters refused in one line."""

from __future__ import annotations

import json
import os
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import peft
import pytest
import respx
from click.testing import CliRunner
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

import tinkerkit as tk
import tinkerkit.export as tke
from tinkerkit.cli import main
from tinkerkit.export.parity import token_logprobs
from tinkerkit.models.tiny_hf import export_base

TEXTS = ["Code word 3? w1x", "Hello world, tiny model."]


def _chats(path: Path) -> Path:
    rows = [
        {
            "messages": [
                {"role": "user", "content": f"Code word {i}?"},
                {"role": "assistant", "content": f"w{i * 7 % 10}x"},
            ]
        }
        for i in range(8)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _reference(service: Any, sampler_path: str) -> list[tuple[list[int], list[float]]]:
    """The trained model's logprobs of TEXTS, as the backend computes them."""
    sampling = service.create_sampling_client(model_path=sampler_path).result()
    tok = tk.tokenizer_of(sampling)
    out = []
    for text in TEXTS:
        seq = tok.encode(text, add_special_tokens=True)
        logprobs = sampling.compute_logprobs(tk.types.ModelInput.from_ints(seq)).result()
        out.append((seq, logprobs[1:]))
    return out


def _max_diff(model: Any, reference: list[tuple[list[int], list[float]]]) -> float:
    return max(
        abs(a - b)
        for seq, ref in reference
        for a, b in zip(token_logprobs(model, seq), ref, strict=True)
    )


def _sft(tmp_path: Path, backend: str, *extra: str) -> dict[str, str]:
    args = ["sft", "--data", str(_chats(tmp_path / "chats.jsonl")), "--backend", backend]
    args += ["--epochs", "1", "--batch-size", "4", "--rank", "4", "--lr", "1e-2"]
    result = CliRunner().invoke(main, [*args, "--log-dir", str(tmp_path / "a"), *extra])
    assert result.exit_code == 0, result.output
    return dict(line.split(": ", 1) for line in result.output.splitlines() if ": " in line)


def _export(*args: str, input: str | None = None) -> Any:
    return CliRunner().invoke(main, ["export", *args, "--no-progress"], input=input)


def test_sft_then_export_of_the_run_folder_matches_the_trained_model(tmp_path: Path) -> None:
    printed = _sft(tmp_path, "local", "--export", str(tmp_path / "final-peft"))
    state, sampler = printed["state"].strip(), printed["sampler"].strip()
    assert state.endswith("/weights/final") and sampler.endswith("/sampler_weights/final")
    final = json.loads((tmp_path / "a" / "checkpoints.jsonl").read_text().splitlines()[-1])
    assert final["external_path"] == printed["external"].strip()
    assert final["external_path"] == state.replace("/weights/", "/external_weights/")

    # The run folder, and the sampler path alone (its state is found by its name).
    assert (
        _export(str(tmp_path / "a"), "--format", "merged", "--out", str(tmp_path / "m")).exit_code
        == 0
    )
    done = _export(sampler, "--format", "peft", "--out", str(tmp_path / "p"))
    assert done.exit_code == 0, done.output
    assert done.output.startswith(f"wrote {tmp_path / 'p'}")

    reference = _reference(tk.connect("local"), sampler)
    base = export_base("tinkerkit/tiny", tmp_path / "base")
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "m").eval()
    assert _max_diff(merged, reference) < 1e-4
    for adapter in (tmp_path / "p", tmp_path / "final-peft"):
        model = peft.PeftModel.from_pretrained(
            AutoModelForCausalLM.from_pretrained(base), str(adapter)
        ).eval()
        assert _max_diff(model, reference) < 1e-4
    assert _max_diff(AutoModelForCausalLM.from_pretrained(base).eval(), reference) > 1e-3


SCRIPT = textwrap.dedent(
    """
    import json, sys
    import tinker
    import tinkerkit as tk

    data, log_dir, out, reference = sys.argv[1:]
    service = tinker.ServiceClient()  # TINKER_BASE_URL: the server of `tinkerkit run`
    config = tk.sft.Config(data=data, epochs=1, batch_size=4, rank=4, learning_rate=1e-2,
                           log_dir=log_dir, progress=False)
    result = tk.sft.train(config, service=service)
    tk.export.export(log_dir, out, format="peft", service=service, progress=False)
    sampling = service.create_sampling_client(model_path=result.sampler_path)
    tok = tk.tokenizer_of(sampling)
    rows = []
    for text in TEXTS:
        seq = tok.encode(text, add_special_tokens=True)
        lp = sampling.compute_logprobs(tinker.types.ModelInput.from_ints(seq)).result()
        rows.append((seq, lp[1:]))
    json.dump(rows, open(reference, "w"))
    """
).replace("TEXTS", repr(TEXTS))


def test_a_script_under_tinkerkit_run_trains_and_exports_through_the_served_path(
    tmp_path: Path,
) -> None:
    script = tmp_path / "train_and_export.py"
    script.write_text(SCRIPT)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    env.update(TINKER_TELEMETRY="0", HF_HUB_OFFLINE="1")
    args = [str(_chats(tmp_path / "c.jsonl")), str(tmp_path / "a"), str(tmp_path / "p")]
    command = [sys.executable, str(script), *args, str(tmp_path / "ref.json")]
    assert tk.run(command, backend="local", hub_overlay=False, env=env) == 0
    reference = json.loads((tmp_path / "ref.json").read_text())
    model, _ = tke.load_for_inference("tinkerkit/tiny", adapter=tmp_path / "p")
    assert _max_diff(model, reference) < 1e-4
    line = json.loads((tmp_path / "a" / "checkpoints.jsonl").read_text().splitlines()[-1])
    assert "external_path" not in line  # no export_final: exported through the state


class FakeService:
    """The Tinker service's side of the route (the SDK's clients), with signed https URLs
    answered by respx: what was called, in order, is in ``calls``."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files
        self.calls: list[tuple[str, ...]] = []

    def create_training_client_from_state(self, path: str) -> Any:
        self.calls.append(("create_training_client_from_state", path))
        training = SimpleNamespace(save_weights_external=self._save_external)
        return SimpleNamespace(result=lambda: training)

    def _save_external(self, name: str, ttl_seconds: int | None = None) -> Any:
        self.calls.append(("save_weights_external", name, str(ttl_seconds)))
        path = f"tinker://3f2a-uuid/external_weights/{name}"
        return SimpleNamespace(result=lambda: SimpleNamespace(path=path))

    def create_rest_client(self) -> Any:
        return SimpleNamespace(
            get_external_weights_urls=self._urls,
            delete_checkpoint_from_tinker_path=self._delete,
        )

    def _urls(self, path: str) -> Any:
        self.calls.append(("get_external_weights_urls", path))
        urls = {n: f"https://storage.test/{path[9:]}/{n}?sig=1" for n in self.files}
        response = SimpleNamespace(urls=urls, expires=datetime.now(UTC) + timedelta(hours=1))
        return SimpleNamespace(result=lambda: response)

    def _delete(self, path: str) -> Any:
        self.calls.append(("delete_checkpoint_from_tinker_path", path))
        return SimpleNamespace(result=lambda: None)


@pytest.fixture
def service_files(tmp_path: Path) -> dict[str, bytes]:
    """An adapter as the service exports it (Tinker names), from a local client."""
    service = tk.connect("local")
    training = service.create_lora_training_client(base_model="tinkerkit/tiny", rank=4).result()
    path = training.save_weights_external("x").result().path
    folder = tke.download(path, tmp_path / "ext", service=service, progress=False)
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def test_the_service_route_asks_then_loads_saves_downloads_and_deletes(
    service_files: dict[str, bytes], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FakeService(service_files)
    monkeypatch.setattr("tinkerkit.cli_export._connect", lambda backend, latency: fake)
    monkeypatch.setenv("TINKER_API_KEY", "tml-test")
    state = "tinker://3f2a-uuid/weights/final"
    sampler = "tinker://3f2a-uuid/sampler_weights/final"

    refused = _export(sampler, "--out", str(tmp_path / "no"), input="n\n")
    assert refused.exit_code == 1 and fake.calls == []  # nothing was created
    assert f"Exporting {sampler} (through {state}) creates a training client" in refused.output
    assert refused.output.rstrip().endswith("cancelled: nothing was created.")
    assert not (tmp_path / "no").exists()

    with respx.mock() as router:
        for name, body in service_files.items():
            router.get(url__regex=rf"^https://storage\.test/.*/{name}\?sig=1$").mock(
                return_value=httpx.Response(200, content=body)
            )
        done = _export(
            sampler, "--base-model", "tinkerkit/tiny", "--out", str(tmp_path / "p"), "--yes"
        )
    assert done.exit_code == 0, done.output
    (_, loaded), (_, name, ttl), (_, signed), (_, deleted) = fake.calls
    assert [c[0] for c in fake.calls] == [
        "create_training_client_from_state",
        "save_weights_external",
        "get_external_weights_urls",
        "delete_checkpoint_from_tinker_path",
    ]
    assert loaded == state and ttl == "3600" and name.startswith("tinkerkit-export-")
    assert signed == deleted == f"tinker://3f2a-uuid/external_weights/{name}"
    served = load_file(str(tmp_path / "ext" / "adapter_model.safetensors"))
    written = load_file(str(tmp_path / "p" / "adapter_model.safetensors"))
    key = "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"
    assert written[key].shape == served[key].shape == (4, written[key].shape[1])
    assert len(written) == len(served) > 10
    for k, tensor in written.items():  # the same numbers, Tinker's head renamed lm_head
        theirs = served.get(k, served.get(k.replace("lm_head", "model.unembed_tokens")))
        assert theirs is not None and float((tensor - theirs).abs().max()) == 0.0, k


def test_a_mock_run_says_in_one_line_why_it_does_not_export(tmp_path: Path) -> None:
    _sft(tmp_path, "mock")
    result = _export(str(tmp_path / "a"), "--out", str(tmp_path / "p"))
    assert result.exit_code == 1
    assert result.output.count("\n") == 1
    assert result.output.startswith(f"error: {tmp_path / 'a'} was trained by the mock backend")
    assert not (tmp_path / "p").exists()


def test_export_final_refuses_a_folder_with_files_before_training(tmp_path: Path) -> None:
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    args = ["sft", "--data", str(_chats(tmp_path / "c.jsonl")), "--backend", "mock"]
    args += ["--log-dir", str(tmp_path / "a"), "--export-final", str(tmp_path / "full")]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2
    assert "'--export-final'" in result.output and "new or empty folder" in result.output
    assert not (tmp_path / "a").exists()


def test_a_run_folder_without_checkpoints_is_one_clear_error(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "run.json").write_text("{}")
    with pytest.raises(tke.UnsupportedSourceError, match="holds no checkpoint yet"):
        tke.export(tmp_path / "a", tmp_path / "p")
    assert tke.plan("tinker://r-1/sampler_weights/s").state == "tinker://r-1/weights/s"
