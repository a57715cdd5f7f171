"""``tk.connect("mock")`` (the official SDK over loopback HTTP to the service in this
process) against the service's own in-process work, side by side in one run.

Run: ``python benchmarks/connect_overhead.py [--steps 60] [--samples 300] [--old PATH]``.
Every round calls each side once (interleaved, so all sides see the same machine state);
figures are medians. Exits 1 when an acceptance bound of issue 21 is missed::

    forward_backward + optim_step, 8 x 64 tokens, LoRA rank 32 (median of 60)
      in-process (service core)           6.10 ms
      tk.connect("mock")                 14.90 ms   2.44x in-process  (bound 3x: ok)
    sample(), 8-token prompt, max_tokens=4 (median of 300)
      in-process (service core)           0.55 ms
      tk.connect("mock")                  5.10 ms
      SDK floor (canned server)           3.40 ms   new 1.50x the floor  (bound 2x: ok)

The sides:

- **in-process (service core)**: ``tinkerkit.server.service.Service`` called directly,
  without HTTP or the SDK: ``Model.forward(..., backward=True)`` + ``Model.optim_step``,
  ``Sampler.check_limits`` + ``Sampler.sample`` — the engine work, validation, loss,
  ordering and futures the old in-process clients did (and the routes do now).
- **tk.connect("mock")**: the SDK's own ``tinker.ServiceClient`` against the process's
  own service on loopback (``server/inprocess.py``): server and SDK share this process.
- **SDK floor**: the same ``sample()`` against ``serve_overhead.py``'s canned server (a
  child process answering ``asample``/``retrieve_future`` with fixed bytes): what the
  official client costs per round trip, whatever the server does.
- ``--old PATH``: the previous commit's in-process mirror (``tk.connect("mock")`` of a
  tinkerkit whose package lies in ``PATH``, e.g. a worktree's ``src``), run in a child
  process (the two packages share a name) that takes its turn in every round over a pipe.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("TINKER_TELEMETRY", "0")
# OpenBLAS's default threads spin against other processes on a shared machine
# (docs/performance.md, "Mock training step"); every side runs the same engine.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
# Each SDK httpx client loads the CA bundle (~35 ms) otherwise: client creation only.
os.environ.pop("SSL_CERT_FILE", None)
os.environ.setdefault("SSL_CERT_DIR", tempfile.mkdtemp(prefix="tk-no-certs-"))

import numpy as np
from tinker import types

MODEL = "tinkerkit/tiny"
RANK = 32
FB_BOUND = 3.0
SAMPLE_BOUND = 2.0
PROMPT = types.ModelInput.from_ints(list(range(1, 9)))
PARAMS = types.SamplingParams(max_tokens=4, seed=0)
ADAM = types.AdamParams(learning_rate=1e-4)

Timed = Callable[[], float]
"""One call of one side; its wall time in seconds."""


def _datums(batch: int = 8, length: int = 64) -> list[types.Datum]:
    rng = np.random.default_rng(0)
    seqs = [rng.integers(0, 256, length + 1) for _ in range(batch)]
    return [
        types.Datum(
            model_input=types.ModelInput.from_ints(s[:-1].tolist()),
            loss_fn_inputs={"target_tokens": s[1:], "weights": np.ones(length, np.float32)},
        )
        for s in seqs
    ]


def _timed(call: Callable[[], Any]) -> Timed:
    def run() -> float:
        start = time.perf_counter()
        call()
        return time.perf_counter() - start

    return run


def _medians_ms(calls: list[Timed], n: int, warmup: int) -> list[float]:
    """Median time of each side, interleaved: every round calls every side once."""
    for _ in range(warmup):
        for call in calls:
            call()
    times: list[list[float]] = [[] for _ in calls]
    for _ in range(n):
        for call, bucket in zip(calls, times, strict=True):
            bucket.append(call())
    return [statistics.median(t) * 1000 for t in times]


# --- the sides ------------------------------------------------------------------------------


def _sdk_calls(service: Any, data: list[types.Datum]) -> tuple[Callable[[], Any], ...]:
    """fb+optim and sample() through an SDK-shaped ``ServiceClient`` (new or old tinkerkit)."""
    training = service.create_lora_training_client(base_model=MODEL, rank=RANK, seed=0)
    training = training.result() if hasattr(training, "result") else training
    sampling = service.create_sampling_client(base_model=MODEL)
    sampling = sampling.result() if hasattr(sampling, "result") else sampling

    def step() -> None:
        fb = training.forward_backward(data, "cross_entropy")
        optim = training.optim_step(ADAM)
        fb.result()
        optim.result()

    def sample() -> None:
        sampling.sample(PROMPT, 1, PARAMS).result()

    return step, sample


def _core_calls(data: list[types.Datum]) -> tuple[Callable[[], Any], ...]:
    """The same work on the service core: no HTTP, no SDK."""
    from tinkerkit.backends.engine import LoraConfig
    from tinkerkit.backends.registry import engine_factory
    from tinkerkit.server.sampler import SampleCall
    from tinkerkit.server.service import Service

    service = Service(engine_factory("mock"))
    lora = LoraConfig(rank=RANK, seed=0)
    model = service.create_model(MODEL, lora, None, None, session_id=None).result()
    sampler = service.create_sampler(model_path=None, base_model=MODEL, session_id=None).result()
    counter = iter(range(1 << 62))

    def step() -> None:
        fb = model.forward(data, "cross_entropy", None, backward=True)
        optim = model.optim_step(ADAM)
        fb.result()
        optim.result()

    def sample() -> None:
        call = SampleCall(PROMPT, 1, PARAMS, [f"core:{next(counter)}:0"])
        sampler.check_limits(call)
        sampler.sample(call).result()

    return step, sample


class _OldChild:
    """The old in-process ``tk.connect("mock")`` in a child process, one call per command."""

    def __init__(self, path: str) -> None:
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([path, os.environ.get("PYTHONPATH", "")]),
        }
        self.proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--old-child"],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        self.module = self._read()
        expected = Path(path).resolve()
        if expected not in Path(self.module).resolve().parents:
            self.close()
            raise SystemExit(f"--old {path}: the child imported tinkerkit from {self.module}")

    def _read(self) -> str:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the old tinkerkit's child exited ({self.proc.wait()})")
        return line.strip()

    def call(self, name: str) -> Timed:
        def run() -> float:
            assert self.proc.stdin is not None
            self.proc.stdin.write(name + "\n")
            return float(self._read())

        return run

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.wait(timeout=30)


def _old_child_main() -> None:
    """Child side of ``--old``: this process's ``tinkerkit`` is the old one."""
    import tinkerkit as tk

    calls = dict(zip(("step", "sample"), _sdk_calls(tk.connect("mock"), _datums()), strict=True))
    print(tk.__file__, flush=True)
    for line in sys.stdin:
        print(_timed(calls[line.strip()])(), flush=True)


