"""The offline ``RestClient``: tinker 0.38's REST surface over the offline store.

A subclass of ``tinker.RestClient`` with every public method of the SDK's, the same
parameters, return types (the SDK's ``APIFuture``) and deprecation warnings. Calls read
and write the ``TINKERKIT_HOME`` store, so a ``RestClient`` built on its own sees what
every ``tk.connect(...)`` of the same backend saved. What differs from the service is
listed in docs/backends.md ("The REST client offline").

Arguments are checked where the SDK checks them: a tinker path the SDK parses before
sending is a ``ValueError`` at the call; what the service refuses fails the future with
the SDK class its HTTP status becomes (``tinker.NotFoundError``, ``tinker.BadRequestError``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal, TypeVar

import tinker
from tinker import types
from tinker.lib.public_interfaces.api_future import APIFuture

from tinkerkit.backends import rest_runs, rest_sessions
from tinkerkit.backends.context import OfflineContext
from tinkerkit.backends.sdk_surface import mirrors
from tinkerkit.backends.sessions import local_identity
from tinkerkit.backends.store import CheckpointStore, parse_tinker_path, to_checkpoint
from tinkerkit.errors import CheckpointNotFoundError, InvalidTinkerPathError

T = TypeVar("T")
AccessScope = Literal["owned", "accessible"]
AuditEventType = Literal["all", "checkpoints", "projects", "teams", "organizations"]
URL_LIFETIME = timedelta(hours=1)


def _parsed(tinker_path: str) -> str:
    """A tinker path the SDK parses client-side: ``ValueError`` now if malformed."""
    parse_tinker_path(tinker_path)
    return tinker_path


def capabilities(context: OfflineContext) -> types.GetServerCapabilitiesResponse:
    """Every model the backend knows, trainable and sampleable, with its context length."""
    factory = context.factory
    models = []
    for name in factory.known_models():
        spec = factory.resolve(name)
        models.append(
            types.SupportedModel(
                model_name=name,
                max_context_length=spec.max_context_length,
                trainable=True,
                sampleable=True,
            )
        )
    return types.GetServerCapabilitiesResponse(supported_models=models)


@mirrors(tinker.RestClient)
class RestClient(tinker.RestClient):
    """Runs, checkpoints and sessions of an offline backend, as ``tinker.RestClient``.

    ``RestClient()`` picks the backend as ``tk.connect()`` does (``TINKERKIT_BACKEND``);
    ``RestClient(backend="mock")`` names it; ``tk.rest_client(service)`` gives the one of
    a ``ServiceClient``. Offline there is one user and no billing: see docs/backends.md.

    Example:
        >>> rest = RestClient(backend="mock")
        >>> page = rest.list_user_checkpoints(limit=10).result()
        >>> [c.tinker_path for c in page.checkpoints]
    """

    def __init__(
        self, context: OfflineContext | str | None = None, *, backend: str | None = None
    ) -> None:
        if isinstance(context, OfflineContext):
            if backend is not None and backend != context.backend:
                raise ValueError(
                    f"backend={backend!r} differs from the context's {context.backend!r}"
                )
            self._context = context
        else:
            from tinkerkit.backends.registry import engine_factory, resolve_backend

            name = resolve_backend(backend or context)
            if name == "tinker":
                raise ValueError(
                    "The 'tinker' backend is the real service: use tinker.RestClient() (or "
                    "tk.rest_client('tinker')). This RestClient runs the offline backends."
                )
            self._context = OfflineContext(factory=engine_factory(name))
        self._dispatcher = self._context.dispatcher("tinkerkit-rest", label="RestClient")

    def __repr__(self) -> str:
        return f"<tinkerkit RestClient backend={self._context.backend!r}>"

    @property
    def holder(self) -> Any:  # type: ignore[override]
        raise AttributeError(
            "offline RestClients have no InternalClientHolder (it is the SDK's HTTP layer)"
        )

    @property
    def _store(self) -> CheckpointStore:
        return self._context.store

    @property
    def _backend(self) -> str:
        return self._context.backend

    def _submit(self, kind: str, fn: Callable[[], T]) -> APIFuture[T]:
        return self._dispatcher.submit(kind, fn)

    def get_telemetry(self) -> None:
        return None

    def get_server_capabilities(self) -> APIFuture[types.GetServerCapabilitiesResponse]:
        """Models this backend serves, with their context lengths (as the service's REST API)."""
        return self._submit("get_server_capabilities", lambda: capabilities(self._context))

    # --- training runs -------------------------------------------------------------------

    def get_training_run(
        self, training_run_id: types.ModelID, access_scope: AccessScope = "owned"
    ) -> APIFuture[types.TrainingRun]:
        return self._submit(
            "get_training_run",
            lambda: rest_runs.training_run(self._store, self._store.get_run(training_run_id)),
        )

    async def get_training_run_async(
        self, training_run_id: types.ModelID, access_scope: AccessScope = "owned"
    ) -> types.TrainingRun:
        return await self.get_training_run(training_run_id, access_scope)

    def get_training_run_by_tinker_path(
        self, tinker_path: str, access_scope: AccessScope = "owned"
    ) -> APIFuture[types.TrainingRun]:
        run_id, _, _ = parse_tinker_path(tinker_path)
        return self.get_training_run(run_id, access_scope)

    async def get_training_run_by_tinker_path_async(
        self, tinker_path: str, access_scope: AccessScope = "owned"
    ) -> types.TrainingRun:
        return await self.get_training_run_by_tinker_path(tinker_path, access_scope)

    def list_training_runs(
        self,
        limit: int = 20,
        offset: int = 0,
        access_scope: AccessScope = "owned",
        project_id: str | None = None,
    ) -> APIFuture[types.TrainingRunsResponse]:
        """Training runs of this backend, newest first, with a cursor.

        Example:
            >>> page = rest.list_training_runs(limit=50).result()
            >>> [r.training_run_id for r in page.training_runs], page.cursor.total_count
        """
        return self._submit(
            "list_training_runs",
            lambda: rest_runs.list_training_runs(
                self._store, self._backend, limit, offset, project_id
            ),
        )

    async def list_training_runs_async(
        self,
        limit: int = 20,
        offset: int = 0,
        access_scope: AccessScope = "owned",
        project_id: str | None = None,
    ) -> types.TrainingRunsResponse:
        return await self.list_training_runs(limit, offset, access_scope, project_id)

    # --- checkpoints ---------------------------------------------------------------------

    def get_weights_info_by_tinker_path(
        self, tinker_path: str
    ) -> APIFuture[types.WeightsInfoResponse]:
        """Base model, LoRA rank and trained parts, and optimizer of a checkpoint.

        Example:
            >>> info = rest.get_weights_info_by_tinker_path(path).result()
            >>> info.base_model, info.lora_rank
        """
        return self._submit(
            "weights_info", lambda: rest_runs.weights_info(self._store, tinker_path)
        )

    def list_checkpoints(
        self, training_run_id: types.ModelID
    ) -> APIFuture[types.CheckpointsListResponse]:
        """Every live checkpoint (training, sampler, external) of one run, oldest first."""
        return self._submit(
            "list_checkpoints",
            lambda: types.CheckpointsListResponse(
                checkpoints=[
                    to_checkpoint(r) for r in self._store.list_checkpoints(training_run_id)
                ]
            ),
        )

    async def list_checkpoints_async(
        self, training_run_id: types.ModelID
    ) -> types.CheckpointsListResponse:
        return await self.list_checkpoints(training_run_id)

    def list_user_checkpoints(
        self, limit: int = 100, offset: int = 0
    ) -> APIFuture[types.CheckpointsListResponse]:
        """Every live checkpoint of every run of this backend, newest first, with a cursor.

        Example:
            >>> page = rest.list_user_checkpoints(limit=50).result()
            >>> page.cursor.total_count
        """
        return self._submit(
            "list_user_checkpoints",
            lambda: rest_runs.list_user_checkpoints(self._store, self._backend, limit, offset),
        )

    async def list_user_checkpoints_async(
        self, limit: int = 100, offset: int = 0
    ) -> types.CheckpointsListResponse:
        return await self.list_user_checkpoints(limit, offset)

    def get_external_weights_urls(
        self, tinker_path: str
    ) -> APIFuture[types.ExternalWeightsUrlsResponse]:
        """``file://`` URLs, one per file, for a checkpoint (the service signs https URLs)."""
        try:
            parse_tinker_path(tinker_path, ("external_weights",))
        except InvalidTinkerPathError:
            raise ValueError(
                "get_external_weights_urls only accepts external weights checkpoints "
                f"(tinker://<training_run_id>/external_weights/<name>), got {tinker_path!r}"
            ) from None

        def run() -> types.ExternalWeightsUrlsResponse:
            rest_runs.live_record(self._store, tinker_path)
            files = self._store.files(tinker_path)
            return types.ExternalWeightsUrlsResponse(
                urls={name: path.resolve().as_uri() for name, path in files.items()},
                expires=datetime.now(UTC) + URL_LIFETIME,
            )

        return self._submit("get_external_weights_urls", run)

    async def get_external_weights_urls_async(
        self, tinker_path: str
    ) -> types.ExternalWeightsUrlsResponse:
        return await self.get_external_weights_urls(tinker_path)

    def _delete(self, tinker_path: str) -> None:
        rest_runs.live_record(self._store, tinker_path)
        self._store.delete(tinker_path)

    def delete_checkpoint(
        self, training_run_id: types.ModelID, checkpoint_id: str
    ) -> APIFuture[None]:
        """Delete ``<checkpoint_id>`` (``weights/<name>``, ...) of a run."""
        path = f"tinker://{training_run_id}/{checkpoint_id}"

        def run() -> None:
            try:
                parse_tinker_path(path)
            except InvalidTinkerPathError:
                # Not a checkpoint id at all: the run has no such checkpoint (404).
                raise CheckpointNotFoundError(path, str(self._store.root)) from None
            self._delete(path)

        return self._submit("delete_checkpoint", run)

    async def delete_checkpoint_async(
        self, training_run_id: types.ModelID, checkpoint_id: str
    ) -> None:
        await self.delete_checkpoint(training_run_id, checkpoint_id)

    def delete_checkpoint_from_tinker_path(self, tinker_path: str) -> APIFuture[None]:
        _parsed(tinker_path)
        return self._submit("delete_checkpoint", lambda: self._delete(tinker_path))

    async def delete_checkpoint_from_tinker_path_async(self, tinker_path: str) -> None:
        await self.delete_checkpoint_from_tinker_path(tinker_path)

    def set_checkpoint_ttl_from_tinker_path(
        self, tinker_path: str, ttl_seconds: int | None
    ) -> APIFuture[None]:
        """Expire the checkpoint ``ttl_seconds`` from now (3600 s to 10 years), or never
        (None). Out of bounds fails the future with ``tinker.BadRequestError``."""
        _parsed(tinker_path)
        return self._submit(
            "set_checkpoint_ttl",
            lambda: rest_runs.set_ttl(self._store, tinker_path, ttl_seconds),
        )

    async def set_checkpoint_ttl_from_tinker_path_async(
        self, tinker_path: str, ttl_seconds: int | None
    ) -> None:
        await self.set_checkpoint_ttl_from_tinker_path(tinker_path, ttl_seconds)

    def publish_checkpoint_from_tinker_path(self, tinker_path: str) -> APIFuture[None]:
        """Mark the checkpoint public (``Checkpoint.public``); offline that is a flag only.
        Publishing a public checkpoint fails with ``tinker.BadRequestError``."""
        _parsed(tinker_path)
        return self._submit(
            "publish_checkpoint", lambda: rest_runs.set_public(self._store, tinker_path, True)
        )

    async def publish_checkpoint_from_tinker_path_async(self, tinker_path: str) -> None:
        await self.publish_checkpoint_from_tinker_path(tinker_path)

    def unpublish_checkpoint_from_tinker_path(self, tinker_path: str) -> APIFuture[None]:
        """Mark the checkpoint private again; a private one fails with ``BadRequestError``."""
        _parsed(tinker_path)
        return self._submit(
            "unpublish_checkpoint", lambda: rest_runs.set_public(self._store, tinker_path, False)
        )

    async def unpublish_checkpoint_from_tinker_path_async(self, tinker_path: str) -> None:
        await self.unpublish_checkpoint_from_tinker_path(tinker_path)

    def copy_weights(
        self,
        path: str,
        destination_project_id: str | None = None,
        *,
        ttl_seconds: int | None = None,
        weights_access_token: str | None = None,
    ) -> APIFuture[str]:
        """Copy a checkpoint (same kind) into a new run of a new session in
        ``destination_project_id`` (default ``TINKER_PROJECT_ID``); a future of the copy's
        tinker path. ``weights_access_token`` is not needed offline (one account).

        Example:
            >>> copy = rest.copy_weights(path, "archive").result()
            >>> service.create_training_client_from_state(copy).result()
        """
        if destination_project_id is None:
            destination_project_id = os.environ.get("TINKER_PROJECT_ID") or None
        if destination_project_id is None:
            raise ValueError("Provide destination_project_id or set TINKER_PROJECT_ID")
        project = destination_project_id
        return self._submit(
            "copy_weights",
            lambda: rest_runs.copy_weights(self._store, path, project, ttl_seconds),
        )

    async def copy_weights_async(
        self,
        path: str,
        destination_project_id: str | None = None,
        *,
        ttl_seconds: int | None = None,
        weights_access_token: str | None = None,
    ) -> str:
        return await self.copy_weights(
            path,
            destination_project_id,
            ttl_seconds=ttl_seconds,
            weights_access_token=weights_access_token,
        )

    # --- sessions and samplers -----------------------------------------------------------

    def get_session(
        self, session_id: str, access_scope: AccessScope = "owned"
    ) -> APIFuture[types.GetSessionResponse]:
        """A session's training runs (oldest first), samplers, metadata and display name.

        Example:
            >>> session = rest.get_session(service.session_id).result()
            >>> session.training_run_ids
        """
        return self._submit(
            "get_session",
            lambda: rest_sessions.get_session(self._store, self._backend, session_id),
        )

    async def get_session_async(
        self, session_id: str, access_scope: AccessScope = "owned"
    ) -> types.GetSessionResponse:
        return await self.get_session(session_id, access_scope)

    def list_sessions(
        self, limit: int = 20, offset: int = 0, access_scope: AccessScope = "owned"
    ) -> APIFuture[types.ListSessionsResponse]:
        """Ids of this backend's sessions, newest first."""
        return self._submit(
            "list_sessions",
            lambda: rest_sessions.list_sessions(self._store, self._backend, limit, offset),
        )

    async def list_sessions_async(
        self, limit: int = 20, offset: int = 0, access_scope: AccessScope = "owned"
    ) -> types.ListSessionsResponse:
        return await self.list_sessions(limit, offset, access_scope)

    def assign_session_project(self, session_id: str, project_id: str) -> APIFuture[None]:
        return self._submit(
            "assign_session_project",
            lambda: rest_sessions.assign_project(
                self._store, self._backend, session_id, project_id
            ),
        )

    async def assign_session_project_async(self, session_id: str, project_id: str) -> None:
        await self.assign_session_project(session_id, project_id)

    def search_sessions(
        self, request: types.SessionSearchRequest
    ) -> APIFuture[types.SessionSearchResponse]:
        """Sessions matching ``request``, newest first, a page at a time (``next_cursor``).
        Offline every session is the caller's own; none is ever cancelled or failed.

        Example:
            >>> page = rest.search_sessions(types.SessionSearchRequest(display_name="nightly"))
            >>> [s.session_id for s in page.result().sessions]
        """
        return self._submit(
            "search_sessions",
            lambda: rest_sessions.search_sessions(self._store, self._backend, request),
        )

    def export_session_trace(self, session_id: str) -> APIFuture[str]:
        """A ``file://`` URL of a Chrome/Perfetto JSON trace of the session: its runs and
        their checkpoints, and its samplers (open it in https://ui.perfetto.dev).

        Example:
            >>> url = rest.export_session_trace(service.session_id).result()
        """
        return self._submit(
            "export_session_trace",
            lambda: rest_sessions.export_trace(self._store, self._backend, session_id),
        )

    async def export_session_trace_async(self, session_id: str) -> str:
        return await self.export_session_trace(session_id)

    def whoami(self) -> APIFuture[types.WhoamiResponse]:
        """The local identity: ``tinkerkit:local:<os user>`` (no key, no email).

        Example:
            >>> rest.whoami().result().user_urn
            'tinkerkit:local:alice'
        """
        return self._submit("whoami", local_identity)

    def get_sampler(self, sampler_id: str) -> APIFuture[types.GetSamplerResponse]:
        return self._submit(
            "get_sampler",
            lambda: rest_sessions.get_sampler(self._store, self._backend, sampler_id),
        )

    async def get_sampler_async(self, sampler_id: str) -> types.GetSamplerResponse:
        return await self.get_sampler(sampler_id)

    # --- admin (deprecated on RestClient in 0.38) ----------------------------------------

    def _audit_log(self) -> APIFuture[types.AuditLogResponse]:
        # Offline keeps no audit log: one user, nothing to audit.
        return self._submit("get_audit_log", lambda: types.AuditLogResponse(entries=[]))

    def get_audit_log(
        self, event_type: AuditEventType = "all", day: date | None = None
    ) -> APIFuture[types.AuditLogResponse]:
        """Offline: an empty audit log (one user, nothing audited)."""
        return self._audit_log()

    async def get_audit_log_async(
        self, event_type: AuditEventType = "all", day: date | None = None
    ) -> types.AuditLogResponse:
        """Offline: an empty audit log (one user, nothing audited)."""
        return await self._audit_log()

    def _billing_usage(
        self, starting_on: datetime | str, ending_before: datetime | str
    ) -> APIFuture[types.BillingUsageResponse]:
        # Validated as the SDK validates it (a ValueError now); offline nothing is billed.
        types.GetBillingUsageRequest.model_validate(
            {"starting_on": starting_on, "ending_before": ending_before}
        )
        return self._submit("get_billing_usage", lambda: types.BillingUsageResponse(data=[]))

    def get_billing_usage(
        self, starting_on: datetime | str, ending_before: datetime | str
    ) -> APIFuture[types.BillingUsageResponse]:
        """Offline: no usage events (nothing is billed)."""
        return self._billing_usage(starting_on, ending_before)

    async def get_billing_usage_async(
        self, starting_on: datetime | str, ending_before: datetime | str
    ) -> types.BillingUsageResponse:
        """Offline: no usage events (nothing is billed)."""
        return await self._billing_usage(starting_on, ending_before)

    def _storage_usage(
        self, project_id: str | None
    ) -> APIFuture[types.CurrentCheckpointStorageUsageResponse]:
        types.GetCurrentCheckpointStorageUsageRequest(project_id=project_id)
        return self._submit(
            "get_current_checkpoint_storage_usage",
            lambda: rest_runs.storage_usage(self._store, self._backend, project_id),
        )

    def get_current_checkpoint_storage_usage(
        self, project_id: str | None = None
    ) -> APIFuture[types.CurrentCheckpointStorageUsageResponse]:
        """Live checkpoints of this backend by project: count and bytes on disk (no cost)."""
        return self._storage_usage(project_id)

    async def get_current_checkpoint_storage_usage_async(
        self, project_id: str | None = None
    ) -> types.CurrentCheckpointStorageUsageResponse:
        """Live checkpoints of this backend by project: count and bytes on disk (no cost)."""
        return await self._storage_usage(project_id)


__all__ = ["RestClient"]
