"""``tinkerkit run -- COMMAND``: a private server for one command, its exit code, signals.

The CLI tests start ``tinkerkit run`` as a process of its own (what a user types), the
others call ``tk.run`` in this process; every COMMAND is a ``sys.executable -c`` child.
"""

from __future__ import annotations

import json
import math
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import tinkerkit as tk

CLI = [sys.executable, "-c", "from tinkerkit.cli import main; main()", "run"]

TRAIN_ONE_STEP = r"""
import json, os, sys
import tinker
from tinker import types

with open(sys.argv[1], "w") as f:  # the key goes to a file, never to the output
    f.write(os.environ["TINKER_API_KEY"])
service = tinker.ServiceClient()  # no arguments: TINKER_BASE_URL and TINKER_API_KEY
training = service.create_lora_training_client(base_model="tinkerkit/tiny").result()
datum = types.Datum(
    model_input=types.ModelInput.from_ints([72, 101, 108, 108]),
    loss_fn_inputs={"target_tokens": [101, 108, 108, 111], "weights": [1.0] * 4},
)
out = training.forward_backward([datum], "cross_entropy").result()
training.optim_step(types.AdamParams(learning_rate=1e-2)).result()
path = training.save_state("step-1").result().path
service.close("success").result()
print(json.dumps({"base_url": os.environ["TINKER_BASE_URL"],
                  "loss": out.metrics["loss:sum"], "path": path}))
"""


