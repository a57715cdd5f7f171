"""The REST views of offline sessions: get, list, search, move to a project, trace.

Sessions come from the session records (``backends/sessions.py``); a session's training
runs are the runs whose ``session_id`` names it. Offline there is one user, so every
session is the caller's own and ``access_scope`` changes nothing.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from tinker import types

from tinkerkit.atomic import write_text_atomic
from tinkerkit.backends.sessions import SessionRecord, local_user_urn
from tinkerkit.backends.store import CheckpointStore, RunRecord
from tinkerkit.errors import (
    RestRequestError,
    SamplerNotFoundError,
    SessionNotFoundError,
)


def _session(store: CheckpointStore, backend: str, session_id: str) -> SessionRecord:
    record = store.sessions.get(session_id)
    if record is None or record.backend != backend:
        raise SessionNotFoundError(session_id)
    return record


def runs_in(store: CheckpointStore, backend: str, session_id: str) -> list[RunRecord]:
    """The session's training runs, oldest first."""
    runs = [r for r in store.list_runs() if r.backend == backend and r.session_id == session_id]
    return sorted(runs, key=lambda r: r.created)


def get_session(store: CheckpointStore, backend: str, session_id: str) -> types.GetSessionResponse:
    record = _session(store, backend, session_id)
    return types.GetSessionResponse(
        training_run_ids=[r.run_id for r in runs_in(store, backend, session_id)],
        sampler_ids=list(record.samplers),
        user_metadata=record.user_metadata,
        display_name=record.display_name,
    )


def list_sessions(
    store: CheckpointStore, backend: str, limit: int, offset: int
) -> types.ListSessionsResponse:
    records = store.sessions.list(backend)
    return types.ListSessionsResponse(
        sessions=[r.session_id for r in records[offset : offset + limit]]
    )


def assign_project(store: CheckpointStore, backend: str, session_id: str, project_id: str) -> None:
    if not project_id:
        raise RestRequestError(
            "assign_session_project needs a project_id (sessions cannot be moved out of a project)."
        )
    _session(store, backend, session_id)

    def move(record: SessionRecord) -> None:
        record.project_id = project_id

    store.sessions.update(session_id, move)


def get_sampler(store: CheckpointStore, backend: str, sampler_id: str) -> types.GetSamplerResponse:
    found = store.sessions.find_sampler(sampler_id)
    if found is None or found[0].backend != backend:
        raise SamplerNotFoundError(sampler_id)
    _, sampler = found
    return types.GetSamplerResponse(
        sampler_id=sampler_id, base_model=sampler["base_model"], model_path=sampler["model_path"]
    )


# --- search -------------------------------------------------------------------------------


def _matches_status(record: SessionRecord, queries: list[types.SessionStatusQuery]) -> bool:
    status = record.status()
    for query in queries:
        if query.type == "active" and isinstance(status, types.SessionActive):
            return True
        if query.type == "client_finished" and isinstance(status, types.ClientSessionFinished):
            reasons = getattr(query, "reasons", None)
            if reasons is None or status.reason.type in reasons:
                return True
        # "cancelled" and "failed": offline sessions are never either.
    return False


def _matches(record: SessionRecord, request: types.SessionSearchRequest) -> bool:
    by_id = request.session_id is not None and record.session_id == request.session_id
    by_name = False
    if request.display_name is not None and record.display_name:
        name = record.display_name.lower()
        by_name = all(word in name for word in request.display_name.lower().split())
    if (request.session_id is not None or request.display_name is not None) and not (
        by_id or by_name
    ):
        return False
    if request.project_ids is not None and record.project not in request.project_ids:
        return False
    metadata = record.user_metadata or {}
    if any(metadata.get(k) != v for k, v in request.user_metadata.items()):
        return False
    owner = request.owner
    if isinstance(owner, types.UserSearchOwner) and local_user_urn() not in owner.owner_urns:
        return False
    return request.statuses is None or _matches_status(record, list(request.statuses))


