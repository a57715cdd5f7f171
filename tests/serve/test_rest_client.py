"""``tk.rest_client``: the SDK's RestClient on the offline store it shares with every
process, sessions, typed errors.

(What every backend shares is in tests/conformance/test_rest.py.)
"""

from __future__ import annotations

import pickle

import pytest
import tinker
from tinker import types

import tinkerkit as tk
from tinkerkit.errors import (
    BackendNotConfiguredError,
    CheckpointGoneError,
    CheckpointNotFoundError,
    RestRequestError,
    SamplerNotFoundError,
    SessionNotFoundError,
)

MODEL = "tinkerkit/tiny"


def _search(rest: tinker.RestClient, **fields) -> list[str]:
    with pytest.warns(tinker.ExperimentalWarning):
        future = rest.search_sessions(types.SessionSearchRequest(**fields))
    return [s.session_id for s in future.result().sessions]


def _session_id(service: tinker.ServiceClient) -> str:
    return service.holder.get_session_id()


def test_constructed_the_0_38_way(tk_home, monkeypatch):
    monkeypatch.delenv("TINKER_API_KEY", raising=False)
    monkeypatch.delenv("TINKERKIT_BACKEND", raising=False)
    with pytest.raises(BackendNotConfiguredError):
        tk.rest_client()
    monkeypatch.setenv("TINKERKIT_BACKEND", "mock")
    assert type(tk.rest_client()) is tinker.RestClient
    assert type(tk.rest_client("mock")) is tinker.RestClient
    assert type(tk.rest_client(tk.connect("mock"))) is tinker.RestClient
    with pytest.raises(TypeError, match="backend name or a ServiceClient"):
        tk.rest_client(42)


def test_a_separate_rest_client_sees_what_tk_connect_saved(tk_home):
    service = tk.connect("mock")
    training = service.create_lora_training_client(base_model=MODEL, rank=4).result()
    path = training.save_state("shared").result().path
    rest = tk.rest_client("mock")
    assert [r.training_run_id for r in rest.list_training_runs().result().training_runs] == [
        training.model_id
    ]
    assert [c.tinker_path for c in rest.list_user_checkpoints().result().checkpoints] == [path]
    assert rest.list_sessions().result().sessions == [_session_id(service)]
    assert tk.rest_client("local").list_sessions().result().sessions == []  # per backend


def test_a_rest_client_alone_creates_no_session(tk_home):
    rest = tk.rest_client("mock")
    rest.list_training_runs().result()
    assert rest.list_sessions().result().sessions == []


def test_session_metadata_and_finish_reason_are_recorded(tk_home):
    service = tk.connect(
        "mock", user_metadata={"team": "rl"}, project_id="proj-1", display_name="Nightly RL run"
    )
    training = service.create_lora_training_client(base_model=MODEL, rank=4).result()
    rest = tk.rest_client(service)
    session_id = _session_id(service)
    session = rest.get_session(session_id).result()
    assert (session.training_run_ids, session.user_metadata, session.display_name) == (
        [training.model_id],
        {"team": "rl"},
        "Nightly RL run",
    )
    assert _search(rest, display_name="rl nightly") == [session_id]
    assert _search(rest, display_name="weekly") == []
    assert _search(rest, user_metadata={"team": "rl"}) == [session_id]
    assert _search(rest, project_ids=["proj-1"]) == [session_id]
    other = types.UserSearchOwner(owner_urns=["tml:user:someone-else"])
    assert _search(rest, owner=other) == []
    service.close("errored", "diverged").result()
    finished = types.ClientFinishedSessionStatusQuery(reasons=["errored"])
    assert _search(rest, statuses=[finished]) == [session_id]
    assert _search(rest, statuses=[types.ActiveSessionStatusQuery()]) == []


def test_samplers_are_described(tk_home):
    service = tk.connect("mock")
    sampler = service.create_sampling_client(base_model=MODEL).result()
    rest = tk.rest_client(service)
    session_id = _session_id(service)
    (sampler_id,) = rest.get_session(session_id).result().sampler_ids
    described = rest.get_sampler(sampler_id).result()
    assert (described.base_model, described.model_path) == (MODEL, None)
    assert sampler.get_base_model() == MODEL
    with pytest.raises(tinker.NotFoundError):
        rest.get_sampler(f"{session_id}:sample:9").result()


def test_weights_info_names_the_dimuon_optimizer(tk_home):
    service = tk.connect("mock")
    training = service.create_lora_training_client(
        base_model=MODEL, rank=4, optimizer=types.DimuonOptimizerConfig()
    ).result()
    path = training.save_state("dimuon").result().path
    sampler = training.save_weights_for_sampler("dimuon").result().path
    rest = tk.rest_client(service)
    for checkpoint in (path, sampler):  # a sampler checkpoint: its run's optimizer
        info = rest.get_weights_info_by_tinker_path(checkpoint).result()
        assert info.optimizer_config.type == "dimuon"


def test_malformed_paths_in_request_bodies_are_bad_requests(tk_home):
    rest = tk.rest_client("mock")
    with pytest.raises(tinker.BadRequestError):  # the SDK sends these unparsed
        rest.get_weights_info_by_tinker_path("not-a-path").result()
    with pytest.raises(tinker.BadRequestError):
        rest.copy_weights("not-a-path", "proj").result()


def test_rest_errors_are_the_sdks_http_classes_and_pickle():
    errors = [
        (RestRequestError("bad ttl"), tinker.BadRequestError, 400),
        (CheckpointGoneError("tinker://r/weights/x", "2020-01-01"), tinker.NotFoundError, 404),
        (SessionNotFoundError("session-x"), tinker.NotFoundError, 404),
        (SamplerNotFoundError("s:sample:0"), tinker.NotFoundError, 404),
    ]
    for error, sdk_class, status in errors:
        assert isinstance(error, sdk_class) and error.status_code == status
        again = pickle.loads(pickle.dumps(error))
        assert type(again) is type(error) and str(again) == str(error)
    assert isinstance(CheckpointGoneError("tinker://r/weights/x", "t"), CheckpointNotFoundError)
