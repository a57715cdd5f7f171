"""Request limits, served (the official SDK against ``tinkerkit serve``) and in-process.

Each refusal is a ``tinker.BadRequestError`` naming the field, the value and the limit,
raised before any work (one ``num_samples=100_000_000`` request used to build every id
on the event loop and take the server down), and the server answers normally afterwards.
"""

from __future__ import annotations

import json
import re
import socket
import time
from collections.abc import Callable
from typing import Any

import httpx
import numpy as np
import pytest
import tinker
import zstandard
from click.testing import CliRunner
from tinker import types

import tinkerkit as tk
from tests.serve.helpers import ServerLog
from tinkerkit.backends import limits
from tinkerkit.errors import APIKeyRefusedError, RequestLimitError, ServerUnreachableError

MODEL = "tinkerkit/tiny"
PROMPT = types.ModelInput.from_ints([72, 105, 33])


def _params(**kwargs: Any) -> types.SamplingParams:
    return types.SamplingParams(**{"max_tokens": 4, **kwargs})


def _long_datum(length: int) -> types.Datum:
    ones = np.ones(length, dtype=np.int64)
    return types.Datum(
        model_input=types.ModelInput.from_ints(ones.tolist()),
        loss_fn_inputs={"target_tokens": types.TensorData.from_numpy(ones)},
    )


def _short_datums(count: int) -> list[types.Datum]:
    return [_long_datum(2) for _ in range(count)]


@pytest.fixture(params=["served", "mock"])
def clients(request, server):
    """(service, training client, sampling client): official SDK → server, or in-process."""
    if request.param == "served":
        service = tinker.ServiceClient(base_url=server.base_url, api_key=server.api_key)
    else:
        service = tk.connect("mock")
    training = service.create_lora_training_client(base_model=MODEL, rank=4).result()
    sampler = training.save_weights_and_get_sampling_client().result()
    yield service, training, sampler
    if request.param == "served":
        service.close("success").result(timeout=10)


@pytest.fixture(autouse=True)
def server_log():
    """Every test: no traceback in the server's log, and no request held for the turn of
    one that was refused (a refusal still takes its turn, so the next request of the
    model is served at once, not after the sequencer's hold)."""
    with ServerLog() as log:
        yield log
    log.assert_clean()


def _still_answers(training: Any, sampler: Any) -> None:
    out = sampler.sample(PROMPT, 2, _params(temperature=0.0)).result()
    assert [len(s.tokens) for s in out.sequences] == [4, 4]
    fb = training.forward(_short_datums(2), "cross_entropy").result()
    assert len(fb.loss_fn_outputs) == 2


# (request, what the message must name: the field and value, the limit)
SAMPLE_CASES: dict[str, tuple[Callable[[Any], Any], tuple[str, ...]]] = {
    "num_samples huge": (
        lambda s: s.sample(PROMPT, 100_000_000, _params()),
        ("num_samples = 100000000", "1 to 1024", "MAX_NUM_SAMPLES"),
    ),
    "num_samples zero": (lambda s: s.sample(PROMPT, 0, _params()), ("num_samples = 0", "1 to")),
    "max_tokens negative": (
        lambda s: s.sample(PROMPT, 1, _params(max_tokens=-5)),
        ("max_tokens = -5", "at least 1"),
    ),
    "max_tokens zero": (
        lambda s: s.sample(PROMPT, 1, _params(max_tokens=0)),
        ("max_tokens = 0", "at least 1"),
    ),
    "temperature negative": (
        lambda s: s.sample(PROMPT, 1, _params(temperature=-1.0)),
        ("temperature = -1.0", "at least 0"),
    ),
    "top_p over one": (lambda s: s.sample(PROMPT, 1, _params(top_p=1.5)), ("top_p = 1.5",)),
    "sampled tokens": (
        # 1000 samples × the rest of the 2048-token context: 2,045,000 tokens.
        lambda s: s.sample(PROMPT, 1000, types.SamplingParams()),
        ("1000 × None", "2045000", "1,048,576", "MAX_SAMPLED_TOKENS_PER_REQUEST"),
    ),
}


def test_sample_over_a_limit_is_a_bad_request_naming_it(clients):
    _, training, sampler = clients
    for case, (request, words) in SAMPLE_CASES.items():
        future = request(sampler)  # refused at result(), as the service's 400 is
        with pytest.raises(tinker.BadRequestError) as info:
            future.result()
        assert info.value.status_code == 400, case
        for word in words:
            assert word in str(info.value), (case, word, str(info.value))
        _still_answers(training, sampler)


