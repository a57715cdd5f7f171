"""Run blocking loops from anywhere, including inside a running event loop (Jupyter)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")


def run_blocking(fn: Callable[[], T]) -> T:
    """Call ``fn``; inside a running event loop, call it on a worker thread and wait.

    A notebook cell runs inside an event loop, where ``asyncio.run`` fails and the tinker
    SDK refuses blocking ``.result()`` calls; a plain thread has neither problem.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return fn()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="tinkerkit-loop") as pool:
        return pool.submit(fn).result()


async def run_in_thread(fn: Callable[[], T]) -> T:
    """The async entry point of a blocking loop."""
    return await asyncio.to_thread(fn)
