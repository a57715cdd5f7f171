"""Run blocking loops from anywhere, including inside a running event loop (Jupyter).

Inside an event loop the loop runs on a worker thread, which an interrupt of the
caller (Ctrl-C, a notebook's "interrupt kernel", a cancelled ``await``) does not reach.
So the caller's interrupt sets a stop flag, the loop checks it between steps
(``raise_if_stopped``) and ends there with ``KeyboardInterrupt``, and the caller waits
for that before re-raising: nothing keeps training behind the user's back, and the run
is left as a direct Ctrl-C leaves it (committed checkpoints, whole lines; resumable).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import signal
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from types import FrameType
from typing import TypeVar

T = TypeVar("T")

_state = threading.local()
_POLL_SECONDS = 0.1
"""How often a waiting caller looks for an interrupt: ``_thread.interrupt_main`` (and
some kernels) only set a flag, which a wait with no timeout would not see."""


def raise_if_stopped() -> None:
    """Raise ``KeyboardInterrupt`` in a loop whose caller was interrupted; else nothing.

    Example:
        >>> raise_if_stopped()  # not on a stopped loop's thread: returns
    """
    stop: threading.Event | None = getattr(_state, "stop", None)
    if stop is not None and stop.is_set():
        raise KeyboardInterrupt("the caller was interrupted; the loop stopped between steps")


def _with_stop(stop: threading.Event, fn: Callable[[], T]) -> Callable[[], T]:
    def target() -> T:
        _state.stop = stop
        try:
            return fn()
        finally:
            _state.stop = None

    return target


def run_blocking(fn: Callable[[], T]) -> T:
    """Call ``fn``; inside a running event loop, call it on a worker thread and wait.

    A notebook cell runs inside an event loop, where ``asyncio.run`` fails and the tinker
    SDK refuses blocking ``.result()`` calls; a plain thread has neither problem. An
    interrupt while waiting stops ``fn`` at its next ``raise_if_stopped`` and is re-raised.

    Example:
        >>> run_blocking(lambda: 2 + 2)
        4
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return fn()
    stop = threading.Event()
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tinkerkit-loop")
    future = pool.submit(_with_stop(stop, fn))
    try:
        while True:
            try:
                return future.result(timeout=_POLL_SECONDS)
            except concurrent.futures.TimeoutError:
                continue
    except KeyboardInterrupt:
        stop.set()
        concurrent.futures.wait([future])  # a second interrupt leaves at once
        raise
    finally:
        pool.shutdown(wait=False)


async def run_in_thread(fn: Callable[[], T]) -> T:
    """The async entry point of a blocking loop; cancelling it stops the loop between steps.

    Example:
        >>> asyncio.run(run_in_thread(lambda: 2 + 2))
        4
    """
    stop = threading.Event()
    future = asyncio.get_running_loop().run_in_executor(None, _with_stop(stop, fn))
    try:
        with _stop_on_sigint(stop):
            return await asyncio.shield(future)
    except KeyboardInterrupt as exc:
        # The loop stopped on an interrupt. A KeyboardInterrupt out of a task would stop
        # the whole event loop (asyncio re-raises it); in async code an interrupt is a
        # cancellation, as a kernel reports it.
        raise asyncio.CancelledError(str(exc)) from exc
    except asyncio.CancelledError:
        stop.set()
        await asyncio.wait([future])
        raise


@contextmanager
def _stop_on_sigint(stop: threading.Event) -> Iterator[None]:
    """While awaiting on the main thread, an interrupt (SIGINT) also sets ``stop``.

    A Jupyter kernel turns "interrupt kernel" during an awaited cell into a cancellation
    of the cell, but ipykernel 7 delivers it only once the awaited work is done; so the
    loop is told directly and ends at its next step with ``KeyboardInterrupt``, which ends
    the cell. The previous handler still runs (it cancels where it can, as before).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)

    def on_sigint(signum: int, frame: FrameType | None) -> None:
        stop.set()
        if callable(previous):
            previous(signum, frame)

    signal.signal(signal.SIGINT, on_sigint)
    try:
        yield
    finally:
        if signal.getsignal(signal.SIGINT) is on_sigint:  # not replaced meanwhile
            signal.signal(signal.SIGINT, previous)
