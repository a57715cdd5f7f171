"""The server under abuse: each case answered cleanly, nothing else disturbed.

For every case: a 4xx/5xx in the service's error shape (``{"detail": ...}``), no
traceback in the server's log (``tinkerkit.server``, ``uvicorn``) or on stderr, the
model's next request served at once (no request held for the turn of one that was
refused: the sequencer's "ran ahead" warning is never logged), and nothing lost
(results submitted before the case are still retrievable). Requests are sent raw
(``helpers.Raw``), with the request numbering (``seq_id``) in the test's hands.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
import tracemalloc
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path

import httpx
import pytest
import tinker
from click.testing import CliRunner
from tinker import types

import tinkerkit as tk
from tests.serve.helpers import Raw, ServerLog, clean_stderr, text_datum
from tinkerkit.errors import HomeNotWritableError
from tinkerkit.paths import tinkerkit_home
from tinkerkit.server import serve
from tinkerkit.server.responses import MAX_JSON_DEPTH, json_depth
from tinkerkit.server.state import FutureTable, done, failed

DATA = [text_datum("The quick brown fox."), text_datum("Jumps over the lazy dog.")]
MODEL = "tinkerkit/tiny"


@pytest.fixture
def log(capfd) -> Iterator[ServerLog]:
    """The server's log during the test; clean at its end, and so is stderr."""
    with ServerLog() as captured:
        yield captured
    captured.assert_clean()
    clean_stderr(capfd.readouterr().err)


@pytest.fixture
def raw(server) -> Iterator[Raw]:
    client = Raw(server.base_url, server.api_key)
    yield client
    client.close()


def _service(server):
    (service,) = server.app.state.host.services()
    return service


def _model(raw: Raw) -> str:
    return raw.create_model(raw.session())


def _detail(answer: httpx.Response, status: int) -> str:
    """The ``detail`` of an error answer in the service's shape, with its status."""
    assert answer.status_code == status, (answer.status_code, answer.text)
    assert answer.headers["content-type"] == "application/json"
    body = answer.json()
    assert list(body) == ["detail"] and isinstance(body["detail"], str), body
    return str(body["detail"])


def _still_trains(raw: Raw, model_id: str, seq_id: int) -> float:
    """forward_backward + optim_step + forward_backward from ``seq_id`` on: all served (the
    ``log`` fixture checks none waited), the last loss; ``seq_id + 3`` is next."""
    first = raw.forward_backward(model_id, seq_id, DATA)
    assert first.status_code == 200, first.text
    step = raw.optim_step(model_id, seq_id + 1, 1e-2)
    assert step.status_code == 200, step.text
    last = raw.forward_backward(model_id, seq_id + 2, DATA)
    assert last.status_code == 200, last.text
    loss = raw.loss(last.json()["request_id"])
    assert raw.loss(first.json()["request_id"]) > loss  # the step applied, in order
    raw.result(step.json()["request_id"])
    return loss


# --- the checks themselves can fail -------------------------------------------------------


def test_a_gap_in_the_numbering_is_what_the_log_shows(raw):
    # The positive control of every "not delayed" check below: a request whose turn
    # never comes holds the next one, and the sequencer says so.
    with ServerLog() as captured:
        model_id = _model(raw)
        answer = raw.forward_backward(model_id, 2, DATA)  # seq_id 1 never sent
        assert answer.status_code == 200
        raw.loss(answer.json()["request_id"])
    assert captured.ran_ahead() == ["seq_id 2 ran ahead of 1; applying it anyway"]


def test_a_crash_is_what_the_log_shows(raw, monkeypatch):
    # The positive control of every "no traceback" check: a bug in the server is a 500
    # in the service's shape, and its traceback is in the captured log.
    from tinkerkit.server.service import Service

    def boom(self):
        raise RuntimeError("a bug")

    monkeypatch.setattr(Service, "capabilities", boom)
    with ServerLog() as captured:
        answer = raw.http.get("get_server_capabilities")
        assert _detail(answer, 500) == "RuntimeError: a bug"
        captured.wait_for("Exception in ASGI application")
    assert any("RuntimeError: a bug" in t for t in captured.tracebacks())


# --- 1. a client that goes away -----------------------------------------------------------


