"""``tk.connect("mock")`` (the official SDK over loopback HTTP to the service in this
process) against the service's own in-process work, side by side in one run.

Run: ``python benchmarks/connect_overhead.py [--steps 60] [--samples 300] [--old PATH]
[--threads]``.
Every round calls each side once (interleaved, so all sides see the same machine state);
figures are medians. Exits 1 when an acceptance bound of issue 21 is missed::

    forward_backward + optim_step, 8 x 64 tokens, LoRA rank 32 (median of 60)
                                          wall       CPU
      in-process (service core)        8.49 ms   8.41 ms
      tk.connect("mock")              19.61 ms  19.39 ms  2.31x in-process (bound 3x: ok)
    sample(), 8-token prompt, max_tokens=4 (median of 300)
                                          wall       CPU
      in-process (service core)        0.88 ms   0.88 ms
      tk.connect("mock")               5.58 ms   5.53 ms  1.40x the SDK floor
      SDK floor (canned server)        3.98 ms   3.65 ms  the SDK's own cost (bound 2x: ok)

CPU is this process's, all threads: on two cores the new path's wall time follows its
CPU time (SDK, server and engine share one GIL), so CPU is the steadier figure on a
loaded machine. ``--threads`` splits the new path's CPU by thread (SDK event loop,
uvicorn, engine worker, caller).

The sides:

- **in-process (service core)**: ``tinkerkit.server.service.Service`` called directly,
  without HTTP or the SDK: ``Model.forward(..., backward=True)`` + ``Model.optim_step``,
  ``Sampler.check_limits`` + ``Sampler.sample``: the engine work, loss, request
  checks, worker thread and futures that the old in-process clients also did (the
  routes add the wire decoding and the ``seq_id`` turn).
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

Timed = Callable[[], tuple[float, float]]
"""One call of one side; its wall time and its process's CPU time (all threads), in s."""


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
    def run() -> tuple[float, float]:
        start, cpu = time.perf_counter(), time.process_time()
        call()
        return time.perf_counter() - start, time.process_time() - cpu

    return run


def _medians_ms(calls: list[Timed], n: int, warmup: int) -> list[tuple[float, float]]:
    """Median wall and CPU time of each side, in ms, interleaved: every round calls every
    side once, so all sides see the same machine state."""
    for _ in range(warmup):
        for call in calls:
            call()
    times: list[list[tuple[float, float]]] = [[] for _ in calls]
    for _ in range(n):
        for call, bucket in zip(calls, times, strict=True):
            bucket.append(call())
    return [
        (statistics.median(w for w, _ in t) * 1000, statistics.median(c for _, c in t) * 1000)
        for t in times
    ]


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
        paths = [path, *filter(None, [os.environ.get("PYTHONPATH")])]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
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
        def run() -> tuple[float, float]:
            assert self.proc.stdin is not None
            self.proc.stdin.write(name + "\n")
            wall, cpu = self._read().split()
            return float(wall), float(cpu)

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
        wall, cpu = _timed(calls[line.strip()])()
        print(wall, cpu, flush=True)


def _thread_cpu(call: Callable[[], Any], n: int) -> dict[str, float]:
    """CPU ms per call of each kind of thread in this process (Linux ``schedstat``)."""
    import threading

    def kind(name: str) -> str:
        if name == "MainThread":
            return "caller"
        if "_background_thread_func" in name:
            return "SDK event loop"
        if name == "tinkerkit-service":
            return "server (uvicorn)"
        if name.startswith(("tinkerkit-model", "tinkerkit-sampler")):
            return "engine worker"
        return "other"

    def snapshot() -> dict[str, int]:
        out: dict[str, int] = {}
        for thread in threading.enumerate():
            try:
                stat = Path(f"/proc/self/task/{thread.native_id}/schedstat").read_text()
            except OSError:
                continue
            out[kind(thread.name)] = out.get(kind(thread.name), 0) + int(stat.split()[0])
        return out

    before = snapshot()
    for _ in range(n):
        call()
    after = snapshot()
    return {k: (v - before.get(k, 0)) / n / 1e6 for k, v in after.items()}


# --- the run --------------------------------------------------------------------------------


def _verdict(ratio: float, bound: float) -> str:
    return f"(bound {bound:g}x: {'ok' if ratio <= bound else 'MISSED'})"


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--steps", type=int, default=60, help="forward_backward+optim rounds")
    parser.add_argument("--samples", type=int, default=300, help="sample() rounds")
    parser.add_argument("--old", metavar="PATH", help="also the old tinkerkit package in PATH")
    parser.add_argument(
        "--threads", action="store_true", help="also the new path's CPU per thread (Linux)"
    )
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

    fb_ratio = step_ms[1][0] / step_ms[0][0]
    sample_ratio = sample_ms[1][0] / sample_ms[2][0]
    old_note = "old in-process mirror (*)"
    head = f"{'wall':>10} {'CPU':>9}"

    def row(name: str, ms: tuple[float, float], note: str = "") -> None:
        print(f"  {name:29} {ms[0]:7.2f} ms {ms[1]:6.2f} ms  {note}".rstrip())

    print(
        f"forward_backward + optim_step, 8 x 64 tokens, LoRA rank {RANK} (median of {args.steps})"
    )
    print(f"  {'':29} {head}")
    row("in-process (service core)", step_ms[0])
    row(
        'tk.connect("mock")',
        step_ms[1],
        f"{fb_ratio:.2f}x in-process {_verdict(fb_ratio, FB_BOUND)}",
    )
    if old is not None:
        row(old_note, step_ms[2], f"new {step_ms[1][0] / step_ms[2][0]:.2f}x it")
    print(f"sample(), 8-token prompt, max_tokens=4 (median of {args.samples})")
    print(f"  {'':29} {head}")
    row("in-process (service core)", sample_ms[0])
    row('tk.connect("mock")', sample_ms[1], f"{sample_ratio:.2f}x the SDK floor")
    row(
        "SDK floor (canned server)",
        sample_ms[2],
        f"the SDK's own cost {_verdict(sample_ratio, SAMPLE_BOUND)}",
    )
    if old is not None:
        row(old_note, sample_ms[3], f"new {sample_ms[1][0] / sample_ms[3][0]:.1f}x it")
        print(f"(*) {old.module}: in a child process (its own GIL), interleaved round by round")
    print("CPU: this process's, all threads (the canned server's and the old child's own)")
    if args.threads and Path("/proc/self/task").is_dir():
        for name, call, n in (("fb+optim", new[0], args.steps), ("sample()", new[1], args.samples)):
            cpu = _thread_cpu(call, n)
            parts = ", ".join(f"{k} {v:.2f}" for k, v in sorted(cpu.items(), key=lambda kv: -kv[1]))
            print(f'tk.connect("mock") {name}: CPU ms per call by thread: {parts}')
    if fb_ratio > FB_BOUND or sample_ratio > SAMPLE_BOUND:
        sys.exit(1)


if __name__ == "__main__":
    main()
