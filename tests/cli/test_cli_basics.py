"""The ``tinkerkit`` command as a process: help without heavy imports, one line for a
bad command line or a full disk, plot without ``lr``, the stand-in WARNING."""

from __future__ import annotations

import errno
import json
import logging
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from tests.cli.corpus import write_corpus
from tinkerkit.cli import main
from tinkerkit.cli_common import TinkerkitGroup

HEAVY = ("torch", "tinker", "transformers", "numpy")


def _python(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120
    )


def test_help_imports_no_tinker_torch_numpy() -> None:
    code = f"""
import json, sys
from click.testing import CliRunner
import tinkerkit.cli as cli
helps = [CliRunner().invoke(cli.main, ["--help"])]
helps += [CliRunner().invoke(cli.main, [name, "--help"]) for name in cli.main.commands]
helps += [CliRunner().invoke(cli.main, ["models", name, "--help"]) for name in ("list", "export-base")]
print(json.dumps({{
    "codes": [r.exit_code for r in helps],
    "commands": sorted(cli.main.commands),
    "heavy": [m for m in {HEAVY!r} if m in sys.modules],
}}))
"""
    done = _python(code)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["heavy"] == []
    assert set(report["codes"]) == {0}
    assert report["commands"] == sorted(
        [
            "demo",
            "download",
            "dpo",
            "export",
            "models",
            "notes",
            "plot",
            "rl",
            "rlhf",
            "run",
            "sample",
            "serve",
            "sft",
        ]
    )


@pytest.mark.parametrize(
    ("args", "code", "line"),
    [
        (
            ["sft", "--data", "{d}/chats.jsonl", "--log-dir", "{d}/run", "--epochs", "0"],
            2,
            "error: tinkerkit sft: Invalid value for '--epochs': 0 is out of range: pass a "
            "whole number at least 1 and at most 1000000 (see 'tinkerkit sft --help')",
        ),
        (
            ["sft", "--data", "{d}/deep.jsonl", "--log-dir", "{d}/run", "--backend", "mock"],
            1,
            "error: {d}/deep.jsonl:1: is nested too deeply to read (JSON over ~900 levels "
            "deep); flatten it",
        ),
    ],
    ids=["usage", "data"],
)
def test_a_real_process_prints_one_line(
    args: list[str], code: int, line: str, tmp_path: Path
) -> None:
    inputs = write_corpus(tmp_path / "in")
    argv = [a.replace("{d}", str(inputs)) for a in args]
    script = Path(sys.executable).with_name("tinkerkit")  # the installed entry point
    done = subprocess.run(
        [str(script), *argv],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == code
    assert done.stderr.splitlines() == [line.replace("{d}", str(inputs))]
    assert done.stdout == ""
    assert not (inputs / "run").exists()


def _disk_full() -> None:
    raise OSError(errno.ENOSPC, "No space left on device", "runs/a/metrics.jsonl")


def test_full_disk_anywhere_is_one_line() -> None:
    group = TinkerkitGroup("tk")
    group.command("fill")(_disk_full)  # raises outside any run_command
    result = CliRunner().invoke(group, ["fill"])
    assert result.exit_code == 1
    assert result.stderr == (
        "error: runs/a/metrics.jsonl: No space left on device; free some space or write "
        "somewhere else\n"
    )


def test_full_disk_in_a_command_is_one_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import tinkerkit.data.notes as notes

    monkeypatch.setattr(notes, "notes_to_chats", lambda *a, **k: _disk_full())
    note = tmp_path / "n.md"
    note.write_text("# T\n\n## Q?\n\nA.\n")
    result = CliRunner().invoke(main, ["notes", str(note), "--out", str(tmp_path / "o.jsonl")])
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "error: runs/a/metrics.jsonl: No space left on device; free some space or write "
        "somewhere else"
    ]


