"""Datums built from token ids only (no tokenizer download), the server's log, and raw
HTTP with the request numbering in the test's hands, for the served tests."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
import traceback
from typing import Any

import httpx
import numpy as np
from tinker import types


def datum(tokens: list[int]) -> types.Datum:
    """Next-token prediction on ``tokens`` with every position weighted 1."""
    return types.Datum(
        model_input=types.ModelInput.from_ints(tokens[:-1]),
        loss_fn_inputs={
            "target_tokens": tokens[1:],
            "weights": [1.0] * (len(tokens) - 1),
        },
    )


def text_datum(text: str) -> types.Datum:
    # The offline models' byte tokenizer maps bytes to ids directly.
    return datum(list(text.encode()))


PROBE = text_datum("The probe datum, fixed for comparisons.")


def probe_logprobs(client) -> np.ndarray:
    out = client.forward([PROBE], "cross_entropy").result()
    return np.asarray(out.loss_fn_outputs[0]["logprobs"].to_numpy(), dtype=np.float64)


# --- the server's log, and raw HTTP: what the hardening tests check -------------------------

SERVER_LOGGERS = ("tinkerkit.server", "uvicorn", "uvicorn.error", "starlette")


class ServerLog(logging.Handler):
    """Every record of the server's loggers while installed (``with ServerLog() as log``).

    Installed on the loggers themselves, not the root: uvicorn's may not propagate.
    """

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self._levels: dict[str, int] = {}
        self._lock_records = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        with self._lock_records:
            self.records.append(record)

    def __enter__(self) -> ServerLog:
        for name in SERVER_LOGGERS:
            logger = logging.getLogger(name)
            self._levels[name] = logger.level
            logger.addHandler(self)
            logger.setLevel(logging.DEBUG)
        return self

    def __exit__(self, *exc: object) -> None:
        for name, level in self._levels.items():
            logger = logging.getLogger(name)
            logger.removeHandler(self)
            logger.setLevel(level)

    def lines(self) -> list[str]:
        with self._lock_records:
            records = list(self.records)
        return [self.format(r) for r in records]

    def format(self, record: logging.LogRecord) -> str:
        text = record.getMessage()
        if record.exc_info:
            text += "\n" + "".join(traceback.format_exception(*record.exc_info))
        return text

    def tracebacks(self) -> list[str]:
        """Lines that carry a traceback (or say a loop closed under a callback)."""
        with self._lock_records:
            records = list(self.records)
        return [
            self.format(r)
            for r in records
            if r.exc_info
            or "Traceback" in r.getMessage()
            or "Event loop is closed" in r.getMessage()
        ]

    def ran_ahead(self) -> list[str]:
        """The sequencer's warnings that a request waited for one that never came."""
        return [line for line in self.lines() if "ran ahead" in line]

    def wait_for(self, text: str, timeout: float = 30.0, count: int = 1) -> list[str]:
        """The lines containing ``text``, once there are ``count`` of them (the server
        logs from its own thread); fails the test if they do not come."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [line for line in self.lines() if text in line]
            if len(found) >= count:
                return found
            time.sleep(0.01)
        raise AssertionError(f"the server never logged {text!r} x{count}: {self.lines()[-20:]}")

    def assert_clean(self) -> None:
        """No traceback, no request held for a turn that never came, no error logged."""
        assert not self.tracebacks(), self.tracebacks()
        assert not self.ran_ahead(), self.ran_ahead()
        with self._lock_records:
            errors = [self.format(r) for r in self.records if r.levelno >= logging.ERROR]
        assert not errors, errors


def clean_stderr(text: str) -> None:
    """Assert that a process's (or the captured) stderr holds no traceback."""
    assert "Traceback" not in text, text
    assert "Event loop is closed" not in text, text
    assert "Logging error" not in text, text


