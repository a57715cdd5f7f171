"""What a newcomer and an adversary hit at the command line (issue 22): a dead service
said at once, mock chosen when nothing else is, samples.jsonl from --sample-prompt,
Ctrl-C naming --resume, control characters escaped, bounded numbers, reward files that
exit or hang, a full disk naming its path."""

from __future__ import annotations

import errno
import gc
import json
import pathlib
import socket
import warnings
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import tinkerkit as tk
from tinkerkit.cli import main
from tinkerkit.cli_common import OFFLINE_NOTICE, printable
from tinkerkit.errors import UnretrievedFailureWarning

NO_BACKEND: dict[str, str | None] = {"TINKERKIT_BACKEND": None, "TINKER_API_KEY": None}
CHATS = [
    {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]},
    {"messages": [{"role": "user", "content": "yo"}, {"role": "assistant", "content": "hey"}]},
]


def _invoke(args: list[str], env: dict[str, str | None] | None = None) -> Any:
    return CliRunner().invoke(main, args, env=env or NO_BACKEND, prog_name="tinkerkit")


@pytest.fixture
def chats(tmp_path: Path) -> Path:
    path = tmp_path / "chats.jsonl"
    path.write_text("".join(json.dumps(c) + "\n" for c in CHATS))
    return path


def _error_line(result: Any) -> str:
    lines = [line for line in result.stderr.splitlines() if line]  # ^C's blank line aside
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return str(lines[0])


# --- 2. a key, no network: said at once, with the way offline ---------------------------


def test_a_dead_service_is_one_line_naming_it_and_the_offline_flag() -> None:
    sock = socket.socket()  # bound, never listening: refused at once
    sock.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    with sock:
        result = _invoke(
            ["sample", "--prompt", "hi"],
            {"TINKERKIT_BACKEND": None, "TINKER_API_KEY": "tml-x-1234", "TINKER_BASE_URL": url},
        )
    assert result.exit_code == 1
    line = _error_line(result)
    assert line.startswith(f"error: No Tinker server answers at {url} (")
    assert "or run offline: --backend mock on the command line" in line


def test_the_service_itself_is_probed_briefly(monkeypatch: pytest.MonkeyPatch) -> None:
    import tinker
    from tinker.lib.base_url import DEFAULT_BASE_URL

    from tinkerkit.errors import ServerUnreachableError
    from tinkerkit.server_probe import PROBE_TIMEOUT_S

    probed: list[str] = []
    monkeypatch.delenv("TINKER_BASE_URL", raising=False)
    monkeypatch.setattr(
        "tinkerkit.server_probe.probe_base_url", lambda url, key: probed.append(url)
    )
    monkeypatch.setattr(tinker, "ServiceClient", lambda **kwargs: kwargs)
    tk.connect("tinker", api_key="tml-x-1234")
    assert probed == [DEFAULT_BASE_URL] and PROBE_TIMEOUT_S <= 10
    message = str(ServerUnreachableError(DEFAULT_BASE_URL, "DNS failed", service=True))
    assert "Check the network connection, or run offline: --backend mock" in message


def test_a_connection_lost_later_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    import httpx
    import tinker

    from tinkerkit.cli_common import run_command

    def lose() -> None:
        raise tinker.APIConnectionError(request=httpx.Request("POST", "http://x/api"))

    with pytest.raises(SystemExit) as info:
        run_command(lose)
    assert info.value.code == 1
    assert capsys.readouterr().err == (
        "error: cannot reach the Tinker service (Connection error.): check the network "
        "connection, or pass --backend mock|local to run offline\n"
    )


# --- 3. no key, no backend: mock, said once ----------------------------------------------


def test_no_backend_and_no_key_runs_on_mock_saying_so() -> None:
    result = _invoke(["sample", "--prompt", "hi", "--max-tokens", "2"])
    assert result.exit_code == 0, result.output
    assert result.stderr.strip() == OFFLINE_NOTICE


# --- 4. sft --sample-prompt / --sample-every ---------------------------------------------


