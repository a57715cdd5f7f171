"""The one ``tinkerkit run`` of the cookbook recipes, started in the background when the
session's tests are collected (``tests/conftest.py``), so its minutes overlap the rest of
the suite; the recipe tests wait for it here. Under xdist the workers share one run,
in a folder named by the test run's id."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

# The recipes' default models: one tokenizer family (Qwen3.5), built once for the overlay.
MODELS = [
    "Qwen/Qwen3.5-9B-Base",
    "Qwen/Qwen3.5-9B",
    "Qwen/Qwen3.5-4B",
    "Qwen/Qwen3.6-35B-A3B",
    "Qwen/Qwen3.5-397B-A17B",  # vlm_classifier's: tokenizer and image processor
]
DRIVER = Path(__file__).with_name("driver.py")
TIMEOUT_S = 900


def available() -> bool:
    return importlib.util.find_spec("tinker_cookbook") is not None


@dataclass
class Run:
    root: Path
    process: subprocess.Popen[bytes] | None  # None: another xdist worker started it
    started: float = field(default_factory=time.perf_counter)

    @property
    def out(self) -> Path:
        return self.root / "out"

    @property
    def log(self) -> Path:
        return self.root / "run.log"


_run: Run | None = None


def _shared_root(run_id: str) -> Path:
    return Path(tempfile.gettempdir()) / f"tinkerkit-cookbook-{run_id}"


def start(run_id: str | None = None) -> Run:
    """Starts ``tinkerkit run --backend mock -- python driver.py OUT`` once per session.

    Under xdist every worker calls this with the run's id: the first to create the
    shared folder starts the run, the others find it there; its exit code lands in
    ``exit_code`` for whichever worker reads the results."""
    global _run
    if _run is not None:
        return _run
    if run_id is None:
        root = Path(tempfile.mkdtemp(prefix="tinkerkit-cookbook-"))
    else:
        root = _shared_root(run_id)
        try:
            root.mkdir()
        except FileExistsError:
            _run = Run(root, None)
            return _run
    out, home = root / "out", root / "home"
    out.mkdir()
    env = {
        **os.environ,
        "TINKERKIT_HOME": str(home),
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        # datasets' arrow cache of local folders (vlm_classifier's images), not ~/.cache
        "HF_DATASETS_CACHE": str(root / "datasets"),
        "TINKER_TELEMETRY": "0",
        # one BLAS thread: the rest of the suite has the other core
        "OPENBLAS_NUM_THREADS": "1",
        "OMP_NUM_THREADS": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    command = [sys.executable, "-c", "from tinkerkit.cli import main; main()", "run"]
    command += ["--backend", "mock"] + [f"--tokenizer={m}" for m in MODELS]
    command += ["--", sys.executable, str(DRIVER), str(out)]
    # the exit code in a file, for a worker that did not start the run
    exit_file = root / "exit_code"
    wrapped = ["sh", "-c", f'"$@"; echo $? > {exit_file}.part && mv {exit_file}.part {exit_file}']
    wrapped += ["sh", *command]
    with (root / "run.log").open("wb") as f:
        process = subprocess.Popen(
            wrapped, stdout=f, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    (root / "pid").write_text(str(process.pid))
    _run = Run(root, process)
    return _run


@dataclass
class Results:
    out: Path
    exit_code: int
    log_tail: str
    recipes: dict[str, dict[str, object]]

    def metrics(self, recipe: str) -> list[dict[str, object]]:
        path = self.out / recipe / "metrics.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def wait(run_id: str | None = None) -> Results:
    """The finished run (started now if nobody started it)."""
    run = start(run_id)
    exit_file = run.root / "exit_code"
    deadline = run.started + TIMEOUT_S
    while not exit_file.exists() and time.perf_counter() < deadline:
        time.sleep(0.5)
    if not exit_file.exists():
        stop_process(run.root)
        code = -9
    else:
        code = int(exit_file.read_text().strip() or -1)
    rows = (
        (run.out / "results.jsonl").read_text().splitlines()
        if (run.out / "results.jsonl").exists()
        else []
    )
    recipes = {row["name"]: row for row in map(json.loads, rows)}
    tail = run.log.read_text(errors="replace")[-6000:]
    return Results(run.out, code, tail, recipes)


def stop_process(root: Path) -> None:
    """Kills the run in ``root`` if it is still going (its wrapper and the run)."""
    pid_file = root / "pid"
    if pid_file.exists() and not (root / "exit_code").exists():
        with contextlib.suppress(ProcessLookupError, ValueError, PermissionError):
            os.killpg(int(pid_file.read_text()), signal.SIGKILL)


def stop(run_id: str | None = None) -> None:
    """Ends the run if it is still going and removes its folder (the session's own, or
    under xdist the shared one, from the controller once every worker is done)."""
    root = _run.root if _run is not None and run_id is None else None
    if run_id is not None:
        root = _shared_root(run_id)
    if root is None or not root.exists():
        return
    stop_process(root)
    shutil.rmtree(root, ignore_errors=True)