def test_non_finite_temperature_is_a_value_error_on_every_backend(clients):
    # The SDK cannot even send NaN (its JSON encoder refuses it: ValueError); in-process
    # the refusal is a ValueError too, naming the field.
    _, training, sampler = clients
    for value in (float("nan"), float("inf")):
        with pytest.raises(ValueError) as info:
            sampler.sample(PROMPT, 1, _params(temperature=value)).result()
        if isinstance(info.value, RequestLimitError):
            assert f"temperature = {value}" in str(info.value)
    _still_answers(training, sampler)


def test_lora_rank_out_of_range_is_refused_before_allocating(clients):
    service, training, sampler = clients
    for rank in (10**8, 0, limits.MAX_LORA_RANK + 1):
        start = time.monotonic()
        with pytest.raises(tinker.BadRequestError) as info:
            service.create_lora_training_client(base_model=MODEL, rank=rank).result()
        assert time.monotonic() - start < 5  # no 10**8-rank matrices were built first
        assert f"rank = {rank}" in str(info.value)
        assert "1 to 1024 (MAX_LORA_RANK)" in str(info.value)
    _still_answers(training, sampler)


def test_largest_rank_is_accepted_in_process():
    service = tk.connect("mock")
    training = service.create_lora_training_client(
        base_model=MODEL, rank=limits.MAX_LORA_RANK
    ).result()
    assert training.get_info().lora_rank == limits.MAX_LORA_RANK


def test_tokens_per_forward_backward_over_the_limit(clients):
    _, training, sampler = clients
    with pytest.raises(tinker.BadRequestError) as info:
        training.forward_backward([_long_datum(300_000)], "cross_entropy").result()
    message = str(info.value)
    assert "tokens in the batch = 300000" in message
    assert "262,144 tokens (MAX_TOKENS_PER_REQUEST)" in message
    _still_answers(training, sampler)


def test_datums_per_forward_backward_over_the_limit(clients, monkeypatch):
    # The SDK sends at most 1024 datums a request; with the limit lowered to 4, five are
    # refused by the server (served) and by the offline client (in-process).
    _, training, sampler = clients
    monkeypatch.setattr(limits, "MAX_DATUMS_PER_REQUEST", 4)
    with pytest.raises(tinker.BadRequestError) as info:
        training.forward_backward(_short_datums(5), "cross_entropy").result()
    assert "len(data) = 5" in str(info.value)
    assert "at most 4 datums (MAX_DATUMS_PER_REQUEST)" in str(info.value)
    monkeypatch.undo()
    _still_answers(training, sampler)


# --- raw HTTP: bodies the SDK never sends ------------------------------------------------


def _post(server, path: str, **kwargs: Any) -> httpx.Response:
    headers = {"X-API-Key": server.api_key, **kwargs.pop("headers", {})}
    return httpx.post(f"{server.base_url}/api/v1/{path}", headers=headers, timeout=30, **kwargs)


def _healthy(server) -> None:
    assert httpx.get(f"{server.base_url}/api/v1/healthz", timeout=10).json() == {"status": "ok"}


def test_body_declared_over_the_limit_is_refused_unread(server):
    # Content-Length alone says 100 MB: answered before a byte of the body is sent.
    with socket.create_connection(("127.0.0.1", int(server.base_url.rsplit(":", 1)[1]))) as s:
        s.sendall(
            b"POST /api/v1/asample HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"X-API-Key: {server.api_key}\r\n".encode()
            + b"Content-Length: 100000000\r\n\r\n"
        )
        s.settimeout(10)
        answer = s.recv(65536).decode()
    assert answer.startswith("HTTP/1.1 400")
    detail = json.loads(answer.split("\r\n\r\n", 1)[1])["detail"]
    assert detail.startswith("request body = 100,000,000 bytes is out of range")
    assert "67,108,864 bytes (MAX_REQUEST_BYTES)" in detail
    _healthy(server)


def test_streamed_body_over_the_limit_is_refused(server, monkeypatch):
    monkeypatch.setattr(limits, "MAX_REQUEST_BYTES", 1000)
    chunks = (b" " * 600 for _ in range(3))  # no Content-Length: counted as it arrives
    answer = _post(server, "asample", content=chunks)
    assert answer.status_code == 400
    # Counted as it arrives: the transport may coalesce the chunks.
    assert re.match(r"request body = 1,[28]00 bytes is out of range", answer.json()["detail"])
    assert "at most 1,000 bytes (MAX_REQUEST_BYTES)" in answer.json()["detail"]
    monkeypatch.undo()
    _healthy(server)


