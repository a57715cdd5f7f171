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

import torch

ENV = "TINKERKIT_THREADS"
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
        raise ValueError(f"{ENV}={raw!r} is not a whole number of threads") from None
    if value < 1:
        raise ValueError(f"{ENV}={raw!r}: give 1 or more threads")
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

    def now(self) -> int:
        """Threads for the next unit of work (sets torch's count on the calling thread)."""
        free = max(1, round(len(self._cpus) - self._others_load()))
        wanted = min(knob() or len(self._cpus), len(self._cpus), free)
        if wanted != self._set or torch.get_num_threads() != wanted:
            torch.set_num_threads(wanted)
            self._set = wanted
        return wanted