def test_unreadable_data_file_is_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    inputs = write_corpus(tmp_path / "in")
    data = inputs / "chats.jsonl"
    real_open = Path.open

    def guarded_open(self: Path, *args: object, **kwargs: object) -> object:
        if self == data:
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return real_open(self, *args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(Path, "open", guarded_open)
    args = ["sft", "--data", str(data), "--log-dir", str(tmp_path / "run"), "--backend", "mock"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1
    assert result.stderr == f"error: {data}: cannot be read (Permission denied)\n"
    assert not (tmp_path / "run").exists()


def test_plot_rows_without_lr_plot_the_loss(tmp_path: Path) -> None:
    tmp_path = tmp_path / "run"
    tmp_path.mkdir()
    rows = [{"step": 1, "loss": 0.7, "accuracy": 0.5}, {"step": 2, "loss": -0.1}]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = CliRunner().invoke(main, ["plot", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert result.stdout == f"wrote {tmp_path / 'loss.png'}\n"
    assert (tmp_path / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["loss.png", "metrics.jsonl"]


def test_stand_in_notice_is_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    from tinkerkit.models import registry

    spec = registry.ModelSpec("Qwen/Qwen3-8B", "mock", 151_936, 4096, "Qwen/Qwen3-8B", "qwen3")
    registry._announced.discard(("mock-test", "Qwen/Qwen3-8B"))
    with caplog.at_level(logging.WARNING, logger="tinkerkit"):
        registry.announce_stand_in("mock-test", spec)
        registry.announce_stand_in("mock-test", spec)
    notices = [r for r in caplog.records if "is not available offline" in r.getMessage()]
    assert [r.levelno for r in notices] == [logging.WARNING]
    assert "Qwen/Qwen3-8B" in notices[0].getMessage()
    assert "151,936" in notices[0].getMessage()


def test_usage_errors_name_the_command_and_say_where_to_look() -> None:
    result = CliRunner().invoke(main, ["sample", "--backend", "mock"], prog_name="tinkerkit")
    assert result.exit_code == 2
    assert result.stderr == (
        "error: tinkerkit sample: give exactly one of --prompt or --messages "
        "(see 'tinkerkit sample --help')\n"
    )


def test_click_exit_codes_survive_the_group() -> None:
    group = TinkerkitGroup("tk")

    @group.command()
    def stop() -> None:
        raise click.exceptions.Exit(3)

    @group.command()
    def answer() -> int:
        return 42  # a return value is not an exit code

    assert CliRunner().invoke(group, ["stop"]).exit_code == 3
    assert CliRunner().invoke(group, ["answer"]).exit_code == 0
    assert CliRunner().invoke(group, ["--help"]).exit_code == 0


@pytest.mark.parametrize("args", [[], ["models"]])
def test_a_bare_group_shows_its_help(args: list[str]) -> None:
    result = CliRunner().invoke(main, args, prog_name="tinkerkit")
    assert result.exit_code == 2
    assert result.stderr.startswith(f"Usage: {' '.join(['tinkerkit', *args])} [OPTIONS] COMMAND")
    assert "error:" not in result.output


def test_a_refused_api_key_from_the_service_is_one_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A 401 surfacing mid-command as the SDK's AuthenticationError (no base URL given, so
    connect does not probe) is one line saying which key, not a traceback."""
    import httpx
    import tinker

    import tinkerkit.data.notes as notes

    def refused(*args: object, **kwargs: object) -> None:
        request = httpx.Request("POST", "https://tinker.example/api/v1/create_model")
        response = httpx.Response(401, request=request)
        raise tinker.AuthenticationError("Invalid API key", response=response, body=None)

    monkeypatch.setattr(notes, "notes_to_chats", refused)
    note = tmp_path / "n.md"
    note.write_text("# T\n\n## Q?\n\nA.\n")
    result = CliRunner().invoke(main, ["notes", str(note), "--out", str(tmp_path / "o.jsonl")])
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "error: the Tinker service refused the API key (401): set TINKER_API_KEY to a valid "
        "key, or pass --backend mock|local to run offline"
    ]


def test_sample_takes_the_backend_from_an_offline_checkpoint_path() -> None:
    """``tinkerkit sample --checkpoint tinker://mock-...`` needs no --backend."""
    import tinkerkit as tk

    service = tk.connect("mock")
    training = service.create_lora_training_client(base_model="tinkerkit/tiny", rank=4).result()
    path = training.save_weights_for_sampler("s").result().path
    assert path.startswith("tinker://mock-")
    args = ["sample", "--checkpoint", path, "--prompt", "hi", "--max-tokens", "3"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip()


def test_threads_option_reaches_the_local_engine_and_command(monkeypatch, tmp_path):
    """``--threads N`` is the engine's ``TINKERKIT_THREADS`` (COMMAND inherits it too)."""
    from tinkerkit.backends.local import threads

    monkeypatch.setenv("TINKERKIT_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("TINKERKIT_THREADS", raising=False)
    code = "import os, sys; sys.exit(int(os.environ['TINKERKIT_THREADS']))"
    args = ["run", "--threads", "3", "--hub-overlay", "off", "--quiet", "--"]
    result = CliRunner().invoke(main, [*args, sys.executable, "-c", code])
    assert result.exit_code == 3, result.output
    assert threads.knob() == 3
    bad = CliRunner().invoke(main, ["serve", "--threads", "0"])
    assert bad.exit_code == 2 and "--threads" in bad.output
