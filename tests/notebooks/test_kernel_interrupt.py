"""Interrupting the kernel stops a training cell at a step boundary, resumably.

Through a real kernel, as a user does it: a cell runs ``tk.sft.train`` (blocking) or
``await tk.sft.train_async`` (in the kernel's event loop), the test interrupts the
kernel (``KernelManager.interrupt_kernel``: SIGINT, as Jupyter's stop button) once a few
steps are logged, the cell ends with ``KeyboardInterrupt``, nothing trains behind it,
and a ``resume=True`` cell continues the step count to the end.
"""

from __future__ import annotations

import json
import re
import threading
import time
from pathlib import Path

from nbformat.v4 import new_code_cell, new_notebook

from tests.notebooks.kernel import errors_of, kernel, text_of

TOTAL = 24  # steps: 48 chats, batch 2, one epoch

SETUP = f"""
import json, time
import tinkerkit as tk

chats = [{{"messages": [{{"role": "user", "content": f"Say {{i}}"}},
                        {{"role": "assistant", "content": f"{{i}}"}}]}} for i in range({2 * TOTAL})]
service = tk.connect("mock")

def config(log_dir, **kw):
    return tk.sft.Config(model="tinkerkit/tiny", data=chats, epochs=1, batch_size=2,
                         learning_rate=1e-2, rank=8, save_every=2, log_dir=log_dir, **kw)

def slow(row):  # a step every 50 ms at least: the interrupt lands mid-run
    time.sleep(0.05)

def report(result):
    steps = [row["step"] for row in result.metrics if "loss" in row]
    manifest = json.load(open(result.log_dir / "run.json"))
    print(f"steps {{steps[0]}}..{{steps[-1]}} ({{len(steps)}} rows), result.steps {{result.steps}}, "
          f"resumes {{manifest['resume_count']}}")
"""

BLOCKING = 'tk.sft.train(config("runs/blocking", callbacks=[slow]), service=service)'
AWAITED = 'await tk.sft.train_async(config("runs/awaited", callbacks=[slow]), service=service)'
RESUME = "report(tk.sft.train(config({folder!r}, resume=True), service=service))"
RESUME_AWAITED = (
    "report(await tk.sft.train_async(config({folder!r}, resume=True), service=service))"
)


def _rows(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]  # whole lines only


def _interrupt_after(client, folder: Path, rows: int) -> threading.Thread:
    """Interrupt the kernel once ``rows`` steps are logged and a checkpoint has landed."""

    def due() -> bool:
        logged = len(_rows(folder / "metrics.jsonl")) >= rows
        return logged and bool(_rows(folder / "checkpoints.jsonl"))

    def watch() -> None:
        deadline = time.monotonic() + 60
        while not due() and time.monotonic() < deadline:
            time.sleep(0.02)
        client.km.interrupt_kernel()

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def _interrupted_then_resumed(client, nb, index: int, folder: Path) -> None:
    watcher = _interrupt_after(client, folder, rows=3)
    client.execute_cell(nb.cells[index], index)
    watcher.join()
    # A blocking cell ends with KeyboardInterrupt; an awaited one is cancelled (the kernel
    # turns an interrupt of async code into a CancelledError).
    assert errors_of(nb.cells[index]) in (["KeyboardInterrupt"], ["CancelledError"]), text_of(
        nb.cells[index]
    )
    # Stopped at a step boundary: nothing trains behind the cell, every line is whole,
    # every listed checkpoint is one the run can resume from.
    stopped = _rows(folder / "metrics.jsonl")
    time.sleep(0.3)
    assert _rows(folder / "metrics.jsonl") == stopped
    steps = [row["step"] for row in stopped]
    assert steps == list(range(1, len(steps) + 1)) and 3 <= len(steps) < TOTAL, steps
    checkpoints = _rows(folder / "checkpoints.jsonl")
    assert checkpoints and all(c["name"] != "final" for c in checkpoints), checkpoints
    # The next cell resumes: the step count continues to the end, as one run.
    client.execute_cell(nb.cells[index + 1], index + 1)
    out = text_of(nb.cells[index + 1])
    match = re.search(r"steps 1\.\.(\d+) \((\d+) rows\), result\.steps (\d+), resumes (\d+)", out)
    assert match, out
    assert [int(g) for g in match.groups()] == [TOTAL, TOTAL, TOTAL, 1], out


def test_interrupting_the_kernel_stops_training_and_resume_continues(tmp_path: Path) -> None:
    nb = new_notebook(
        cells=[
            new_code_cell(SETUP),
            new_code_cell(BLOCKING, metadata={"tags": ["raises-exception"]}),
            new_code_cell(RESUME.format(folder="runs/blocking")),
            new_code_cell(AWAITED, metadata={"tags": ["raises-exception"]}),
            new_code_cell(RESUME_AWAITED.format(folder="runs/awaited")),
        ]
    )
    with kernel(nb, tmp_path, timeout=60) as client:
        client.execute_cell(nb.cells[0], 0)
        _interrupted_then_resumed(client, nb, 1, tmp_path / "runs" / "blocking")
        _interrupted_then_resumed(client, nb, 3, tmp_path / "runs" / "awaited")
