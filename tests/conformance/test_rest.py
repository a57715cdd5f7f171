"""The RestClient: runs, checkpoints, TTLs, publishing, copies, sessions, usage, identity.

Runs on every backend (mock, local, and the real service with a key) with the official
``tinker.RestClient``. The store is read
directly (``CheckpointStore()``, same TINKERKIT_HOME) to check numbers against the files.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlparse

import httpx
import numpy as np
import pytest
import tinker
from tinker import types

import tinkerkit as tk
import tinkerkit.backends.store as store_module
from tests.conformance.helpers import logprobs, qa_datums
from tinkerkit.backends.store import CheckpointStore

TEN_YEARS = 10 * 365 * 24 * 3600


@pytest.fixture
def service(fresh_service):
    """Sessions are what these tests look at: each test its own."""
    return fresh_service


@pytest.fixture
def rest(service):
    return tk.rest_client(service)


@pytest.fixture
def store(target):
    if target.backend == "tinker":
        pytest.skip("reads the offline store")
    return CheckpointStore()


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _session_id(service) -> str:
    return service.holder.get_session_id()


def _train(client, data, steps=2):
    for _ in range(steps):
        client.forward_backward(data, "cross_entropy")
        client.optim_step(types.AdamParams(learning_rate=1e-2))


def _listed(rest, run_id: str) -> dict[str, types.Checkpoint]:
    return {c.tinker_path: c for c in rest.list_checkpoints(run_id).result().checkpoints}


def _fetch(url: str) -> bytes:
    if urlparse(url).scheme == "file":
        return Path(urlparse(url).path).read_bytes()
    response = httpx.get(url)
    assert response.status_code == 200
    return response.content


# --- runs and checkpoints ------------------------------------------------------------------


def test_rest_client_is_the_sdks(rest):
    assert isinstance(rest, tinker.RestClient)
    future = rest.get_server_capabilities()
    assert isinstance(future, tinker.APIFuture)
    assert isinstance(future.result(), types.GetServerCapabilitiesResponse)


def test_training_run_reports_model_rank_and_last_checkpoints(rest, make_client, target):
    training = make_client(rank=4)
    state = training.save_state(_name("state")).result().path
    sampler = training.save_weights_for_sampler(_name("sampler")).result().path
    run = rest.get_training_run(training.model_id).result()
    assert (run.training_run_id, run.base_model, run.is_lora, run.lora_rank) == (
        training.model_id,
        target.model,
        True,
        4,
    )
    assert run.last_checkpoint.tinker_path == state
    assert run.last_sampler_checkpoint.tinker_path == sampler
    by_path = rest.get_training_run_by_tinker_path(state).result()
    assert by_path.training_run_id == training.model_id


def test_training_runs_are_listed_newest_first_with_a_cursor(rest, make_client, store):
    first, second = make_client(), make_client()
    page = rest.list_training_runs(limit=1).result()
    assert [r.training_run_id for r in page.training_runs] == [second.model_id]
    assert (page.cursor.offset, page.cursor.limit, page.cursor.total_count) == (0, 1, 2)
    rest_page = rest.list_training_runs(limit=1, offset=1).result()
    assert [r.training_run_id for r in rest_page.training_runs] == [first.model_id]


def test_user_checkpoints_span_runs_newest_first_with_a_cursor(rest, make_client, store):
    a, b = make_client(), make_client()
    saved = [
        a.save_state(_name("a")).result().path,
        b.save_weights_for_sampler(_name("b")).result().path,
        a.save_state(_name("c")).result().path,
    ]
    page = rest.list_user_checkpoints(limit=2).result()
    assert [c.tinker_path for c in page.checkpoints] == [saved[2], saved[1]]
    assert (page.cursor.offset, page.cursor.limit, page.cursor.total_count) == (0, 2, 3)
    last = rest.list_user_checkpoints(limit=2, offset=2).result()
    assert [c.tinker_path for c in last.checkpoints] == [saved[0]]


def test_weights_info_reports_base_model_rank_and_optimizer(rest, make_client, target):
    training = make_client(rank=4)
    for path in (
        training.save_state(_name("state")).result().path,
        training.save_weights_for_sampler(_name("sampler")).result().path,
    ):
        info = rest.get_weights_info_by_tinker_path(path).result()
        assert (info.base_model, info.is_lora, info.lora_rank) == (target.model, True, 4)
        assert (info.train_mlp, info.train_attn, info.train_unembed) == (True, True, True)
        assert info.optimizer_config.type == "adamw"


def test_checkpoints_are_deleted_by_id_or_by_path(rest, training):
    by_id = training.save_state(_name("by-id")).result().path
    by_path = training.save_state(_name("by-path")).result().path
    rest.delete_checkpoint(training.model_id, by_id.split("/", 3)[3]).result()
    rest.delete_checkpoint_from_tinker_path(by_path).result()
    assert not {by_id, by_path} & set(_listed(rest, training.model_id))
    with pytest.raises(tinker.NotFoundError):
        rest.delete_checkpoint_from_tinker_path(by_path).result()


def test_missing_runs_and_checkpoints_are_not_found(rest, training):
    missing = f"tinker://{training.model_id}/weights/{_name('never-saved')}"
    calls = [
        lambda: rest.get_training_run("no-such-run"),
        lambda: rest.list_checkpoints("no-such-run"),
        lambda: rest.get_weights_info_by_tinker_path(missing),
        lambda: rest.delete_checkpoint_from_tinker_path(missing),
        lambda: rest.delete_checkpoint(training.model_id, "weights/never-saved"),
        lambda: rest.set_checkpoint_ttl_from_tinker_path(missing, 7200),
        lambda: rest.publish_checkpoint_from_tinker_path(missing),
        lambda: rest.copy_weights(missing, "proj"),
        lambda: rest.get_session("no-such-session"),
        lambda: rest.get_sampler("no-such-sampler"),
    ]
    for call in calls:
        with pytest.raises(tinker.NotFoundError):
            call().result()


def test_invalid_tinker_paths_are_value_errors_at_the_call(rest, training):
    weights = training.save_state(_name("kind")).result().path
    for bad in ("not-a-path", "tinker://run-only", "tinker://run/bogus/name"):
        for call in (
            rest.get_training_run_by_tinker_path,
            rest.delete_checkpoint_from_tinker_path,
            rest.publish_checkpoint_from_tinker_path,
            rest.unpublish_checkpoint_from_tinker_path,
            rest.get_external_weights_urls,
            lambda p: rest.set_checkpoint_ttl_from_tinker_path(p, 7200),
        ):
            with pytest.raises(ValueError):
                call(bad)  # no .result(): refused before anything is sent
    with pytest.raises(ValueError, match="external"):
        rest.get_external_weights_urls(weights)


# --- TTL and expiry ------------------------------------------------------------------------


def test_ttl_sets_the_expiry_from_now_or_removes_it(rest, training):
    path = training.save_state(_name("ttl")).result().path
    before = datetime.now(UTC)
    rest.set_checkpoint_ttl_from_tinker_path(path, 7200).result()
    expires = _listed(rest, training.model_id)[path].expires_at
    assert abs((expires - (before + timedelta(seconds=7200))).total_seconds()) < 1.0
    rest.set_checkpoint_ttl_from_tinker_path(path, None).result()
    assert _listed(rest, training.model_id)[path].expires_at is None


def test_ttl_out_of_bounds_is_refused(rest, training):
    path = training.save_state(_name("bounds")).result().path
    for ttl in (3599, TEN_YEARS + 1):
        with pytest.raises(tinker.BadRequestError, match="ttl_seconds"):
            rest.set_checkpoint_ttl_from_tinker_path(path, ttl).result()
    for ttl in (3600, TEN_YEARS):
        rest.set_checkpoint_ttl_from_tinker_path(path, ttl).result()


def test_expired_checkpoints_are_gone_everywhere(rest, service, training, store, monkeypatch):
    state = training.save_state(_name("old")).result().path
    sampler = training.save_weights_for_sampler(_name("old")).result().path
    external = training.save_weights_external(_name("old")).result().path
    for path in (state, sampler, external):
        rest.set_checkpoint_ttl_from_tinker_path(path, 3600).result()
    real_now = store_module._now
    monkeypatch.setattr(store_module, "_now", lambda: real_now() + timedelta(hours=2))

    assert _listed(rest, training.model_id) == {}
    assert rest.list_user_checkpoints().result().checkpoints == []
    run = rest.get_training_run(training.model_id).result()
    assert run.last_checkpoint is None and run.last_sampler_checkpoint is None
    for call in (
        lambda: rest.get_weights_info_by_tinker_path(state),
        lambda: rest.get_external_weights_urls(external),
        lambda: rest.set_checkpoint_ttl_from_tinker_path(state, None),
        lambda: rest.delete_checkpoint_from_tinker_path(sampler),
    ):
        with pytest.raises(tinker.NotFoundError, match="expired"):
            call().result()
    failures = (tinker.RequestFailedError, tinker.APIStatusError)
    with pytest.raises(failures, match="expired"):
        service.create_training_client_from_state(state).result()
    with pytest.raises(failures, match="expired"):
        service.create_sampling_client(model_path=sampler).result()


# --- publishing and copies -----------------------------------------------------------------


def test_publish_and_unpublish_flip_the_public_flag(rest, training):
    path = training.save_state(_name("pub")).result().path
    assert _listed(rest, training.model_id)[path].public is False
    rest.publish_checkpoint_from_tinker_path(path).result()
    assert _listed(rest, training.model_id)[path].public is True
    with pytest.raises(tinker.BadRequestError, match="already public"):
        rest.publish_checkpoint_from_tinker_path(path).result()
    rest.unpublish_checkpoint_from_tinker_path(path).result()
    assert _listed(rest, training.model_id)[path].public is False
    with pytest.raises(tinker.BadRequestError, match="already private"):
        rest.unpublish_checkpoint_from_tinker_path(path).result()


def test_copy_weights_gives_an_identical_loadable_copy(rest, service, training, tokenizer):
    data = qa_datums(tokenizer)
    _train(training, data)
    name = _name("to-copy")
    path = training.save_state(name).result().path
    copy = rest.copy_weights(path, "archive", ttl_seconds=7200).result()
    assert copy != path and copy.endswith(f"/weights/{name}")
    copied_run = rest.get_training_run_by_tinker_path(copy).result()
    assert copied_run.training_run_id != training.model_id
    assert [
        r.training_run_id
        for r in rest.list_training_runs(project_id="archive").result().training_runs
    ] == [copied_run.training_run_id]
    (listed,) = rest.list_checkpoints(copied_run.training_run_id).result().checkpoints
    assert listed.tinker_path == copy and listed.expires_at is not None and not listed.public

    loaded = service.create_training_client_from_state(copy).result()
    for a, b in zip(
        logprobs(training.forward(data, "cross_entropy").result()),
        logprobs(loaded.forward(data, "cross_entropy").result()),
        strict=True,
    ):
        np.testing.assert_array_equal(a, b)

    sampler = training.save_weights_for_sampler(_name("sampler")).result().path
    sampler_copy = rest.copy_weights(sampler, "archive").result()
    assert "/sampler_weights/" in sampler_copy
    service.create_sampling_client(model_path=sampler_copy).result()


def test_copy_weights_refusals(rest, training, monkeypatch):
    path = training.save_state(_name("refused")).result().path
    monkeypatch.delenv("TINKER_PROJECT_ID", raising=False)
    with pytest.raises(ValueError, match="destination_project_id"):
        rest.copy_weights(path)
    with pytest.raises(tinker.BadRequestError, match="ttl_seconds"):
        rest.copy_weights(path, "archive", ttl_seconds=60).result()


# --- sessions ------------------------------------------------------------------------------


def test_sessions_are_listed_with_their_training_runs(rest, service, make_client, store):
    first, second = make_client(), make_client()
    session_id = _session_id(service)
    assert session_id in rest.list_sessions(limit=100).result().sessions
    session = rest.get_session(session_id).result()
    assert session.training_run_ids == [first.model_id, second.model_id]


def test_a_sessions_samplers_are_listed_and_described(rest, service, target, store):
    sampler = service.create_sampling_client(base_model=target.model).result()
    assert sampler is not None
    try:
        sampler_ids = rest.get_session(_session_id(service)).result().sampler_ids
    except tinker.NotFoundError:  # a session with only samplers is recorded through them
        sampler_ids = []
    (sampler_id,) = sampler_ids
    described = rest.get_sampler(sampler_id).result()
    assert (described.sampler_id, described.base_model) == (sampler_id, target.model)
    assert described.model_path is None


def test_sessions_move_to_projects_and_are_searched(rest, service, training, store):
    session_id = _session_id(service)
    path = training.save_state(_name("s")).result().path
    rest.copy_weights(path, "other").result()  # a second session, holding the copy
    (copy_session,) = set(rest.list_sessions().result().sessions) - {session_id}
    rest.assign_session_project(session_id, "proj-x").result()
    assert [
        r.training_run_id
        for r in rest.list_training_runs(project_id="proj-x").result().training_runs
    ] == [training.model_id]
    with pytest.raises(tinker.BadRequestError):
        rest.assign_session_project(session_id, "").result()
    with pytest.raises(tinker.NotFoundError):
        rest.assign_session_project("no-such-session", "proj-x").result()

    def search(**fields) -> types.SessionSearchResponse:
        with pytest.warns(tinker.ExperimentalWarning):
            future = rest.search_sessions(types.SessionSearchRequest(**fields))
        return future.result()

    (found,) = search(project_ids=["proj-x"]).sessions
    assert (found.session_id, found.project_id, found.checkpoints_count) == (
        session_id,
        "proj-x",
        1,
    )
    assert isinstance(found.status, types.SessionActive)
    assert [s.session_id for s in search(session_id=copy_session).sessions] == [copy_session]
    first = search(limit=1)
    assert len(first.sessions) == 1 and first.next_cursor is not None
    second = search(limit=1, cursor=first.next_cursor)
    assert {first.sessions[0].session_id, second.sessions[0].session_id} == {
        session_id,
        copy_session,
    }
    assert search(statuses=[types.ClientFinishedSessionStatusQuery()]).sessions == []


def test_session_trace_is_a_perfetto_json_of_its_runs(rest, service, training, store):
    path = training.save_state(_name("traced")).result().path
    url = rest.export_session_trace(_session_id(service)).result()
    trace = json.loads(_fetch(url))
    names = [e.get("name", "") for e in trace["traceEvents"]]
    assert f"training run {training.model_id}" in names
    assert any(e.get("args", {}).get("tinker_path") == path for e in trace["traceEvents"])
    with pytest.raises(tinker.NotFoundError):
        rest.export_session_trace("no-such-session").result()


# --- identity, usage, billing --------------------------------------------------------------


def test_whoami_needs_jwt_and_never_shows_the_key(rest, service, target):
    if target.backend == "tinker":
        pytest.skip("the service has JWT exchange on")
    # The SDK reads whoami from its JWT; tinkerkit's service turns JWT exchange off.
    with pytest.raises(RuntimeError, match="JWT") as info:
        rest.whoami().result()
    assert tk.connection_of(service).api_key not in str(info.value)


def test_storage_usage_is_the_bytes_of_the_checkpoint_files(rest, make_client, store):
    a, b = make_client(), make_client()
    paths = [
        a.save_state(_name("a")).result().path,
        a.save_weights_for_sampler(_name("a")).result().path,
        b.save_weights_external(_name("b")).result().path,
    ]
    on_disk = sum(f.stat().st_size for p in paths for f in store.files(p).values())
    with pytest.warns(FutureWarning, match="AdminClient"):
        usage = rest.get_current_checkpoint_storage_usage().result()
    assert sum(item.checkpoint_count for item in usage.data) == 3
    assert sum(item.size_bytes for item in usage.data) == on_disk
    (item,) = usage.data
    assert item.size_gigabytes == pytest.approx(on_disk / 1e9)
    with pytest.warns(FutureWarning):
        assert rest.get_current_checkpoint_storage_usage("elsewhere").result().data == []


def test_billing_and_audit_log_are_empty_offline(rest, store):
    with pytest.warns(FutureWarning, match="AdminClient"):
        billing = rest.get_billing_usage("2026-01-01T00:00:00Z", "2026-01-01T01:00:00Z")
    assert billing.result().data == []
    with pytest.warns(FutureWarning, match="AdminClient"):
        assert rest.get_audit_log().result().entries == []


def test_deprecated_async_spellings_warn_and_answer(rest, training):
    path = training.save_state(_name("async")).result().path

    async def calls():
        with pytest.warns(FutureWarning, match="get_training_run_async"):
            run = await rest.get_training_run_async(training.model_id)
        with pytest.warns(FutureWarning, match="list_checkpoints_async"):
            listed = await rest.list_checkpoints_async(training.model_id)
        return run, listed

    run, listed = asyncio.run(calls())
    assert run.training_run_id == training.model_id
    assert path in {c.tinker_path for c in listed.checkpoints}