def _bodies(model_id: str, session_id: str, pending: str) -> dict[str, tuple[bytes, str]]:
    from tinker.proto.request_conv import forward_backward_request_to_proto

    fb = types.ForwardBackwardRequest(
        forward_backward_input=types.ForwardBackwardInput(data=DATA, loss_fn="cross_entropy"),
        model_id=model_id,
        seq_id=2,
    )
    as_json = {
        "create_model": {"session_id": session_id, "model_seq_id": 7, "base_model": MODEL},
        "optim_step": {"model_id": model_id, "seq_id": 2, "optim_params": {"learning_rate": 0.1}},
        "save_weights": {"model_id": model_id, "seq_id": 2, "path": "never"},
        "retrieve_future": {"request_id": pending},
        f"sessions/{session_id}/finish": {"reason": {"type": "success"}},
    }
    bodies = {path: (json.dumps(b).encode(), "application/json") for path, b in as_json.items()}
    proto = forward_backward_request_to_proto(fb).SerializeToString()
    bodies["forward_backward"] = (proto, "application/x-protobuf")
    return bodies


def test_a_client_that_disconnects_mid_body_costs_nothing(raw, log):
    session_id = raw.session()
    model_id = raw.create_model(session_id)
    before = raw.forward_backward(model_id, 1, DATA)  # submitted before, retrieved after
    pending = before.json()["request_id"]
    for path, (body, content_type) in _bodies(model_id, session_id, pending).items():
        for count, sent in enumerate((0, len(body) // 2), start=1):
            raw.partial(path, body, sent, content_type).close()
            log.wait_for(f"client disconnected during POST /api/v1/{path}", count=count)
    assert math.isfinite(raw.loss(pending))
    # The half-sent requests took no turn and did nothing: seq_id 2 is still free.
    _still_trains(raw, model_id, 2)
    assert not Path(tinkerkit_home(), "runs", model_id, "weights", "never").exists()


@pytest.fixture
def slow_server() -> Iterator[tuple[object, Raw]]:
    """A server of its own (it is stopped mid-request by one test)."""
    with serve("mock") as running:
        client = Raw(running.base_url, running.api_key)
        yield running, client
        client.close()


def _slow_model(server, raw: Raw, latency: float) -> str:
    """A model whose results are held ``latency`` seconds (its requests stay pending)."""
    model_id = _model(raw)
    _service(server).models[model_id].model.worker.latency = latency
    return model_id


def test_a_client_that_disconnects_while_its_result_is_pending_loses_nothing(slow_server, log):
    server, raw = slow_server
    model_id = _slow_model(server, raw, 0.5)
    request_id = raw.forward_backward(model_id, 1, DATA).json()["request_id"]
    body = json.dumps({"request_id": request_id}).encode()
    raw.partial("retrieve_future", body, len(body)).close()  # whole request, then gone
    # The server answered the closed connection once the result was ready...
    log.wait_for("POST /api/v1/retrieve_future 200")
    # ...and the client's retry (the SDK retries a lost connection) still gets it.
    assert math.isfinite(raw.loss(request_id))
    _still_trains(raw, model_id, 2)


def test_a_server_stopped_during_a_long_poll_exits_cleanly(log):
    with serve("mock") as running:
        raw = Raw(running.base_url, running.api_key)
        model_id = _slow_model(running, raw, 1.0)
        request_id = raw.forward_backward(model_id, 1, DATA).json()["request_id"]
        entry = _service(running).futures.get(request_id)
        body = json.dumps({"request_id": request_id}).encode()
        polling = raw.partial("retrieve_future", body, len(body))  # held by the long poll
        raw.close()
    # The server is gone; the engine settles the result after its loop closed (this
    # printed "Event loop is closed" once per pending request).
    assert math.isfinite(entry.future.result(timeout=30).metrics["loss:sum"])
    polling.close()


SIGTERM_CHILD = r"""
import os, socket, time
# Plain sockets (importing the SDK takes seconds): a request whose body stops halfway.
port = int(os.environ["TINKER_BASE_URL"].rsplit(":", 1)[1])
body = b'{"session_id": "s", "model_seq_id": 0, "base_model": "tinkerkit/tiny"}'
sock = socket.create_connection(("127.0.0.1", port))
sock.sendall(
    b"POST /api/v1/create_model HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    + b"X-API-Key: " + os.environ["TINKER_API_KEY"].encode() + b"\r\n"
    + b"Content-Length: %d\r\n\r\n" % len(body) + body[:20]
)
print("in the middle of a request", flush=True)
time.sleep(120)
"""


def test_tinkerkit_run_stopped_by_sigterm_mid_request_prints_no_traceback(tmp_path):
    env = {**os.environ, "TINKER_TELEMETRY": "0", "HF_HUB_OFFLINE": "1"}
    cli = [sys.executable, "-c", "from tinkerkit.cli import main; main()", "run"]
    child = tmp_path / "child.py"
    child.write_text(SIGTERM_CHILD)
    proc = subprocess.Popen(
        [*cli, "--hub-overlay", "off", "--", sys.executable, str(child)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.strip() == "in the middle of a request", line
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 128 + signal.SIGTERM, stderr
    clean_stderr(stderr)
    # Only tinkerkit run's own line: nothing from the server.
    assert [line for line in stderr.splitlines() if line.strip()] == [
        line for line in stderr.splitlines() if line.startswith("tinkerkit run: ")
    ], stderr


EXIT_WITH_A_PENDING_REQUEST = r"""
import time
import tinkerkit as tk
from tinker import types

from tinkerkit.server import inprocess

service = tk.connect("mock")
training = service.create_lora_training_client(base_model="tinkerkit/tiny", rank=4).result()
# Its results held 5 s: longer than the server's shutdown waits for a request.
inprocess.services()[-1].models[training.model_id].model.worker.latency = 5.0
datum = types.Datum(
    model_input=types.ModelInput.from_ints([1, 2, 3]),
    loss_fn_inputs={"target_tokens": [2, 3, 4]},
)
training.forward_backward([datum], "cross_entropy")  # the SDK long-polls its result
time.sleep(0.2)
print("exiting with a request pending", flush=True)
"""


def test_a_program_that_exits_with_a_request_pending_prints_no_traceback(tmp_path):
    # tk.connect's own server stops at interpreter exit: a long poll still pending then
    # must be answered, not cancelled (a traceback in the user's output).
    script = tmp_path / "exits.py"
    script.write_text(EXIT_WITH_A_PENDING_REQUEST)
    done = subprocess.run(
        [sys.executable, str(script)],
        env={**os.environ, "TINKER_TELEMETRY": "0", "TINKERKIT_HOME": str(tmp_path / "home")},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "exiting with a request pending"
    clean_stderr(done.stderr)
    assert "Exception in ASGI application" not in done.stderr, done.stderr


# --- 2. a 200,000-deep JSON body ------------------------------------------------------------

DEEP = b"[" * 200_000


@pytest.mark.parametrize(
    ("path", "what"),
    [
        ("create_model", "JSON body"),
        ("load_weights", "LoadWeightsRequest body"),
        ("create_sampling_session", "CreateSamplingSessionRequest body"),
        ("save_weights_for_sampler", "SaveWeightsForSamplerRequest body"),
        ("optim_step", "OptimStepRequest body"),
        ("save_weights", "SaveWeightsRequest body"),
        ("create_session", "CreateSessionRequest body"),
        ("retrieve_future", "FutureRetrieveRequest body"),
    ],
)
def test_a_deeply_nested_body_is_a_bad_request(raw, log, path, what):
    for body in (DEEP, b'{"a":' * 200_000):
        detail = _detail(raw.post(path, content=body), 400)
        assert detail == f"invalid {what}: JSON nested too deeply"


def test_nesting_the_parser_takes_but_nothing_else_would_is_a_bad_request(raw, log):
    # 900 levels parse, then fail every step that walks them (pydantic, the run
    # record's JSON): refused over MAX_JSON_DEPTH instead. A shallow one is served.
    session_id = raw.session()
    for depth in (10, 100, 900, 990):
        nested = '{"a": ' * depth + '"x"' + "}" * depth
        head = json.dumps({"session_id": session_id, "model_seq_id": depth, "base_model": MODEL})
        body = head[:-1] + ', "user_metadata": {"deep": ' + nested + "}}"
        answer = raw.post("create_model", content=body.encode())
        if depth + 2 <= MAX_JSON_DEPTH:
            assert answer.status_code == 200, answer.text
            assert raw.result(answer.json()["request_id"])["model_id"]
        else:
            assert _detail(answer, 400) == "invalid JSON body: JSON nested too deeply"


def test_brackets_inside_strings_are_not_nesting(raw, log):
    note = '[{"x": "\\"' * 500  # brackets, quotes and escapes, all inside one string
    answer = raw.post(
        "create_session", {"tags": [note], "user_metadata": {"note": note}, "sdk_version": "x"}
    )
    assert answer.status_code == 200, answer.text
    assert json_depth(json.dumps({"a": [note, {"b": [1, [2]]}]}).encode()) == 5


# --- 3. NaN and infinite learning rates -----------------------------------------------------


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_a_non_finite_learning_rate_is_refused_and_poisons_nothing(raw, log, value):
    model_id = _model(raw)
    first = raw.forward_backward(model_id, 1, DATA)
    detail = _detail(raw.optim_step(model_id, 2, value), 400)
    assert detail == f"learning_rate must be a finite number, got {value!r}"
    # Raw JSON NaN/Infinity, as written by json.dumps: refused the same way.
    token = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}[repr(value)]
    text = (
        f'{{"model_id": "{model_id}", "seq_id": 3, "optim_params": {{"learning_rate": {token}}}}}'
    )
    answer = raw.post("optim_step", content=text.encode())
    assert _detail(answer, 400) == detail
    assert math.isfinite(raw.loss(first.json()["request_id"]))
    loss = _still_trains(raw, model_id, 4)  # next request at once, weights intact
    assert math.isfinite(loss)


def test_the_sdk_sends_a_nan_learning_rate_and_the_service_refuses_it(log):
    # In-process (tk.connect) and served are one path now: the SDK does not refuse a NaN
    # itself, it sends it as null (pydantic's JSON mode), and the service answers 400.
    service = tk.connect("mock")
    training = service.create_lora_training_client(base_model=MODEL, rank=4).result()
    training.forward_backward(DATA, "cross_entropy").result()
    for value in (float("nan"), float("inf")):
        future = training.optim_step(types.AdamParams(learning_rate=value))  # sent
        with pytest.raises(tinker.BadRequestError) as info:
            future.result()
        assert info.value.status_code == 400
        assert "learning_rate: Input should be a valid number, got null (a NaN or infinite " in (
            str(info.value)
        )
        assert "pass a finite number" in str(info.value)
    assert (
        len([line for line in log.lines() if line.startswith("POST /api/v1/optim_step 400")]) == 2
    )
    training.optim_step(types.AdamParams(learning_rate=1e-2)).result()
    loss = training.forward_backward(DATA, "cross_entropy").result().metrics["loss:sum"]
    assert math.isfinite(loss)


def test_a_non_finite_learning_rate_never_reaches_the_weights_in_the_model_itself():
    # Below the routes: Model.optim_step refuses it too (a client of the Service).
    from tinkerkit.backends.registry import engine_factory
    from tinkerkit.server.service import Service

    service = Service(engine_factory("mock"))
    try:
        from tinkerkit.backends.engine import LoraConfig

        model = service.create_model(MODEL, LoraConfig(rank=4), None, None, session_id=None)
        step = model.result(timeout=30).optim_step(types.AdamParams(learning_rate=math.nan))
        with pytest.raises(tk.errors.RequestError, match="learning_rate must be a finite number"):
            step.result(timeout=30)
    finally:
        service.close()


# --- 4. a refusal before the turn does not stall the next request ---------------------------


def _refusals(model_id: str) -> dict[str, tuple[str, dict[str, object], int]]:
    """Requests refused before any work, each carrying seq_id 1 of ``model_id``."""
    base = {"model_id": model_id, "seq_id": 1}
    return {
        "optim_step without params": ("optim_step", base, 400),
        "optim_step with a string rate": (
            "optim_step",
            {**base, "optim_params": {"learning_rate": "fast"}},
            400,
        ),
        "optim_step nan": (
            "optim_step",
            {**base, "optim_params": {"learning_rate": math.nan}},
            400,
        ),
        "save_weights, bad ttl type": ("save_weights", {**base, "ttl_seconds": "soon"}, 400),
        "sampler weights, bad kind": ("save_weights_for_sampler", {**base, "kind": "bogus"}, 400),
        "load_weights, missing checkpoint": (
            "load_weights",
            {**base, "path": "tinker://nope/weights/missing", "optimizer": False},
            404,
        ),
        "load_weights, no path": ("load_weights", {**base, "optimizer": False}, 400),
    }


@pytest.mark.parametrize(
    "case", list(_refusals("m")), ids=lambda c: c.replace(" ", "-").replace(",", "")
)
def test_a_refused_request_still_takes_its_turn(raw, log, case):
    model_id = _model(raw)
    path, body, status = _refusals(model_id)[case]
    _detail(raw.post(path, body), status)
    _still_trains(raw, model_id, 2)


def test_a_forward_backward_over_a_limit_still_takes_its_turn(raw, log, monkeypatch):
    from tinkerkit.backends import limits

    model_id = _model(raw)
    monkeypatch.setattr(limits, "MAX_DATUMS_PER_REQUEST", 1)
    detail = _detail(raw.forward_backward(model_id, 1, DATA), 400)
    assert "len(data) = 2" in detail
    monkeypatch.undo()
    _still_trains(raw, model_id, 2)


# --- 5. session ids that are not ids --------------------------------------------------------

BAD_SESSION_IDS = {
    "nul": ("%00", 400),
    "inner-nul": ("a%00b", 400),
    "5000-characters": ("x" * 5000, 400),
    "dot-dot": ("%2E%2E", 400),
    "newline": ("%0A", 400),
    # Decoded, a slash: no route takes it (the router matches the decoded path).
    "slashes": ("..%2F..%2Fetc", 404),
}


@pytest.mark.parametrize("case", list(BAD_SESSION_IDS))
def test_a_session_id_that_is_no_id_is_a_bad_request(raw, log, case):
    session_id, status = BAD_SESSION_IDS[case]
    answer = raw.post(f"sessions/{session_id}/finish", {"reason": {"type": "success"}})
    detail = _detail(answer, status)
    assert "invalid session id" in detail if status == 400 else "is not supported" in detail
    for method, path in [
        ("GET", f"sessions/{session_id}"),
        ("PUT", f"sessions/{session_id}/project"),
        ("GET", f"sessions/{session_id}/trace_export"),
    ]:
        answer = raw.http.request(method, path, json={"project_id": "p"})
        assert answer.status_code in (400, 404), (method, answer.status_code, answer.text)
        _detail(answer, answer.status_code)
    _still_trains(raw, _model(raw), 1)


# --- 6. the request log cannot be forged ----------------------------------------------------


def test_a_path_cannot_forge_a_log_line(server, log):
    forged = f"{server.base_url}/api/v1/healthz%0APOST%20/api/v1/forged%20200"
    nul = f"{server.base_url}/api/v1/healthz%00%0D%1B[31m"
    for url in (forged, nul):
        answer = httpx.get(url)  # no key
        assert answer.status_code == 401
        assert "Invalid or missing API key" in _detail(answer, 401)
    lines = log.lines()
    assert "GET /api/v1/healthz%0APOST%20/api/v1/forged%20200 401" in "\n".join(lines)
    assert "GET /api/v1/healthz%00%0D%1B[31m 401" in "\n".join(lines)
    for line in lines:
        assert not any(c in line for c in "\n\r\x00\x1b"), repr(line)
        assert not line.startswith("POST /api/v1/forged")


def test_an_unknown_path_is_named_quoted_in_its_answer(raw, log):
    # A decoded newline is matched by no route, not even the catch-all: answered alike.
    for path in ("nope%00", "nope%0Aforged%00"):
        detail = _detail(raw.post(path, {}), 404)
        assert detail.startswith("POST '/api/v1/nope") and "is not supported" in detail
        assert not any(c in detail for c in "\n\r\x00"), detail
    answer = raw.http.request("OPTIONS", "optim_step")  # a method no route has
    assert "Method Not Allowed" in _detail(answer, 405)


# --- 7. a TINKERKIT_HOME that cannot be written ---------------------------------------------


@pytest.fixture
def unwritable_home(tmp_path, monkeypatch) -> Path:
    # Under a regular file: unwritable even for root (who ignores permissions).
    (tmp_path / "file").write_text("")
    home = tmp_path / "file" / "sub"
    monkeypatch.setenv("TINKERKIT_HOME", str(home))
    return home


def test_serve_refuses_an_unwritable_home_in_one_line(unwritable_home):
    from tinkerkit.cli import main

    result = CliRunner().invoke(main, ["serve", "--port", "0"])
    assert result.exit_code == 1
    assert result.output.count("\n") == 1, result.output
    assert result.output.startswith(
        f"error: TINKERKIT_HOME {str(unwritable_home)!r} is not writable"
    )
    assert "Point TINKERKIT_HOME at a writable folder." in result.output
    assert "API key" not in result.output  # refused before any key was made


def test_run_refuses_an_unwritable_home_in_one_line(unwritable_home):
    from tinkerkit.cli import main

    result = CliRunner().invoke(main, ["run", "--hub-overlay", "off", "--", "true"])
    assert result.exit_code == 1
    assert result.output.count("\n") == 1, result.output
    assert result.output.startswith(
        f"error: TINKERKIT_HOME {str(unwritable_home)!r} is not writable"
    )


def test_connect_refuses_an_unwritable_home_naming_it(unwritable_home):
    with pytest.raises(HomeNotWritableError) as info:
        tk.connect("mock")
    assert str(unwritable_home) in str(info.value)
    assert "Point TINKERKIT_HOME at a writable folder" in str(info.value)


# --- 8. results nobody retrieves ------------------------------------------------------------


def test_unretrieved_results_are_dropped_after_their_ttl_memory_flat():
    table = FutureTable(ttl_s=0.0)
    payload = b"x" * 10_000  # a result worth measuring: 3,000 of them kept would be 30 MB
    tracemalloc.start()
    try:
        for _ in range(500):
            table.add(done(bytes(payload)), "sample")
        settled, _ = tracemalloc.get_traced_memory()
        for _ in range(2500):
            table.add(done(bytes(payload)), "sample")
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(table) <= 1
    assert after - settled < 500_000, after - settled


def test_a_result_is_kept_until_its_ttl_then_dropped_and_a_failure_said():
    warned: list[str] = []
    table = FutureTable(ttl_s=600.0, on_unretrieved_failure=lambda e, exc: warned.append(str(exc)))
    pending: Future[int] = Future()
    kept = table.add(done(1), "optim_step")
    lost = table.add(failed(ValueError("bad datum")), "forward_backward")
    running = table.add(pending, "sample")
    table._last_sweep = 0.0
    table.add(done(2), "sample")  # a sweep: nothing is past its time
    assert table.get(kept.request_id) is kept and not warned
    table.ttl_s = 0.0
    table.add(done(3), "sample")
    assert table.get(kept.request_id) is None and table.get(lost.request_id) is None
    assert table.get(running.request_id) is running  # not finished: never dropped
    assert warned == ["bad datum"]


def test_a_delivered_result_is_retrievable_again_for_a_while_then_dropped():
    table = FutureTable(ttl_s=600.0, keep_delivered_s=600.0)
    entry = table.add(done(1), "optim_step")
    table.forget(entry.request_id)
    table._last_sweep = 0.0
    table.add(done(2), "sample")
    assert table.get(entry.request_id) is entry  # a retried retrieve_future still gets it
    table.keep_delivered_s = 0.0
    table.add(done(3), "sample")
    assert table.get(entry.request_id) is None


def test_the_service_drops_samples_nobody_retrieves(server, raw, log):
    futures = _service(server).futures
    saved = futures.ttl_s, futures.keep_delivered_s
    training = tinker.ServiceClient(base_url=server.base_url, api_key=server.api_key)
    try:
        client = training.create_lora_training_client(base_model=MODEL, rank=4).result()
        sampler = client.save_weights_and_get_sampling_client().result()
        session_id = sampler._sampling_session_id  # the SDK's; no public accessor
        futures.ttl_s = 0.0
        first = None
        for _ in range(200):
            answer = raw.post(
                "asample",
                {
                    "sampling_session_id": session_id,
                    "prompt": types.ModelInput.from_ints([1, 2, 3]).model_dump(mode="json"),
                    "sampling_params": {"max_tokens": 2, "seed": 0},
                    "num_samples": 4,
                },
            )
            assert answer.status_code == 200, answer.text
            first = first or answer.json()["request_id"]
        for entry in list(futures._pending.values()):
            entry.future.result(timeout=60)  # every sample ran; nobody asked for one
        raw.post("create_session", {"tags": [], "user_metadata": None, "sdk_version": "x"})
        client.forward([DATA[0]], "cross_entropy").result()  # a request of a table: a sweep
        assert len(futures) <= 2  # of 200 samples none is kept (but the forward's own)
        detail = _detail(raw.post("retrieve_future", {"request_id": first}), 404)
        assert detail == f"Unknown request_id {first!r} (already retrieved?)"
    finally:
        futures.ttl_s, futures.keep_delivered_s = saved
        training.close("success").result(timeout=10)


# --- 9. tinkerkit serve's command line ------------------------------------------------------


def _never_serve(*args: object, **kwargs: object) -> None:
    raise AssertionError("tinkerkit serve started serving: it should have refused")


@pytest.fixture(autouse=True)
def _no_foreground_server(monkeypatch):
    # A CLI test that wrongly starts `tinkerkit serve` in this process fails, not hangs.
    from tinkerkit.server import runner

    monkeypatch.setattr(runner, "run_forever", _never_serve)


def _serve(*args: str, env: dict[str, str] | None = None):
    from tinkerkit.cli import main

    return CliRunner().invoke(main, ["serve", *args], env=env)


def test_an_api_key_on_the_command_line_is_refused_without_echoing_it():
    key = "tml-command-line-secret-123"
    result = _serve("--api-key", key, "--port", "0")
    assert result.exit_code == 2
    assert result.output.count("\n") == 1, result.output
    assert key not in result.output
    assert "--api-key shows the key to every user of this machine (ps)" in result.output
    assert "TINKERKIT_SERVE_API_KEY" in result.output and "--api-key-file" in result.output


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--port", "-1"], ["--port", "-1"]),
        (["--port", "70000"], ["--port", "70000"]),
        (["--latency", "nan"], ["--latency", "nan"]),
        (["--latency", "inf"], ["--latency", "inf"]),
        (["--latency", "-1"], ["--latency", "-1"]),
    ],
    ids=["port-negative", "port-too-big", "latency-nan", "latency-inf", "latency-negative"],
)
def test_serve_refuses_bad_numbers_in_one_line(args, words):
    result = _serve(*args)
    assert result.exit_code == 2, result.output
    assert result.output.count("\n") == 1 and result.output.startswith("error: "), result.output
    for word in words:
        assert word in result.output, result.output


@pytest.mark.parametrize(
    ("content", "expected"),
    [("", "is empty"), ("not-a-tml-key", "must start with 'tml-'")],
    ids=["empty", "bad-prefix"],
)
def test_a_bad_api_key_file_is_refused_in_one_line(tmp_path, content, expected):
    key_file = tmp_path / "key"
    key_file.write_text(content)
    result = _serve("--api-key-file", str(key_file), "--port", "0")
    assert result.exit_code == 2, result.output
    assert result.output.count("\n") == 1 and expected in result.output, result.output
    missing = _serve("--api-key-file", str(tmp_path / "missing"), "--port", "0")
    assert missing.exit_code == 2 and str(tmp_path / "missing") in missing.output


def _start_serve(args: list[str], env: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
    cli = [sys.executable, "-c", "from tinkerkit.cli import main; main()", "serve"]
    proc = subprocess.Popen(
        [*cli, "--port", "0", "--quiet", *args],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    first = proc.stdout.readline()
    assert first.startswith("tinkerkit serve: mock backend on http://127.0.0.1:"), first
    return proc, first.split(" on ", 1)[1].strip()


@pytest.mark.parametrize(
    ("env_key", "file_key", "expected"),
    [
        ("tml-from-the-env-0123456789", None, "tml-from-the-env-0123456789"),
        (None, "tml-from-the-file-0123456789", "tml-from-the-file-0123456789"),
        (
            "tml-from-the-env-0123456789",
            "tml-from-the-file-0123456789",
            "tml-from-the-file-0123456789",
        ),
        (None, None, None),
    ],
    ids=["env", "file", "file-over-env", "generated"],
)
def test_serve_takes_its_key_from_the_environment_or_a_file(
    tmp_path, monkeypatch, env_key, file_key, expected
):
    from tinkerkit.server import runner

    served = []
    monkeypatch.setattr(runner, "run_forever", lambda app, sock, **kw: served.append((app, sock)))
    args = ["--port", "0"]
    if file_key is not None:
        (tmp_path / "key").write_text(f"  {file_key}  \n")
        args += ["--api-key-file", str(tmp_path / "key")]
    result = _serve(*args, env={"TINKERKIT_SERVE_API_KEY": env_key or ""})
    assert result.exit_code == 0, result.output
    ((app, sock),) = served
    sock.close()
    host = app.state.host
    if expected is None:  # a fresh one, printed once
        printed = result.output.split("API key (use as TINKER_API_KEY): ", 1)[1].split()[0]
        assert host.lookup(printed.encode()) is not None
    else:
        assert host.lookup(expected.encode()) is not None
        assert expected not in result.output  # the user's own key is never printed
    if env_key is not None and env_key != expected:
        assert host.lookup(env_key.encode()) is None  # the file wins


def test_serve_with_a_key_file_keeps_it_out_of_ps_and_stops_cleanly_mid_request(tmp_path):
    key = "tml-from-the-file-0123456789"
    (tmp_path / "key").write_text(key + "\n")
    proc, url = _start_serve(["--api-key-file", str(tmp_path / "key")], {})
    try:
        cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes().decode()
        assert key not in cmdline  # what `ps` shows other users
        headers = {"X-API-Key": key}
        capabilities = httpx.get(f"{url}/api/v1/get_server_capabilities", headers=headers)
        assert capabilities.status_code == 200
        wrong = {"X-API-Key": "tml-x" * 4}
        answer = httpx.get(f"{url}/api/v1/get_server_capabilities", headers=wrong)
        assert "Invalid or missing API key" in _detail(answer, 401)
        # Stopped (Ctrl-C) while a request is half sent: answered, not cancelled.
        raw = Raw(url, key)
        body = b'{"session_id": "s", "model_seq_id": 0}'
        half = raw.partial("create_model", body, 10, settled=True)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=30)
        reply = half.recv(4096)
        assert reply.startswith(b"HTTP/1.1 503 "), reply
        assert b"the tinkerkit server is stopping" in reply, reply
        half.close()
        raw.close()
    finally:
        proc.kill()
        proc.wait()
    assert key not in stdout and key not in stderr
    clean_stderr(stderr)
    assert "graceful shutdown exceeded" not in stderr, stderr


# --- 10. what holds: another user's key -----------------------------------------------------


def test_another_users_key_gets_401_and_sees_nothing(server, log):
    with serve("mock") as other:
        mine = tinker.ServiceClient(base_url=server.base_url, api_key=server.api_key)
        training = mine.create_lora_training_client(base_model=MODEL, rank=4).result()
        path = training.save_state("private").result().path
        intruder = Raw(server.base_url, other.api_key)
        try:
            for method, route, body in [
                ("GET", "training_runs", None),
                ("POST", "optim_step", {"model_id": training.model_id, "seq_id": 9}),
                ("POST", "weights_info", {"tinker_path": path}),
            ]:
                answer = intruder.http.request(method, route, json=body)
                assert "Invalid or missing API key" in _detail(answer, 401)
        finally:
            intruder.close()
            mine.close("success").result(timeout=10)


def _saves_then_kill_9(home: Path) -> tuple[str, Path]:
    """200 saves queued on one model of a served process, SIGKILLed once 5 are written."""
    key = "tml-kill-nine-0123456789"
    proc, url = _start_serve([], {"TINKERKIT_SERVE_API_KEY": key, "TINKERKIT_HOME": str(home)})
    raw = Raw(url, key)
    try:
        model_id = raw.create_model(raw.session())
        folder = home / "runs" / model_id / "weights"
        for seq_id in range(1, 201):  # answered at once; the saves queue on the model
            answer = raw.post(
                "save_weights", {"model_id": model_id, "seq_id": seq_id, "path": f"c{seq_id}"}
            )
            assert answer.status_code == 200, answer.text
        deadline = time.monotonic() + 60  # a guard against hanging, not a measure
        while len(list(folder.glob("c*"))) < 5:  # some saved, most still to come
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.005)
        proc.kill()  # SIGKILL: no cleanup of any kind
        proc.wait(timeout=30)
    finally:
        proc.kill()
        proc.wait()
        raw.close()
    return model_id, folder


def test_kill_9_during_saves_never_lists_a_half_checkpoint(tmp_path, monkeypatch):
    from tinkerkit.backends.store import CheckpointStore

    # On a loaded machine this process may not run again before the server has done
    # all 200 saves: then the kill landed after them and proved nothing; try again.
    for attempt in range(3):
        home = tmp_path / f"home-{attempt}"
        model_id, folder = _saves_then_kill_9(home)
        monkeypatch.setenv("TINKERKIT_HOME", str(home))
        store = CheckpointStore()
        listed = store.list_checkpoints(model_id)
        for record in listed:  # every listed checkpoint is whole
            loaded = store.load(record.path, with_optimizer=True)
            assert loaded.weights and loaded.optimizer
        names = {p.name for p in folder.iterdir() if not p.name.startswith(".")}
        assert names == {r.path.rsplit("/", 1)[1] for r in listed}
        if len(listed) < 200:
            break
    assert 5 <= len(listed) < 200


def test_concurrent_retrievals_of_one_result_all_get_it(raw, log):
    model_id = _model(raw)
    request_id = raw.forward_backward(model_id, 1, DATA).json()["request_id"]
    losses: list[float] = []
    threads = [
        threading.Thread(target=lambda: losses.append(raw.loss(request_id))) for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(losses) == 4 and len(set(losses)) == 1