def _summary(store: CheckpointStore, record: SessionRecord) -> types.SessionSummary:
    from tinkerkit.backends.rest_runs import checkpoint_bytes

    checkpoints = [
        c
        for run in runs_in(store, record.backend, record.session_id)
        for c in store.list_checkpoints(run.run_id)
    ]
    return types.SessionSummary(
        session_id=record.session_id,
        created_at=record.created_at,
        owner=local_user_urn(),
        project_id=record.project,
        status=record.status(),
        checkpoints_count=len(checkpoints),
        display_name=record.display_name,
        user_metadata=record.user_metadata,
        checkpoint_storage_bytes=sum(checkpoint_bytes(store, c) for c in checkpoints),
    )


def search_sessions(
    store: CheckpointStore, backend: str, request: types.SessionSearchRequest
) -> types.SessionSearchResponse:
    """Matching sessions, newest first, one page of ``request.limit`` after its cursor."""
    records = [r for r in store.sessions.list(backend) if _matches(r, request)]
    if request.cursor is not None:
        after = (request.cursor.last_created_at, request.cursor.last_session_id)
        records = [r for r in records if (r.created_at, r.session_id) < after]
    page = records[: request.limit]
    next_cursor = None
    if len(records) > request.limit:
        last = page[-1]
        next_cursor = types.SessionSearchCursor(
            last_created_at=last.created_at, last_session_id=last.session_id
        )
    return types.SessionSearchResponse(
        sessions=[_summary(store, r) for r in page], next_cursor=next_cursor
    )


# --- trace --------------------------------------------------------------------------------


def _us(iso: str) -> int:
    return int(datetime.fromisoformat(iso).timestamp() * 1_000_000)


def session_trace(store: CheckpointStore, backend: str, session_id: str) -> dict[str, Any]:
    """A Chrome/Perfetto JSON trace of the session: its span, one track per training run
    (created → last checkpoint) with an instant per checkpoint, and one per sampler."""
    record = _session(store, backend, session_id)
    end = record.finish["at"] if record.finish else datetime.now(UTC).isoformat()
    events: list[dict[str, Any]] = [
        {"ph": "M", "pid": 1, "name": "process_name", "args": {"name": f"session {session_id}"}},
        {
            "ph": "X",
            "pid": 1,
            "tid": 0,
            "name": record.display_name or session_id,
            "ts": _us(record.created),
            "dur": max(_us(end) - _us(record.created), 1),
            "args": {"status": (record.finish or {}).get("reason", "open")},
        },
    ]
    for tid, run in enumerate(runs_in(store, backend, session_id), start=1):
        checkpoints = store.list_checkpoints(run.run_id, include_expired=True)
        last = max([run.created, *(c.created for c in checkpoints)])
        events.append(
            {"ph": "M", "pid": 1, "tid": tid, "name": "thread_name", "args": {"name": run.run_id}}
        )
        events.append(
            {
                "ph": "X",
                "pid": 1,
                "tid": tid,
                "name": f"training run {run.run_id}",
                "ts": _us(run.created),
                "dur": max(_us(last) - _us(run.created), 1),
                "args": {"base_model": run.base_model, "lora_rank": run.lora.get("rank")},
            }
        )
        for c in checkpoints:
            args = {"tinker_path": c.path, "size_bytes": c.size_bytes}
            events.append(
                {"ph": "i", "s": "t", "pid": 1, "tid": tid, "name": f"save {c.kind}/{c.name}"}
                | {"ts": _us(c.created), "args": args}
            )
    for sampler_id, sampler in record.samplers.items():
        events.append(
            {"ph": "i", "s": "p", "pid": 1, "tid": 0, "name": f"sampler {sampler_id}"}
            | {"ts": _us(sampler["created"]), "args": sampler}
        )
    return {"traceEvents": events, "displayTimeUnit": "ms", "otherData": {"backend": backend}}


def export_trace(store: CheckpointStore, backend: str, session_id: str) -> str:
    """Write the session's trace next to its record; its ``file://`` URL."""
    trace = session_trace(store, backend, session_id)
    folder = store.sessions.folder / "traces"
    target = folder / f"{session_id}.json"
    write_text_atomic(target, json.dumps(trace))
    return target.resolve().as_uri()
