"""``tinkerkit serve`` against in-process, side by side: the ``sample()`` round trip and
``forward_backward`` token throughput through the unmodified official SDK.

Run: ``python benchmarks/serve_overhead.py [--samples 300] [--steps 10] [--model NAME]
[--in-thread]``. Prints medians of interleaved calls (each round calls every side once,
so all sides see the same machine state)::

    sample() round trip, 8-token prompt, max_tokens=4 (median of 300)
      in-process tk.connect("mock")    0.88 ms
      served                           3.97 ms    4.5x in-process
      SDK floor (canned server)        3.07 ms  the SDK's own cost per round trip
    forward_backward, 8 x 512 tokens, tinkerkit/tiny (median of 6)
      in-process     45,634 tok/s  (89.8 ms)
      served         43,634 tok/s  (93.9 ms)  96% of in-process

The server is ``tinkerkit serve`` in a child process, as ``tinkerkit serve`` and
``tinkerkit run`` run it (``--in-thread``: ``tk.serve`` in this process instead, where it
shares the GIL with the SDK). The SDK floor is the same ``sample()`` against a canned
server answering ``asample``/``retrieve_future`` with fixed bytes: what the official
client costs per round trip whatever the server does.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

os.environ.setdefault("TINKER_TELEMETRY", "0")

import httpx
import numpy as np
import tinker
from tinker import types

import tinkerkit as tk

MODEL = "tinkerkit/tiny"
KEY = "tml-local-benchmark-key"
PROMPT = types.ModelInput.from_ints(list(range(1, 9)))
PARAMS = types.SamplingParams(max_tokens=4, seed=0)


def _medians_ms(calls: list[Callable[[], Any]], n: int, warmup: int) -> list[float]:
    """Median wall time of each call, interleaved so every side sees the same machine."""
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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_until_up(url: str, child: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise RuntimeError(f"server exited with {child.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            httpx.get(url + "/api/v1/healthz", timeout=1)
            return
        time.sleep(0.1)
    raise RuntimeError(f"no server at {url} after 60 s")


@contextlib.contextmanager
def _child(args: list[str], home: str) -> Iterator[str]:
    port = _free_port()
    env = {**os.environ, "TINKERKIT_HOME": home, "TINKERKIT_SERVE_API_KEY": KEY}
    child = subprocess.Popen([sys.executable, *args, str(port)], env=env, stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(url, child)
        yield url
    finally:
        child.terminate()
        child.wait(timeout=10)


@contextlib.contextmanager
def _server(in_thread: bool, home: str) -> Iterator[str]:
    if in_thread:
        from tinkerkit.server import serve

        with serve("mock", api_key=KEY) as server:
            yield server.base_url
        return
    cli = ["-m", "tinkerkit.cli", "serve", "--backend", "mock", "--quiet"]
    with _child([*cli, "--port"], home) as url:
        yield url


# --- the canned server: what the SDK costs on its own --------------------------------------


def _canned_responses() -> dict[str, tuple[bytes, bytes]]:
    from tinkerkit.server.routes_service import client_config
    from tinkerkit.server.wire import sample_response_to_proto

    sample = types.SampleResponse(
        sequences=[
            types.SampledSequence(
                stop_reason="length",
                sequence_id="x",
                tokens_np=np.arange(1, 5, dtype=np.int32),
                logprobs_np=np.full(4, -1.0, dtype=np.float32),
            )
        ]
    )
    json_type = b"application/json"
    return {
        "/client/config": (json.dumps(client_config().model_dump(mode="json")).encode(), json_type),
        "/client/dynamic_config": (b'{"refresh_interval_sec": 3600}', json_type),
        "/create_session": (b'{"session_id": "canned"}', json_type),
        "/create_sampling_session": (b'{"sampling_session_id": "canned:sample:0"}', json_type),
        "/asample": (b'{"request_id": "r", "sample_sequence_ids": ["r:0"]}', json_type),
        "/retrieve_future": (sample_response_to_proto(sample), b"application/x-protobuf"),
    }


class _Canned(asyncio.Protocol):
    """HTTP/1.1 keep-alive, one fixed answer per path, no framework."""

    answers: ClassVar[dict[str, tuple[bytes, bytes]]] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport, self.buffer = transport, b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            head = self.buffer[:end].decode("latin-1").split("\r\n")
            length = next(
                (int(h.split(":", 1)[1]) for h in head if h.lower().startswith("content-length")),
                0,
            )
            if len(self.buffer) < end + 4 + length:
                return
            self.buffer = self.buffer[end + 4 + length :]
            path = head[0].split(" ")[1].removeprefix("/api/v1")
            body, kind = self.answers.get(path, (b"{}", b"application/json"))
            self.transport.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: %s\r\ncontent-length: %d\r\n\r\n%s"
                % (kind, len(body), body)
            )


def _run_canned(port: int) -> None:
    _Canned.answers = _canned_responses()

    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(_Canned, "127.0.0.1", port)
        await server.serve_forever()

    asyncio.run(main())


# --- the two measurements ------------------------------------------------------------------


def _sampler(url: str) -> Any:
    service = tinker.ServiceClient(base_url=url, api_key=KEY)
    return service.create_sampling_client(base_model=MODEL).result()


def bench_sample(url: str, canned: str, n: int) -> None:
    direct = tk.connect("mock").create_sampling_client(base_model=MODEL).result()
    clients = [direct, _sampler(url), _sampler(canned)]
    ms = _medians_ms([lambda c=c: c.sample(PROMPT, 1, PARAMS).result() for c in clients], n, 20)
    print(f"sample() round trip, 8-token prompt, max_tokens=4 (median of {n})")
    print(f'  in-process tk.connect("mock")  {ms[0]:6.2f} ms')
    print(f"  served                         {ms[1]:6.2f} ms  {ms[1] / ms[0]:5.1f}x in-process")
    print(f"  SDK floor (canned server)      {ms[2]:6.2f} ms  the SDK's own cost per round trip")


def _datums(batch: int, length: int) -> list[types.Datum]:
    rng = random.Random(0)
    out = []
    for _ in range(batch):
        tokens = [rng.randrange(1, 250) for _ in range(length + 1)]
        out.append(
            types.Datum(
                model_input=types.ModelInput.from_ints(tokens[:-1]),
                loss_fn_inputs={"target_tokens": tokens[1:], "weights": [1.0] * length},
            )
        )
    return out


def bench_forward_backward(url: str, model: str, n: int, batch: int = 8, length: int = 512) -> None:
    data = _datums(batch, length)
    direct = tk.connect("mock").create_lora_training_client(base_model=model, rank=8, seed=0)
    service = tinker.ServiceClient(base_url=url, api_key=KEY)
    served = service.create_lora_training_client(base_model=model, rank=8, seed=0).result()
    clients = [direct.result(), served]
    ms = _medians_ms(
        [lambda c=c: c.forward_backward(data, "cross_entropy").result() for c in clients], n, 2
    )
    tokens = batch * length
    rates = [tokens / (t / 1000) for t in ms]
    print(f"forward_backward, {batch} x {length} tokens, {model} (median of {n})")
    print(f"  in-process {rates[0]:10,.0f} tok/s  ({ms[0]:.1f} ms)")
    print(
        f"  served     {rates[1]:10,.0f} tok/s  ({ms[1]:.1f} ms)  "
        f"{rates[1] / rates[0]:.0%} of in-process"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--samples", type=int, default=300, help="sample() rounds")
    parser.add_argument("--steps", type=int, default=10, help="forward_backward rounds")
    parser.add_argument("--model", default=MODEL, help="base model for forward_backward")
    parser.add_argument("--in-thread", action="store_true", help="tk.serve in this process")
    parser.add_argument("--canned-port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.canned_port:
        _run_canned(args.canned_port)
        return
    home = tempfile.mkdtemp(prefix="tk-serve-bench-")
    os.environ.setdefault("TINKERKIT_HOME", home)
    with (
        _server(args.in_thread, home) as url,
        _child([os.path.abspath(__file__), "--canned-port"], home) as canned,
    ):
        bench_sample(url, canned, args.samples)
        bench_forward_backward(url, args.model, args.steps)


if __name__ == "__main__":
    main()
