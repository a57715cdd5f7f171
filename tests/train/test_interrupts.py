"""An interrupt of a notebook caller (the loop runs on a worker thread there) stops every
loop between steps, leaves whole lines and committed checkpoints, and the run resumes
to exactly the uninterrupted result.

The ``dpo`` case needs torch (DPO is a custom loss, run on torch through
``forward_backward_custom``): it skips without it (``pytest.importorskip``)."""

from __future__ import annotations

import _thread
import asyncio
import time
from typing import Any

import pytest

import tinkerkit as tk
from tinkerkit import _sync

from .loops import LOOPS, lines, losses, rerun, run


def _notebook_cell(fn: Any) -> Any:
    """Call ``fn`` inside a running event loop, as a Jupyter cell does."""
    loop = asyncio.new_event_loop()

    async def cell() -> Any:
        return fn()

    try:
        return loop.run_until_complete(cell())
    finally:
        loop.close()


def _when_logged(step: int, key: str, interrupt: Any) -> Any:
    """A callback that interrupts the caller once ``step`` is logged, then waits (on the
    loop's thread) until the caller has asked the loop to stop."""

    def callback(row: Any) -> None:
        if row.get("step") == step and key in row:
            interrupt()
            deadline = time.monotonic() + 5
            while not _sync._state.stop.is_set() and time.monotonic() < deadline:
                time.sleep(0.01)

    return callback


def _files(folder: Any) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _check_stopped_after_step_3(folder: Any) -> None:
    assert [r["step"] for r in lines(folder / "metrics.jsonl")] == [1, 2, 3]
    assert [e["name"] for e in lines(folder / "checkpoints.jsonl")] == ["step-000002"]
    before = _files(folder)
    time.sleep(0.3)
    assert _files(folder) == before, "the loop went on after the interrupt"


@pytest.mark.parametrize("loop", sorted(LOOPS))
def test_interrupting_a_notebook_cell_stops_the_loop_and_resume_matches(loop, tmp_path):
    if loop == "dpo":
        pytest.importorskip("torch")
    make = LOOPS[loop][0]
    key = "reward_mean" if loop == "rl" else "loss"
    service = tk.connect("mock")
    full = run(loop, tmp_path / "full", service, save_every=2)
    config = make(tmp_path / "run", save_every=2)
    stop = _when_logged(3, key, _thread.interrupt_main)
    t0 = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        _notebook_cell(lambda: rerun(config, service, callbacks=(stop,)))
    assert time.monotonic() - t0 < 10
    _check_stopped_after_step_3(tmp_path / "run")

    resumed = rerun(config, service, resume=True)
    assert resumed.steps == full.steps == 6
    assert abs(resumed.metrics[-1]["loss"] - full.metrics[-1]["loss"]) <= 1e-9
    assert losses(tmp_path / "run") == losses(tmp_path / "full")
    if loop == "rl":
        assert resumed.rewards == full.rewards


def test_cancelling_train_async_stops_the_loop_and_resume_matches(tmp_path):
    service = tk.connect("mock")
    full = run("sft", tmp_path / "full", service, save_every=2)
    config = LOOPS["sft"][0](tmp_path / "run", save_every=2)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        task: asyncio.Future[Any] | None = None

        def cancel() -> None:
            assert task is not None
            loop.call_soon_threadsafe(task.cancel)

        stop = _when_logged(3, "loss", cancel)
        task = asyncio.ensure_future(
            tk.sft.train_async(config.model_copy(update={"callbacks": (stop,)}), service=service)
        )
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    _check_stopped_after_step_3(tmp_path / "run")
    resumed = rerun(config, service, resume=True)
    assert abs(resumed.final_loss - full.final_loss) <= 1e-9