# --- the run --------------------------------------------------------------------------------


def _verdict(ratio: float, bound: float) -> str:
    return f"(bound {bound:g}x: {'ok' if ratio <= bound else 'MISSED'})"


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--steps", type=int, default=60, help="forward_backward+optim rounds")
    parser.add_argument("--samples", type=int, default=300, help="sample() rounds")
    parser.add_argument("--old", metavar="PATH", help="also the old tinkerkit package in PATH")
    parser.add_argument("--old-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    home = tempfile.mkdtemp(prefix="tk-connect-bench-")
    os.environ.setdefault("TINKERKIT_HOME", home)
    if args.old_child:
        _old_child_main()
        return

    import serve_overhead  # the canned server (this script's folder is on sys.path)

    import tinkerkit as tk

    data = _datums()
    core = _core_calls(data)
    new = _sdk_calls(tk.connect("mock"), data)
    old = _OldChild(args.old) if args.old else None
    canned_cli = [os.path.join(os.path.dirname(serve_overhead.__file__), "serve_overhead.py")]
    try:
        with serve_overhead._child([*canned_cli, "--canned-port"], home) as canned:
            floor_client = serve_overhead._sampler(canned)
            floor = lambda: floor_client.sample(PROMPT, 1, PARAMS).result()  # noqa: E731
            steps = [_timed(core[0]), _timed(new[0])]
            samples = [_timed(core[1]), _timed(new[1]), _timed(floor)]
            if old is not None:
                steps.append(old.call("step"))
                samples.append(old.call("sample"))
            step_ms = _medians_ms(steps, args.steps, 5)
            sample_ms = _medians_ms(samples, args.samples, 20)
    finally:
        if old is not None:
            old.close()

    fb_ratio = step_ms[1] / step_ms[0]
    sample_ratio = sample_ms[1] / sample_ms[2]
    print(
        f"forward_backward + optim_step, 8 x 64 tokens, LoRA rank {RANK} (median of {args.steps})"
    )
    print(f"  in-process (service core)   {step_ms[0]:7.2f} ms")
    print(
        f'  tk.connect("mock")          {step_ms[1]:7.2f} ms  {fb_ratio:5.2f}x in-process  '
        f"{_verdict(fb_ratio, FB_BOUND)}"
    )
    if old is not None:
        print(
            f"  old in-process mirror       {step_ms[2]:7.2f} ms  "
            f"new {step_ms[1] / step_ms[2]:.2f}x it  (separate process)"
        )
    print(f"sample(), 8-token prompt, max_tokens=4 (median of {args.samples})")
    print(f"  in-process (service core)   {sample_ms[0]:7.2f} ms")
    print(f'  tk.connect("mock")          {sample_ms[1]:7.2f} ms')
    print(
        f"  SDK floor (canned server)   {sample_ms[2]:7.2f} ms  new {sample_ratio:.2f}x the floor  "
        f"{_verdict(sample_ratio, SAMPLE_BOUND)}"
    )
    if old is not None:
        print(
            f"  old in-process mirror       {sample_ms[3]:7.2f} ms  "
            f"new {sample_ms[1] / sample_ms[3]:.1f}x it  (separate process)"
        )
        print(f"  (old: {old.module}, measured in a child process, interleaved round by round)")
    if fb_ratio > FB_BOUND or sample_ratio > SAMPLE_BOUND:
        sys.exit(1)


if __name__ == "__main__":
    main()
