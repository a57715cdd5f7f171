"""What ``tinkerkit serve`` adds per request: forward_backward through the official SDK
over loopback HTTP vs the same call on ``tk.connect("mock")`` directly.

Run: ``python benchmarks/serve_overhead.py [--requests 100]``. Prints
``server overhead per request: X ms (direct Y ms, via server Z ms)`` (medians of
one forward_backward + ``.result()`` each, same datums, after a warm-up).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from typing import Any

os.environ.setdefault("TINKER_TELEMETRY", "0")

import tinker
from tinker import types

import tinkerkit as tk
from tinkerkit.server import serve

MODEL = "tinkerkit/tiny"


def _datums() -> list[types.Datum]:
    texts = ["The quick brown fox jumps.", "Over the lazy dog.", "Tinker, tailor, soldier."]
    out = []
    for text in texts:
        tokens = list(text.encode())
        out.append(
            types.Datum(
                model_input=types.ModelInput.from_ints(tokens[:-1]),
                loss_fn_inputs={"target_tokens": tokens[1:], "weights": [1.0] * (len(tokens) - 1)},
            )
        )
    return out


def _medians_ms(calls: list[Callable[[], Any]], n: int, warmup: int = 10) -> list[float]:
    """Median wall time of each call, interleaved so both see the same machine state.

    Interleaving matters on small VMs: how fast a blocked thread wakes up depends on
    what else the process is doing, so timing one side after the other skews the result.
    """
    for _ in range(warmup):
        for call in calls:
            call()
    times: list[list[float]] = [[] for _ in calls]
    for _ in range(n):
        for call, bucket in zip(calls, times, strict=True):
            start = time.perf_counter()
            call()
            bucket.append(time.perf_counter() - start)
    return [statistics.median(t) * 1000 for t in times]


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--requests", type=int, default=100)
    args = parser.parse_args()
    os.environ.setdefault("TINKERKIT_HOME", tempfile.mkdtemp(prefix="tk-serve-bench-"))
    data = _datums()
    with serve("mock") as server:
        direct_service = tk.connect("mock")
        direct = direct_service.create_lora_training_client(base_model=MODEL, rank=8, seed=0)
        direct = direct.result()
        service = tinker.ServiceClient(base_url=server.base_url, api_key=server.api_key)
        served = service.create_lora_training_client(base_model=MODEL, rank=8, seed=0).result()
        direct_ms, served_ms = _medians_ms(
            [
                lambda: direct.forward_backward(data, "cross_entropy").result(),
                lambda: served.forward_backward(data, "cross_entropy").result(),
            ],
            args.requests,
        )
    print(
        f"server overhead per request: {served_ms - direct_ms:.2f} ms "
        f"(direct {direct_ms:.2f} ms, via server {served_ms:.2f} ms)"
    )


if __name__ == "__main__":
    main()