def _env(**changes: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    env.update(TINKER_TELEMETRY="0", HF_HUB_OFFLINE="1", **changes)
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


def _lines(stream) -> queue.Queue[str | None]:
    """The stream's lines as they arrive (None at its end), read by a thread."""
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        for line in iter(stream.readline, ""):
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    return lines


def _wait_for(lines: queue.Queue[str | None], text: str, timeout: float = 60) -> list[str]:
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while True:
        line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
        assert line is not None, f"output ended before {text!r}: {seen}"
        seen.append(line)
        if text in line:
            return seen


def test_unmodified_sdk_code_trains_against_the_private_server(tmp_path, tk_home):
    key_file = tmp_path / "key"
    port = _free_port()
    done = subprocess.run(
        [
            *CLI,
            "--port",
            str(port),
            "--hub-overlay",
            "off",
            "--",
            sys.executable,
            "-c",
            TRAIN_ONE_STEP,
            str(key_file),
        ],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert math.isfinite(result["loss"]) and result["loss"] > 0
    assert result["path"].startswith("tinker://") and result["path"].endswith("/weights/step-1")
    run_id = result["path"][len("tinker://") :].split("/")[0]
    assert (tk_home / "runs" / run_id / "weights" / "step-1").is_dir()  # the server's store
    assert result["base_url"] == f"http://127.0.0.1:{port}"
    key = key_file.read_text()
    assert key.startswith("tml-") and len(key) > 20
    assert key not in done.stdout and key not in done.stderr
    assert _refused(port)  # the server went with the command


def test_exit_code_and_missing_command_through_the_cli():
    done = subprocess.run(
        [*CLI, "--hub-overlay", "off", "--", sys.executable, "-c", "import sys; sys.exit(3)"],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 3, done.stderr
    missing = subprocess.run(
        [*CLI, "--hub-overlay", "off", "--", "no-such-command-tinkerkit"],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert missing.returncode == 127
    assert "no-such-command-tinkerkit: command not found" in missing.stderr


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("pass", 0),
        ("import sys; sys.exit(3)", 3),
        ("import os, signal; os.kill(os.getpid(), signal.SIGTERM)", 128 + signal.SIGTERM),
    ],
    ids=["zero", "three", "sigterm"],
)
def test_exit_codes_pass_through(code, expected):
    assert tk.run([sys.executable, "-c", code], hub_overlay=False, env=_env()) == expected


def test_output_streams_live_and_sigterm_reaches_the_command():
    port = _free_port()
    # No flush in the child: run makes Python children unbuffered even on a pipe.
    child = "import time; print('first line'); time.sleep(60); print('too late')"
    proc = subprocess.Popen(
        [*CLI, "--port", str(port), "--hub-overlay", "off", "--", sys.executable, "-c", child],
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        lines = _lines(proc.stdout)
        _wait_for(lines, "first line")
        assert proc.poll() is None  # the line came while the command was still running
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 128 + signal.SIGTERM
        assert time.monotonic() - started < 20  # not the child's 60 s sleep
    finally:
        proc.kill()
        proc.wait()
    assert _refused(port)


def test_sigint_is_forwarded_when_it_did_not_come_from_a_terminal():
    child = "import time; print('ready'); time.sleep(60)"
    proc = subprocess.Popen(
        [*CLI, "--hub-overlay", "off", "--", sys.executable, "-c", child],
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    try:
        _wait_for(_lines(proc.stdout), "ready")
        proc.send_signal(signal.SIGINT)
        # Python dies of an unhandled KeyboardInterrupt by SIGINT: 128 + 2.
        assert proc.wait(timeout=30) == 128 + signal.SIGINT
    finally:
        proc.kill()
        proc.wait()


def test_server_is_stopped_after_tk_run():
    port = _free_port()
    code = f"import os; assert os.environ['TINKER_BASE_URL'].endswith(':{port}')"
    assert tk.run([sys.executable, "-c", code], port=port, hub_overlay=False, env=_env()) == 0
    assert _refused(port)


def test_model_mapping_reaches_the_command_and_is_undone(tmp_path):
    from tinkerkit.models.tokenizer import byte_tokenizer

    folder = tmp_path / "tok"
    byte_tokenizer().save_pretrained(str(folder))
    out = tmp_path / "seen"
    code = f"import os; open({str(out)!r}, 'w').write(os.environ.get('TINKERKIT_MODELS', ''))"
    before = os.environ.get("TINKERKIT_MODELS")
    assert (
        tk.run(
            [sys.executable, "-c", code],
            models=[f"tinkerkit/mapped={folder}"],
            hub_overlay=False,
            env=_env(),
        )
        == 0
    )
    assert f"tinkerkit/mapped={folder.resolve()}" in out.read_text()
    assert os.environ.get("TINKERKIT_MODELS") == before


def test_bad_model_mapping_is_a_usage_error(tmp_path):
    done = subprocess.run(
        [*CLI, "--model", f"x/y={tmp_path / 'missing'}", "--", "true"],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and "does not exist" in done.stderr


# --- the private hub cache --------------------------------------------------------------

OVERLAY_CHILD = r"""
import json, os, sys
from transformers import AutoTokenizer

names, out = json.loads(sys.argv[1]), sys.argv[2]
messages = [{"role": "user", "content": "Héllo, wörld!"}]
seen = {"cache": os.environ["HF_HUB_CACHE"], "offline": os.environ.get("HF_HUB_OFFLINE"),
        "dataset": os.path.isdir(os.path.join(os.environ["HF_HUB_CACHE"], "datasets--me--notes")),
        "tokenizers": {}}
for name in names:
    tok = AutoTokenizer.from_pretrained(name)
    seen["tokenizers"][name] = {
        "ids": tok.encode("Héllo, wörld! 12345 <|im_start|>"),
        "chat": tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True),
        "vocab": len(tok),
    }
with open(out, "w") as f:
    json.dump(seen, f)
"""


def _tree(root: Path) -> dict[str, tuple[int, float]]:
    return {
        str(p.relative_to(root)): (p.lstat().st_size, p.lstat().st_mtime)
        for p in sorted(root.rglob("*"))
    }


def _catalogue_qwen3() -> str:
    from tinkerkit.backends.registry import engine_factory

    known = engine_factory("mock").known_models()
    preferred = "Qwen/Qwen3-4B-Instruct-2507"
    if preferred in known:
        return preferred
    qwen = next((n for n in known if n.startswith("Qwen/Qwen3-") and "VL" not in n), None)
    if qwen is None:
        pytest.skip("the mock backend knows no Qwen3 model")
    return qwen


def test_hub_ids_resolve_offline_to_the_backends_tokenizers(tmp_path):
    """AutoTokenizer.from_pretrained(<hub id>) in the command, with HF_HUB_OFFLINE=1: the
    backend's own tokenizer (the Llama 3 alias is covered in tests/serve/test_hf_overlay)."""
    from tinkerkit.backends.registry import engine_factory

    qwen = _catalogue_qwen3()
    factory = engine_factory("mock")
    backend = factory.tokenizer(factory.resolve(qwen))  # first: warms the vocabulary cache
    # The user's own HF cache, with something already in it.
    hf_home = tmp_path / "hf-home"
    cached = hf_home / "hub" / "datasets--me--notes"
    (cached / "snapshots" / "r1").mkdir(parents=True)
    (cached / "snapshots" / "r1" / "notes.jsonl").write_text("{}\n")
    (cached / "refs").mkdir()
    (cached / "refs" / "main").write_text("r1")
    before = _tree(hf_home)
    out = tmp_path / "seen.json"

    code = tk.run(
        [sys.executable, "-c", OVERLAY_CHILD, json.dumps([qwen]), str(out)],
        tokenizers=[qwen],
        env=_env(HF_HOME=str(hf_home)),  # HF_HUB_OFFLINE=1: the overlay is built (auto)
    )

    assert code == 0
    seen = json.loads(out.read_text())
    assert seen["offline"] == "1" and seen["dataset"]  # the user's cache is still visible
    assert not Path(seen["cache"]).is_relative_to(hf_home)
    assert not Path(seen["cache"]).exists()  # removed after the command
    got = seen["tokenizers"][qwen]
    assert got["ids"] == backend.encode("Héllo, wörld! 12345 <|im_start|>")
    assert got["vocab"] == len(backend)
    messages = [{"role": "user", "content": "Héllo, wörld!"}]
    if backend.chat_template:
        assert got["chat"] == backend.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True
        )
    assert _tree(hf_home) == before  # nothing written into the user's cache
