"""The one thread that runs the ``local`` engine's torch work, in this process.

Requests of many models arrive on many threads (one worker per model and per sampler in
the service). Running their kernels at once would oversubscribe the cores, so every
unit of work is handed to one compute thread, which sizes torch's thread pool before
each phase (``threads.fit``) and between units advances every model's sample batch by one token
(``generate.Lane``): sample requests that arrive while others decode join them.

Example:
    >>> SCHEDULER.call(lambda: 1 + 1)
    2
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

from torch import nn

from tinkerkit.backends.local.generate import Generation, Lane
from tinkerkit.backends.local.multi_lora import TrainJob, run_together
from tinkerkit.backends.local.threads import Shape

T = TypeVar("T")

GATHER_S = 0.01
"""The longest a training job waits for the other clients of its base."""
RECENT_S = 1.0
"""Clients whose jobs were in flight together this recently are expected to be again."""


class Scheduler:
    """Runs calls and sample batches on one daemon thread, started on first use."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._calls: deque[tuple[Callable[[], Any], Future[Any]]] = deque()
        self._joins: list[tuple[Any, nn.Module, Any, Shape, Generation]] = []
        self._lanes: dict[Any, Lane] = {}  # touched by the compute thread only
        self._trains: list[TrainJob] = []
        self._partners: dict[int, dict[int, float]] = {}
        """Engine id: the engines whose jobs were in flight with its own, and when."""
        self._last_taken: dict[Any, frozenset[int]] = {}  # family: engines of its last pass
        self._thread: threading.Thread | None = None

    def _ensure(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="tinkerkit-local", daemon=True)
            self._thread.start()

    def call(self, fn: Callable[[], T]) -> T:
        """``fn()`` run on the compute thread; its result or its exception, here."""
        if threading.current_thread() is self._thread:
            return fn()
        future: Future[T] = Future()
        self._put(self._calls, (fn, future))
        return future.result()

    def train(self, job: TrainJob) -> None:
        """Run ``job`` in one pass with the other clients' jobs waiting on its base (``multi_lora``)."""
        if threading.current_thread() is self._thread:
            run_together([job])
        else:
            self._put(self._trains, job)
        job.future.result()

    def generate(
        self, key: Any, lm: nn.Module, device: Any, shape: Shape, request: Generation
    ) -> None:
        """Decode ``request`` on ``lm`` with the others of lane ``key`` (its engine's
        ``family``); its ``future`` settles when done."""
        self._put(self._joins, (key, lm, device, shape, request))

    def _put(self, queue: Any, item: Any) -> None:
        """Append ``item`` to one of the thread's queues and wake it (started if need be)."""
        with self._cond:
            self._ensure()
            queue.append(item)
            self._cond.notify()

    def _gather(self) -> None:
        """Hold the waiting training jobs up to ``GATHER_S`` while clients that recently
        sent jobs at the same time as a waiting job's client (less than ``RECENT_S`` ago)
        have not sent theirs yet (the lock held): clients stepping in lockstep share one
        pass; a client training alone, or clients taking turns, never wait."""
        deadline = time.monotonic() + GATHER_S
        while not self._calls and not self._joins:
            now = time.monotonic()
            present = {id(job.engine) for job in self._trains}
            expected = {
                partner
                for engine in present
                for partner, seen in self._partners.get(engine, {}).items()
                if now - seen < RECENT_S
            }
            if expected <= present or now >= deadline:
                return
            self._cond.wait(deadline - now)

    def _remember(self, groups: dict[Any, list[TrainJob]], idle: bool) -> None:
        """Note which clients' jobs were in flight together (the lock held): those of one
        pass, and, unless the thread was idle before, those that arrived during the last
        pass of their family."""
        now = time.monotonic()
        last, self._last_taken = self._last_taken, {}
        for family, group in groups.items():
            together = frozenset(id(job.engine) for job in group)
            self._last_taken[family] = together
            if not idle:
                together |= last.get(family, frozenset())
            for engine in together:
                self._partners.setdefault(engine, {}).update(dict.fromkeys(together, now))
        self._partners = {
            engine: fresh
            for engine, partners in self._partners.items()
            if (fresh := {p: t for p, t in partners.items() if now - t < RECENT_S})
        }

    def _run(self) -> None:
        while True:
            with self._cond:
                idle = False
                while not (self._calls or self._trains or self._joins or self._lanes):
                    idle = True
                    self._cond.wait()
                if self._trains and not (self._calls or self._joins or self._lanes):
                    self._gather()
                calls = list(self._calls)
                self._calls.clear()
                joins, self._joins = self._joins, []
                trains, self._trains = self._trains, []
                groups: dict[Any, list[TrainJob]] = {}
                for job in trains:
                    groups.setdefault(job.engine.family, []).append(job)
                self._remember(groups, idle)
            for group in groups.values():
                try:
                    run_together(group)
                except BaseException as exc:  # run_together settles its jobs; in case not
                    for job in group:
                        if not job.future.done():
                            job.future.set_exception(exc)
            for key, lm, device, shape, request in joins:
                lane = self._lanes.get(key)
                if lane is None:
                    try:
                        lane = self._lanes[key] = Lane(lm, device, shape)
                    except BaseException as exc:
                        request.future.set_exception(exc)
                        continue
                lane.join(request, lm)
            for fn, future in calls:
                if not future.set_running_or_notify_cancel():
                    continue
                try:
                    future.set_result(fn())
                except BaseException as exc:
                    future.set_exception(exc)
            for key, lane in list(self._lanes.items()):
                try:
                    lane.round()
                except BaseException as exc:
                    lane.fail(exc)
                if not lane.busy:
                    del self._lanes[key]


SCHEDULER = Scheduler()


def _after_fork() -> None:  # the thread does not survive a fork; start afresh in the child
    SCHEDULER.__init__()  # type: ignore[misc]


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)
