"""The REST views of runs and checkpoints, read from the offline store.

Each function answers one ``RestClient`` call with the ``tinker.types`` model the
service answers with. Expired checkpoints are gone everywhere here, as on the service:
left out of listings, ``CheckpointGoneError`` (404) when named.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta

from safetensors import safe_open
from tinker import types

from tinkerkit.backends.engine import LoraConfig
from tinkerkit.backends.optimizers import STATE_KEY
from tinkerkit.backends.sessions import DEFAULT_PROJECT, local_user, local_user_urn, new_session_id
from tinkerkit.backends.store import (
    OPTIMIZER_FILE,
    CheckpointRecord,
    CheckpointStore,
    RunRecord,
    _now,
    parse_tinker_path,
    to_checkpoint,
)
from tinkerkit.errors import (
    CheckpointExpiredError,
    CheckpointGoneError,
    InvalidTinkerPathError,
    RequestError,
    RestRequestError,
)

GIGABYTE = 1e9
"""Storage usage is reported in decimal gigabytes."""


def live_record(store: CheckpointStore, path: str) -> CheckpointRecord:
    """The record of a checkpoint the caller named: 404 if missing or expired."""
    try:
        return store.record(path)
    except CheckpointExpiredError:
        expired = store.record(path, include_expired=True)
        raise CheckpointGoneError(path, expired.expires_at or "") from None


def body_path(path: str) -> str:
    """A tinker path sent in a request body: malformed is the server's 400, not a local
    ``ValueError`` (the SDK does not parse these client-side)."""
    try:
        parse_tinker_path(path)
    except InvalidTinkerPathError as exc:
        raise RestRequestError(str(exc)) from None
    return path


def checked_ttl(ttl_seconds: int | None) -> None:
    """The service's TTL bounds (1 hour to 10 years, or None), refused as HTTP 400."""
    from tinkerkit.backends.store import check_ttl

    try:
        check_ttl(ttl_seconds)
    except RequestError as exc:
        raise RestRequestError(str(exc)) from None


# --- runs ---------------------------------------------------------------------------------


def project_of(store: CheckpointStore, run: RunRecord) -> str:
    record = store.sessions.get(run.session_id) if run.session_id else None
    return record.project if record is not None else DEFAULT_PROJECT


def runs_of(store: CheckpointStore, backend: str, project_id: str | None = None) -> list[RunRecord]:
    """This backend's runs, newest first (only ``project_id``'s, if given)."""
    runs = [r for r in store.list_runs() if r.backend == backend]
    if project_id is not None:
        runs = [r for r in runs if project_of(store, r) == project_id]
    return runs


def training_run(store: CheckpointStore, run: RunRecord) -> types.TrainingRun:
    checkpoints = store.list_checkpoints(run.run_id)
    last: dict[str, CheckpointRecord | None] = {"weights": None, "sampler_weights": None}
    for record in checkpoints:
        if record.kind in last:
            last[record.kind] = record
    latest = max([run.created, *(c.created for c in checkpoints)])
    training, sampler = last["weights"], last["sampler_weights"]
    return types.TrainingRun(
        training_run_id=run.run_id,
        base_model=run.base_model,
        model_owner=local_user_urn(),
        is_lora=True,
        lora_rank=run.lora.get("rank"),
        last_request_time=datetime.fromisoformat(latest),
        last_checkpoint=to_checkpoint(training) if training else None,
        last_sampler_checkpoint=to_checkpoint(sampler) if sampler else None,
        user_metadata=run.user_metadata,
    )


def list_training_runs(
    store: CheckpointStore, backend: str, limit: int, offset: int, project_id: str | None
) -> types.TrainingRunsResponse:
    runs = runs_of(store, backend, project_id)
    return types.TrainingRunsResponse(
        training_runs=[training_run(store, r) for r in runs[offset : offset + limit]],
        cursor=types.Cursor(offset=offset, limit=limit, total_count=len(runs)),
    )


# --- checkpoints --------------------------------------------------------------------------


def list_user_checkpoints(
    store: CheckpointStore, backend: str, limit: int, offset: int
) -> types.CheckpointsListResponse:
    """Every live checkpoint of every run of this backend, newest first."""
    records = [c for run in runs_of(store, backend) for c in store.list_checkpoints(run.run_id)]
    records.sort(key=lambda c: (c.created, c.path), reverse=True)
    return types.CheckpointsListResponse(
        checkpoints=[to_checkpoint(c) for c in records[offset : offset + limit]],
        cursor=types.Cursor(offset=offset, limit=limit, total_count=len(records)),
    )


