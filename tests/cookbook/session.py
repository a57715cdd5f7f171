"""The one ``tinkerkit run`` of the cookbook recipes, started in the background when the
session's tests are collected (``tests/conftest.py``), so its minutes overlap the rest of
the suite on the second core; the recipe tests, collected last, wait for it here."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

# The recipes' default models: one tokenizer family (Qwen3.5), built once for the overlay.
MODELS = ["Qwen/Qwen3.5-9B-Base", "Qwen/Qwen3.5-9B", "Qwen/Qwen3.5-4B", "Qwen/Qwen3.6-35B-A3B"]
DRIVER = Path(__file__).with_name("driver.py")
TIMEOUT_S = 900


def available() -> bool:
    return importlib.util.find_spec("tinker_cookbook") is not None


@dataclass
class Run:
    out: Path
    log: Path
    process: subprocess.Popen[bytes]
    started: float = field(default_factory=time.perf_counter)


_run: Run | None = None


def start() -> Run:
    """Starts ``tinkerkit run --backend mock -- python driver.py OUT`` once per session."""
    global _run
    if _run is None:
        root = Path(tempfile.mkdtemp(prefix="tinkerkit-cookbook-"))
        out, home = root / "out", root / "home"
        out.mkdir()
        env = {
            **os.environ,
            "TINKERKIT_HOME": str(home),
            "HF_HUB_OFFLINE": "1",
            "TINKER_TELEMETRY": "0",
            # one BLAS thread: the rest of the suite has the other core
            "OPENBLAS_NUM_THREADS": "1",
            "OMP_NUM_THREADS": "1",
            "TOKENIZERS_PARALLELISM": "false",
        }
        command = [sys.executable, "-c", "from tinkerkit.cli import main; main()", "run"]
        command += ["--backend", "mock"] + [f"--tokenizer={m}" for m in MODELS]
        command += ["--", sys.executable, str(DRIVER), str(out)]
        log = root / "run.log"
        with log.open("wb") as f:
            process = subprocess.Popen(command, stdout=f, stderr=subprocess.STDOUT, env=env)
        _run = Run(out, log, process)
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


def wait() -> Results:
    """The finished run (started now if collection did not start it)."""
    run = start()
    try:
        code = run.process.wait(timeout=max(1.0, TIMEOUT_S - (time.perf_counter() - run.started)))
    except subprocess.TimeoutExpired:
        run.process.kill()
        code = run.process.wait()
    rows = (
        (run.out / "results.jsonl").read_text().splitlines()
        if (run.out / "results.jsonl").exists()
        else []
    )
    recipes = {row["name"]: row for row in map(json.loads, rows)}
    tail = run.log.read_text(errors="replace")[-6000:]
    return Results(run.out, code, tail, recipes)


def stop() -> None:
    """Ends the run if it is still going and removes its folder."""
    if _run is None:
        return
    if _run.process.poll() is None:
        _run.process.kill()
        _run.process.wait()
    shutil.rmtree(_run.out.parent, ignore_errors=True)
