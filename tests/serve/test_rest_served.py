"""The REST endpoints through the official SDK: sessions the SDK creates, idempotent
copies, signed trace URLs, and the HTTP status of every offline error class."""

from __future__ import annotations

import httpx
import pytest
import tinker
from tinker import types

from tests.serve.conftest import MODEL
from tinkerkit.errors import (
    CheckpointGoneError,
    CheckpointNotFoundError,
    RequestError,
    RestRequestError,
    WrongCheckpointKindError,
)
from tinkerkit.server.responses import status_for


def _rest(server) -> tinker.RestClient:
    return tinker.RestClient(base_url=server.base_url, api_key=server.api_key)


def test_sdk_sessions_are_recorded_with_their_metadata_and_finish(server):
    service = tinker.ServiceClient(
        user_metadata={"team": "rl"},
        project_id="proj-served",
        display_name="served nightly",
        base_url=server.base_url,
        api_key=server.api_key,
    )
    training = service.create_lora_training_client(base_model=MODEL, rank=4).result()
    training.save_weights_and_get_sampling_client()  # an unnamed snapshot: a sampler
    session_id = service.holder.get_session_id()
    rest = _rest(server)
    assert rest.list_sessions().result().sessions == [session_id]  # not the server's own
    session = rest.get_session(session_id).result()
    assert (session.training_run_ids, session.user_metadata, session.display_name) == (
        [training.model_id],
        {"team": "rl"},
        "served nightly",
    )
    (sampler_id,) = session.sampler_ids
    assert rest.get_sampler(sampler_id).result().base_model == MODEL
    assert [
        r.training_run_id
        for r in rest.list_training_runs(project_id="proj-served").result().training_runs
    ] == [training.model_id]
    service.close("interrupted", "ctrl-c").result()
    query = types.ClientFinishedSessionStatusQuery(reasons=["interrupted"])
    with pytest.warns(tinker.ExperimentalWarning):
        page = rest.search_sessions(types.SessionSearchRequest(statuses=[query])).result()
    (summary,) = page.sessions
    assert (summary.session_id, summary.status.reason.type, summary.status.detail) == (
        session_id,
        "interrupted",
        "ctrl-c",
    )


def test_a_retried_copy_is_not_copied_twice(official, server):
    training = official.create_lora_training_client(base_model=MODEL, rank=4).result()
    path = training.save_state("once").result().path
    headers = {"X-API-Key": server.api_key, "X-Idempotency-Key": "copy-1"}
    body = {"source_path": path, "destination_project_id": "archive"}
    first = httpx.post(f"{server.base_url}/api/v1/copy_weights", json=body, headers=headers)
    again = httpx.post(f"{server.base_url}/api/v1/copy_weights", json=body, headers=headers)
    assert first.status_code == again.status_code == 200
    assert first.json() == again.json()
    runs = _rest(server).list_training_runs(project_id="archive").result().training_runs
    assert len(runs) == 1


def test_trace_urls_need_a_valid_signature(official, server):
    official.create_lora_training_client(base_model=MODEL, rank=4).result()
    url = _rest(server).export_session_trace(official.holder.get_session_id()).result()
    assert httpx.get(url).json()["traceEvents"]
    forged = url.replace("/files/", "/files/1-00", 1)
    assert httpx.get(forged).status_code == 403


def test_errors_answer_with_the_status_of_their_sdk_class():
    assert status_for(CheckpointNotFoundError("tinker://r/weights/x")) == 404
    assert status_for(CheckpointGoneError("tinker://r/weights/x", "2020-01-01")) == 404
    assert status_for(WrongCheckpointKindError("tinker://r/weights/x", "load", "weights")) == 400
    assert status_for(RestRequestError("bad ttl")) == 400
    assert status_for(RequestError("refused")) == 400
    assert status_for(ValueError("bad")) == 400
    conflict = tinker.ConflictError(
        "taken",
        response=httpx.Response(409, request=httpx.Request("GET", "http://x")),
        body=None,
    )
    assert status_for(conflict) == 400  # the SDK would retry a 409 for minutes