class Raw:
    """The service's endpoints over plain HTTP, with the request numbering (``seq_id``)
    in the test's hands: what the SDK would never send."""

    def __init__(self, base_url: str, api_key: str) -> None:
        self.base_url = base_url
        self.port = int(base_url.rsplit(":", 1)[1])
        self.api_key = api_key
        self.http = httpx.Client(
            base_url=f"{base_url}/api/v1", headers={"X-API-Key": api_key}, timeout=60
        )

    def close(self) -> None:
        self.http.close()

    def post(self, path: str, body: Any = None, **kwargs: Any) -> httpx.Response:
        """POST ``body`` as JSON (NaN and infinity written as JSON's ``NaN``/``Infinity``,
        which the SDK never sends), or ``content=`` as given."""
        if body is not None:
            kwargs["content"] = json.dumps(body, allow_nan=True).encode()
            kwargs.setdefault("headers", {})["Content-Type"] = "application/json"
        return self.http.post(path, **kwargs)

    def retrieve(self, request_id: str) -> httpx.Response:
        """``retrieve_future`` until it is no longer "try again"."""
        while True:
            answer = self.post("retrieve_future", {"request_id": request_id})
            if answer.status_code != 200 or "protobuf" in answer.headers.get("content-type", ""):
                return answer
            if answer.json().get("type") != "try_again":
                return answer

    def result(self, request_id: str) -> Any:
        """A JSON result, which must have succeeded."""
        answer = self.retrieve(request_id)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert "error" not in body, body
        return body

    def session(self) -> str:
        answer = self.post(
            "create_session", {"tags": [], "user_metadata": None, "sdk_version": "raw"}
        )
        assert answer.status_code == 200, answer.text
        return str(answer.json()["session_id"])

    def create_model(self, session_id: str, model_seq_id: int = 0, seed: int = 0) -> str:
        answer = self.post(
            "create_model",
            {
                "session_id": session_id,
                "model_seq_id": model_seq_id,
                "base_model": "tinkerkit/tiny",
                "lora_config": {"rank": 4, "seed": seed},
            },
        )
        assert answer.status_code == 200, answer.text
        return str(self.result(answer.json()["request_id"])["model_id"])

    def forward_backward(
        self, model_id: str, seq_id: int, data: list[types.Datum]
    ) -> httpx.Response:
        from tinker.proto.request_conv import forward_backward_request_to_proto

        request = types.ForwardBackwardRequest(
            forward_backward_input=types.ForwardBackwardInput(data=data, loss_fn="cross_entropy"),
            model_id=model_id,
            seq_id=seq_id,
        )
        body = forward_backward_request_to_proto(request).SerializeToString()
        return self.http.post(
            "forward_backward",
            content=body,
            headers={"Content-Type": "application/x-protobuf"},
        )

    def loss(self, request_id: str) -> float:
        """The ``loss:sum`` of a finished forward_backward."""
        from tinker.proto.response_conv import deserialize_forward_backward_output

        answer = self.retrieve(request_id)
        assert answer.status_code == 200, answer.text
        assert "protobuf" in answer.headers.get("content-type", ""), answer.text
        return float(deserialize_forward_backward_output(answer.content).metrics["loss:sum"])

    def optim_step(self, model_id: str, seq_id: int, learning_rate: float) -> httpx.Response:
        return self.post(
            "optim_step",
            {
                "model_id": model_id,
                "seq_id": seq_id,
                "optim_params": {"learning_rate": learning_rate},
            },
        )

    def partial(
        self,
        path: str,
        body: bytes,
        sent: int,
        content_type: str = "application/json",
        *,
        settled: bool = False,
    ) -> socket.socket:
        """A connection that sent the headers of ``POST path`` (its ``Content-Length``
        that of ``body``) and the first ``sent`` bytes of ``body``, then stopped.
        ``settled``: the connection first had a health check answered, so the server is
        surely reading it (not still to accept it) when this returns."""
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=30)
        if settled:
            sock.sendall(b"GET /api/v1/healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            answer = b""
            while b'{"status":"ok"}' not in answer:
                chunk = sock.recv(4096)
                assert chunk, answer
                answer += chunk
        head = (
            f"POST /api/v1/{path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Content-Type: {content_type}\r\nX-API-Key: {self.api_key}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        sock.sendall(head + body[:sent])
        return sock
