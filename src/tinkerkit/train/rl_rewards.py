"""Run a reward function over a step's samples: concurrently, with a timeout, never fatal.

``reward(prompt, completion, **fields) -> float`` may be a plain function, an
``async def``, or an object with ``__call__`` (which may keep state). Sync rewards run on
worker threads (``concurrency`` at a time), async ones are gathered on an event loop of their own (on a worker
thread, so this works inside notebooks too). Each call gets ``timeout`` seconds from
the moment it starts. A call that raises, times out, or returns something that is not
a finite number becomes a ``RewardOutcome`` with ``error`` set — the loop logs it,
counts it, and scores it as configured; the run goes on.

    outcomes = score_all(my_reward, calls, timeout=30.0)
    groups, errors = score_groups(my_reward, prompts, groups, labels, step=3)
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from tinkerkit.data.schemas import RLPrompt
from tinkerkit.train.rl_sampling import Sample, for_reward

logger = logging.getLogger("tinkerkit.rl")

OnRewardError = Literal["zero", "skip"]

RewardFn = Callable[..., Any]


@dataclass(frozen=True)
class RewardCall:
    """One reward evaluation: ``reward(prompt, completion, **fields)``."""

    prompt: Any
    completion: str
    fields: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RewardOutcome:
    value: float | None
    error: str | None = None
    timed_out: bool = False


def is_async(fn: RewardFn) -> bool:
    """True for ``async def`` functions and objects whose ``__call__`` is one."""
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004 - we want the bound __call__ itself
    )


def _as_value(raw: Any) -> RewardOutcome:
    try:
        value = float(raw)
    except (TypeError, ValueError):
        return RewardOutcome(None, f"returned {raw!r}, not a number")
    if not math.isfinite(value):
        return RewardOutcome(None, f"returned {value!r}, not a finite number")
    return RewardOutcome(value)


def _describe(exc: BaseException) -> str:
    return f"raised {type(exc).__name__}: {exc}"


def score_all(
    reward: RewardFn,
    calls: Sequence[RewardCall],
    *,
    timeout: float = 30.0,
    concurrency: int = 64,
) -> list[RewardOutcome]:
    """Score every call concurrently; one outcome per call, in order.

    Example:
        >>> score_all(lambda p, c, **f: len(c), [RewardCall("hi", "abc")])
        [RewardOutcome(value=3.0, error=None, timed_out=False)]
    """
    if not calls:
        return []
    if is_async(reward):
        return _score_async(reward, calls, timeout, concurrency)
    return _score_threads(reward, calls, timeout, concurrency)


def _score_threads(
    reward: RewardFn, calls: Sequence[RewardCall], timeout: float, concurrency: int
) -> list[RewardOutcome]:
    # Daemon threads, scheduled here, rather than a ThreadPoolExecutor: a reward that
    # hangs keeps its thread forever, and a pool would both lose that worker and make
    # the interpreter wait for it at exit. Here a timed-out call is abandoned, its slot
    # goes to the next call, and the process can still exit.
    outcomes: list[RewardOutcome | None] = [None] * len(calls)
    changed = threading.Condition()

    def run(i: int) -> None:
        call = calls[i]
        try:
            raw = reward(call.prompt, call.completion, **call.fields)
            if inspect.isawaitable(raw):  # a sync callable that hands back a coroutine
                raw = asyncio.run(_awaited(raw))
            outcome = _as_value(raw)
        except Exception as exc:
            outcome = RewardOutcome(None, _describe(exc))
        with changed:
            if outcomes[i] is None:  # not already given up on
                outcomes[i] = outcome
            changed.notify()

    workers = max(1, concurrency)
    running: dict[int, float] = {}  # call index -> start time
    next_call = 0
    with changed:
        while next_call < len(calls) or running:
            while next_call < len(calls) and len(running) < workers:
                running[next_call] = time.monotonic()
                threading.Thread(
                    target=run, args=(next_call,), name="tinkerkit-reward", daemon=True
                ).start()
                next_call += 1
            first_deadline = min(running.values()) + timeout
            if all(outcomes[i] is None for i in running):
                changed.wait(max(0.0, first_deadline - time.monotonic()))
            now = time.monotonic()
            for i, begun in list(running.items()):
                if outcomes[i] is None and now - begun >= timeout:
                    outcomes[i] = _timed_out(timeout)
                if outcomes[i] is not None:
                    del running[i]
    return [o if o is not None else _timed_out(timeout) for o in outcomes]


def _timed_out(timeout: float) -> RewardOutcome:
    return RewardOutcome(None, f"timed out after {timeout:g} s", timed_out=True)


async def _awaited(awaitable: Any) -> Any:
    return await awaitable


def _score_async(
    reward: RewardFn, calls: Sequence[RewardCall], timeout: float, concurrency: int
) -> list[RewardOutcome]:
    async def one(call: RewardCall, gate: asyncio.Semaphore) -> RewardOutcome:
        async with gate:
            try:
                raw = await asyncio.wait_for(
                    reward(call.prompt, call.completion, **call.fields), timeout
                )
            except TimeoutError:
                return _timed_out(timeout)
            except Exception as exc:
                return RewardOutcome(None, _describe(exc))
            return _as_value(raw)

    async def everything() -> list[RewardOutcome]:
        gate = asyncio.Semaphore(max(1, concurrency))
        return list(await asyncio.gather(*(one(c, gate) for c in calls)))

    result: list[list[RewardOutcome]] = []
    failure: list[BaseException] = []

    def run_loop() -> None:
        try:
            result.append(asyncio.run(everything()))
        except BaseException as exc:  # surfaced below, on the loop's thread
            failure.append(exc)

    # Its own loop on its own thread: works whether or not the caller has a running loop.
    # A daemon thread, so a coroutine that blocks (time.sleep) cannot hold the process.
    thread = threading.Thread(target=run_loop, name="tinkerkit-reward-loop", daemon=True)
    thread.start()
    waves = -(-len(calls) // max(1, concurrency))
    thread.join(timeout * waves + timeout)
    if result:
        return result[0]
    reason = _describe(failure[0]) if failure else f"blocked the event loop past {timeout:g} s"
    return [RewardOutcome(None, reason, timed_out=not failure) for _ in calls]


def score_groups(
    reward: RewardFn,
    prompts: Sequence[RLPrompt],
    groups: list[list[Sample]],
    labels: Mapping[int, str],
    *,
    step: int,
    timeout: float = 30.0,
    concurrency: int = 64,
    on_error: OnRewardError = "zero",
) -> tuple[list[list[Sample]], int]:
    """Score every sample of a step concurrently; (the groups left, the number of failures).

    Example:
        >>> groups, errors = score_groups(math_reward, prompts, groups, {}, step=1)
    """
    calls = [
        RewardCall(for_reward(prompts[s.prompt_index]), s.text, prompts[s.prompt_index].fields)
        for group in groups
        for s in group
    ]
    outcomes = score_all(reward, calls, timeout=timeout, concurrency=concurrency)
    errors = sum(o.error is not None for o in outcomes)
    return apply_rewards(groups, outcomes, labels, on_error=on_error, step=step), errors


def apply_rewards(
    groups: Sequence[Sequence[Sample]],
    outcomes: Sequence[RewardOutcome],
    labels: Mapping[int, str],
    *,
    on_error: OnRewardError = "zero",
    step: int = 0,
) -> list[list[Sample]]:
    """Write rewards into the samples; failed ones are logged and zeroed or dropped.

    ``outcomes`` follow the samples in group order; ``labels`` name each prompt index
    for the log line. Returns the groups that remain.

    Example:
        >>> groups = apply_rewards(groups, outcomes, {0: "prompt #0 '2+2?'"}, on_error="skip")
    """
    flat = [s for group in groups for s in group]
    if len(flat) != len(outcomes):
        raise ValueError(f"{len(flat)} samples but {len(outcomes)} reward outcomes")
    for sample, outcome in zip(flat, outcomes, strict=True):
        sample.reward = outcome.value
        if outcome.error is not None:
            action = "scored 0" if on_error == "zero" else "skipped"
            logger.warning(
                "step %d: reward for %s %s; sample %s",
                step,
                labels.get(sample.prompt_index, f"prompt #{sample.prompt_index}"),
                outcome.error,
                action,
            )
            if on_error == "zero":
                sample.reward = 0.0
    return [[s for s in group if s.reward is not None] for group in groups]