def test_sft_sample_prompts_write_samples_jsonl(chats: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    args = ["sft", "--backend", "mock", "--data", str(chats), "--log-dir", str(run)]
    args += ["--epochs", "2", "--batch-size", "2", "--sample-every", "1"]
    result = _invoke([*args, "--sample-prompt", "hi", "--sample-prompt", "yo"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines()]
    assert [(r["step"], r["prompt"]) for r in rows] == [(1, "hi"), (1, "yo"), (2, "hi"), (2, "yo")]


# --- 5. Ctrl-C names --resume; control characters escaped ---------------------------------


def test_ctrl_c_names_the_command_that_continues(
    chats: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(*args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("tinkerkit.train.sft.train", interrupted)
    args = ["sft", "--backend", "mock", "--data", str(chats), "--log-dir", str(tmp_path / "r")]
    result = _invoke([*args, "--overwrite"])
    assert result.exit_code == 1
    assert _error_line(result) == (
        "error: interrupted; the run keeps its committed checkpoints. Continue it with: "
        f"tinkerkit sft --backend mock --data {chats} --log-dir {tmp_path / 'r'} --resume"
    )


def test_sampled_control_characters_are_shown_escaped(monkeypatch: pytest.MonkeyPatch) -> None:
    class Out:
        text = "\x17\x08ok\n"

    monkeypatch.setattr("tinkerkit.text.sample_text", lambda *a, **k: [Out()])
    result = _invoke(["sample", "--backend", "mock", "--prompt", "hi"])
    assert result.exit_code == 0, result.output
    assert result.stdout == "\\x17\\x08ok\n\n"
    assert printable("a\tb\x1b[2J") == "a\tb\\x1b[2J"


# --- 6. numbers in range -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["sft", "--seed", "-1"], "Invalid value for '--seed': -1 is out of range"),
        (["sample", "--prompt", "hi", "--seed", "-1"], "Invalid value for '--seed'"),
        (["sft", "--latency", "1e23"], "'--latency': 1e23 is out of range: pass a finite number"),
        (["rl", "--reward-timeout", "1e23"], "'--reward-timeout': 1e23 is out of range"),
        (["rl", "--group-size", "2000"], "'--group-size': 2000 is out of range"),
        (["rl", "--steps", "2000000"], "at most 1000000"),
        (["sft", "--epochs", "2000000"], "at most 1000000"),
    ],
)
def test_out_of_range_numbers_are_refused(args: list[str], expected: str, chats: Path) -> None:
    common = {
        "sft": ["--data", str(chats), "--log-dir", "unused"],
        "rl": ["--prompts", str(chats), "--reward", "x.py:f", "--log-dir", "unused"],
        "sample": [],
    }[args[0]]
    result = _invoke([*args, *common, "--backend", "mock"])
    assert result.exit_code == 2
    assert expected in _error_line(result)


def test_configs_and_connect_bound_the_same_numbers() -> None:
    from tinkerkit.errors import ConfigError

    with pytest.raises(ConfigError, match="seed must be greater than or equal to 0"):
        tk.sft.Config(data=CHATS, seed=-1)
    with pytest.raises(ConfigError, match="epochs must be less than or equal to 1000000"):
        tk.sft.Config(data=CHATS, epochs=10**23)
    with pytest.raises(ValueError, match="latency must be a number of seconds from 0 to 60"):
        tk.connect("mock", latency=1e23)
    with pytest.raises(ValueError, match="latency must be a number of seconds from 0 to 60"):
        tk.serve("mock", latency=float("inf")).__enter__()  # the service checks, every door


# --- 7. reward files that exit or hang at import --------------------------------------


def test_a_reward_file_that_exits_or_hangs_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tinkerkit.cli_reward import RewardLoadError, load_reward

    exits = tmp_path / "exits.py"
    exits.write_text("import sys\nsys.exit(4)\n")
    with pytest.raises(RewardLoadError) as info:
        load_reward(f"{exits}:f")
    assert f"the reward file {str(exits)!r} exited with 4 while being imported" in str(info.value)

    monkeypatch.setattr("tinkerkit.cli_reward.REWARD_IMPORT_TIMEOUT_S", 0.05)
    hangs = tmp_path / "hangs.py"
    hangs.write_text("import time\ntime.sleep(2)\n")
    with pytest.raises(RewardLoadError) as info:
        load_reward(f"{hangs}:f")
    assert f"{str(hangs)!r} was still being imported after 0.05 s" in str(info.value)


# --- 8. a full disk names the path, nothing else ---------------------------------------


def test_a_full_disk_during_pipelined_saves_is_one_line_naming_the_checkpoint(
    chats: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_bytes = pathlib.Path.write_bytes

    def full(self: Path, data: bytes) -> int:
        if ".tmp-" in str(self):  # the store's staged checkpoint files
            raise OSError(errno.ENOSPC, "No space left on device")
        return write_bytes(self, data)

    monkeypatch.setattr(pathlib.Path, "write_bytes", full)
    args = ["sft", "--backend", "mock", "--data", str(chats), "--log-dir", str(tmp_path / "r")]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = _invoke([*args, "--save-every", "1", "--batch-size", "1", "--epochs", "3"])
        gc.collect()
    assert [w for w in caught if issubclass(w.category, UnretrievedFailureWarning)] == []
    assert result.exit_code == 1
    assert "Warning" not in result.stderr
    line = result.stderr.splitlines()[-1]  # after the progress line
    assert "/weights/step-000001: No space left on device; free some space" in line, line
    assert line.startswith(f"error: {tk.paths.tinkerkit_home()}")


def test_export_base_to_a_full_disk_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("torch")
    from safetensors import SafetensorError

    def full(*args: Any, **kwargs: Any) -> None:
        raise SafetensorError(
            'Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: "No '
            'space left on device" })'
        )

    monkeypatch.setattr("transformers.PreTrainedModel.save_pretrained", full)
    out = tmp_path / "base"
    result = _invoke(["models", "export-base", "tinkerkit/tiny", "--out", str(out)])
    assert result.exit_code == 1
    assert _error_line(result) == (
        f"error: {out}: No space left on device; free some space or write somewhere else"
    )
