"""How many threads the ``local`` engine's torch kernels use.

Torch's default (one thread per core, each spinning at every barrier) collapses when
another process is busy on the same cores: every parallel region waits for a thread
the kernel has descheduled, and a 30 ms step took over a second. So the one compute
thread (``scheduler``) asks ``Threads.now()`` before each unit of work: at most the
cores this process may run on (its CPU affinity), at most the ``--threads`` knob
(``TINKERKIT_THREADS``), and no more than the cores other processes leave idle, as
measured from ``/proc/stat`` over the last quarter second or more.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass

import torch

from tinkerkit.errors import ConfigError

ENV = "TINKERKIT_THREADS"
SMALL_OP = 5e7
"""FLOPs below which an op runs on one thread: waking a second one costs more than it
saves (a tiny model's 8 x 64-token step ran in 19 ms on one thread, 26 ms on two), all
the more once another thread of the process has a pool of its own, when idle pool
threads stop spinning and every wake-up goes through the kernel."""
WINDOW_S = 0.25
"""The shortest interval the other processes' load is measured over (jiffies are 10 ms)."""


def cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def knob() -> int | None:
    """The ``TINKERKIT_THREADS`` setting, or ``None`` (use what is free).

    Example:
        >>> os.environ["TINKERKIT_THREADS"] = "1"; knob()
        1
    """
    raw = os.environ.get(ENV, "").strip()
    if not raw:
        return None
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ConfigError(
            f"{ENV}={raw!r} is not a number of threads: set a whole number, 1 or more, "
            "or unset it to use the cores other processes leave free."
        )
    return value


def _busy_jiffies(cpus: set[int]) -> int | None:
    """Busy time (user, nice, system, irq, softirq, steal) of ``cpus`` from /proc/stat."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            lines = f.readlines()
    except OSError:
        return None
    total = 0
    for line in lines:
        name, _, rest = line.partition(" ")
        if not name.startswith("cpu") or name == "cpu" or int(name[3:]) not in cpus:
            continue
        fields = [int(x) for x in rest.split()]
        total += fields[0] + fields[1] + fields[2] + sum(fields[5:8])
    return total


class Threads:
    """The thread count for the next unit of work.

    Example:
        >>> Threads().now() <= cores()
        True
    """

    def __init__(self) -> None:
        try:
            self._cpus = set(os.sched_getaffinity(0))
        except (AttributeError, OSError):
            self._cpus = set(range(os.cpu_count() or 1))
        self._hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self._lock = threading.Lock()
        self._mark = (time.monotonic(), _busy_jiffies(self._cpus), time.process_time())
        self._others = 0.0
        self._set = 0

    def _others_load(self) -> float:
        """Cores kept busy by other processes over the last window (0 where unknown)."""
        now, busy, ours = time.monotonic(), None, time.process_time()
        with self._lock:
            start, start_busy, start_ours = self._mark
            if now - start < WINDOW_S:
                return self._others
            busy = _busy_jiffies(self._cpus)
            if busy is None or start_busy is None:
                return 0.0
            elapsed = now - start
            all_busy = (busy - start_busy) / self._hz
            self._others = max(0.0, (all_busy - (ours - start_ours)) / elapsed)
            self._mark = (now, busy, ours)
            return self._others

    def now(self, op_flops: float = float("inf")) -> int:
        """Threads for ops of about ``op_flops`` each (sets torch's count on the calling
        thread): one for small ops, else the free cores within the knob."""
        if op_flops < SMALL_OP:
            wanted = 1
        else:
            free = max(1, round(len(self._cpus) - self._others_load()))
            wanted = min(knob() or len(self._cpus), len(self._cpus), free)
        if wanted != self._set or torch.get_num_threads() != wanted:
            torch.set_num_threads(wanted)
            self._set = wanted
        return wanted


# Settle this (importing) thread's own count first: threads that start torch work later
# take the last count set anywhere, this one keeps torch's default.
DEFAULT = torch.get_num_threads()
POOL = Threads()


def fit(op_flops: float) -> int:
    """``POOL.now(op_flops)``: size torch's threads for the ops about to run.

    Example:
        >>> fit(1e3)
        1
    """
    return POOL.now(op_flops)


@dataclass(frozen=True)
class Shape:
    """FLOPs per row (token) of a model's largest trunk op and of its unembedding."""

    trunk: float
    head: float
    vocab: int = 0

    @classmethod
    def of(cls, config: object, vocab: int) -> Shape:
        text = config.get_text_config() if hasattr(config, "get_text_config") else config
        hidden = int(getattr(text, "hidden_size", 0) or 0)
        inner = int(getattr(text, "intermediate_size", 0) or 4 * hidden)
        return cls(2.0 * hidden * max(inner, hidden), 2.0 * hidden * vocab, vocab)