def test_zstd_bomb_is_refused_once_decompressed_past_the_limit(server, monkeypatch):
    monkeypatch.setattr(limits, "MAX_REQUEST_BYTES", 4 * 1024 * 1024)
    bomb = zstandard.ZstdCompressor().compress(b"\0" * (64 * 1024 * 1024))
    assert len(bomb) < 10_000
    answer = _post(
        server,
        "forward_backward",
        content=bomb,
        headers={"Content-Type": "application/x-protobuf", "Content-Encoding": "zstd"},
    )
    assert answer.status_code == 400
    detail = answer.json()["detail"]
    assert detail.startswith("decompressed request body = ")
    assert "(MAX_REQUEST_BYTES)" in detail
    monkeypatch.undo()
    _healthy(server)


@pytest.mark.parametrize(
    ("path", "what"),
    [
        ("asample", "SampleRequest body"),
        ("cancel_future", "JSON body"),
        ("weights_info", "JSON body"),
    ],
)
def test_deeply_nested_json_is_a_bad_request(server, path, what):
    # A 500 (RecursionError) would be retried by the SDK for minutes.
    answer = _post(server, path, content=b"[" * 200_000)
    assert answer.status_code == 400
    assert answer.json()["detail"] == f"invalid {what}: JSON nested too deeply"
    _healthy(server)


# --- connecting: a dead URL, a wrong key --------------------------------------------------


def _dead_url() -> tuple[str, socket.socket]:
    # Bound, never listening: connections to it are refused at once.
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    return f"http://127.0.0.1:{sock.getsockname()[1]}", sock


def test_connect_to_a_dead_base_url_fails_fast_naming_it():
    url, sock = _dead_url()
    with sock:
        start = time.monotonic()
        with pytest.raises(ServerUnreachableError) as info:
            tk.connect("tinker", base_url=url, api_key="tml-some-key-1234")
    assert time.monotonic() - start < 5
    assert str(info.value).startswith(f"No Tinker server answers at {url} (")
    assert "\n" not in str(info.value)


def test_connect_with_a_wrong_key_says_so(server, monkeypatch):
    monkeypatch.setenv("TINKER_BASE_URL", server.base_url)
    with pytest.raises(APIKeyRefusedError) as info:
        tk.connect("tinker", api_key="tml-wrong-key-1234")
    assert str(info.value).startswith(f"The server at {server.base_url} refused the API key")
    service = tk.connect("tinker", api_key=server.api_key)
    assert isinstance(service, tinker.ServiceClient)


def test_sdk_with_a_wrong_key_gets_one_line_saying_which_key(server):
    service = tinker.ServiceClient(base_url=server.base_url, api_key="tml-wrong-key-1234")
    with pytest.raises(tinker.AuthenticationError) as info:
        service.create_lora_training_client(base_model=MODEL)
    assert "\n" not in str(info.value)
    assert "set TINKER_API_KEY (or api_key=...) to the key `tinkerkit serve` printed" in str(
        info.value
    )


def test_cli_with_a_wrong_key_or_a_dead_url_is_one_line(server, monkeypatch):
    from tinkerkit.cli import main

    url, sock = _dead_url()
    with sock:
        for base_url, key, expected in [
            (server.base_url, "tml-wrong-key-1234", "refused the API key (HTTP 401)"),
            (url, server.api_key, f"No Tinker server answers at {url}"),
        ]:
            monkeypatch.setenv("TINKER_BASE_URL", base_url)
            monkeypatch.setenv("TINKER_API_KEY", key)
            result = CliRunner().invoke(main, ["sample", "--backend", "tinker", "--prompt", "hi"])
            assert result.exit_code == 1
            lines = result.output.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("error: "), result.output
            assert expected in lines[0]


# --- tinkerkit serve: the port -------------------------------------------------------------


def test_serve_on_a_taken_port_is_one_line_and_prints_no_key():
    from tinkerkit.cli import main

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(main, ["serve", "--port", str(port)])
    assert result.exit_code == 1
    assert result.output == (
        f"error: tinkerkit serve cannot listen on 127.0.0.1:{port} (Address already in use). "
        "Stop whatever holds the port, or pick another with --port (0 picks a free one).\n"
    )