def _optimizer_of(store: CheckpointStore, record: CheckpointRecord) -> types.OptimizerConfig:
    """The optimizer named by the checkpoint's optimizer state, else by another training
    checkpoint of its run; AdamW (the default) when none names one."""
    candidates = [record] + [
        c for c in store.list_checkpoints(record.run_id) if c.kind == "weights" and c is not record
    ]
    for candidate in candidates:
        file = store.root / candidate.run_id / candidate.kind / candidate.name / OPTIMIZER_FILE
        if not file.is_file():
            continue
        with safe_open(str(file), framework="numpy") as f:
            if STATE_KEY in set(f.keys()):  # safe_open has no __contains__
                name = bytes(f.get_tensor(STATE_KEY).tobytes()).decode()
                if name == "dimuon":
                    return types.DimuonOptimizerConfig()
        return types.AdamOptimizerConfig()
    return types.AdamOptimizerConfig()


def weights_info(store: CheckpointStore, path: str) -> types.WeightsInfoResponse:
    record = live_record(store, body_path(path))
    lora = LoraConfig(**record.lora)
    return types.WeightsInfoResponse(
        base_model=record.base_model,
        optimizer_config=_optimizer_of(store, record),
        is_lora=True,
        lora_rank=lora.rank,
        train_unembed=lora.train_unembed,
        train_mlp=lora.train_mlp,
        train_attn=lora.train_attn,
    )


def set_ttl(store: CheckpointStore, path: str, ttl_seconds: int | None) -> None:
    checked_ttl(ttl_seconds)
    live_record(store, path)
    expires = None if ttl_seconds is None else (_now() + timedelta(seconds=ttl_seconds)).isoformat()
    store.update(path, expires_at=expires)


def set_public(store: CheckpointStore, path: str, public: bool) -> None:
    """Publish or unpublish; doing it twice is refused, as the service refuses it (HTTP
    409 there, which the SDK retries for minutes; 400 offline, at once)."""
    record = live_record(store, path)
    if bool(record.extra.get("public", False)) == public:
        state = "public" if public else "private"
        raise RestRequestError(
            f"Checkpoint {path} is already {state}; "
            f"{'unpublish' if public else 'publish'} it first to change that."
        )
    store.update(path, extra={**record.extra, "public": public})


def copy_weights(
    store: CheckpointStore, path: str, project_id: str, ttl_seconds: int | None
) -> str:
    """Copy a checkpoint into a new run of a new session in ``project_id`` (as the SDK
    documents: a new training run in a new session holds it); the copy's tinker path."""
    checked_ttl(ttl_seconds)
    source = live_record(store, body_path(path))
    session_id = new_session_id()
    store.sessions.ensure(
        session_id,
        source.backend,
        project_id=project_id,
        display_name=f"copy of {path}",
        pid=None,  # no process runs it: neither active nor finished
        host=None,
    )
    run = store.create_run(
        source.backend, source.base_model, LoraConfig(**source.lora), None, session_id=session_id
    )
    return store.copy(path, run, ttl_seconds=ttl_seconds).path


def checkpoint_bytes(store: CheckpointStore, record: CheckpointRecord) -> int:
    """The bytes of a checkpoint's files on disk (its record file excluded)."""
    return sum(f.stat().st_size for f in store.files(record.path).values())


def storage_usage(
    store: CheckpointStore, backend: str, project_id: str | None
) -> types.CurrentCheckpointStorageUsageResponse:
    """Live checkpoints of this backend by project: count and bytes on disk; no cost."""
    count: dict[str, int] = defaultdict(int)
    size: dict[str, int] = defaultdict(int)
    for run in runs_of(store, backend, project_id):
        project = project_of(store, run)
        for record in store.list_checkpoints(run.run_id):
            count[project] += 1
            size[project] += checkpoint_bytes(store, record)
    return types.CurrentCheckpointStorageUsageResponse(
        effective_rate_usd_per_gigabyte_month=None,
        data=[
            types.CurrentCheckpointStorageUsageItem(
                project_id=project,
                org_user_urn=local_user_urn(),
                user_name=local_user(),
                checkpoint_count=count[project],
                size_bytes=size[project],
                size_gigabytes=size[project] / GIGABYTE,
                estimated_monthly_cost_usd=None,
            )
            for project in sorted(count)
        ],
    )
