"""The offline ``RestClient``: runs, checkpoints, and download URLs for external weights."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, TypeVar

from tinker import types
from tinker.lib.public_interfaces.api_future import APIFuture

from tinkerkit.backends.context import OfflineContext
from tinkerkit.backends.store import RunRecord, parse_tinker_path, to_checkpoint

T = TypeVar("T")
URL_LIFETIME = timedelta(hours=1)


class RestClient:
    """Lists runs and checkpoints of this backend's store, and hands out file URLs."""

    def __init__(self, context: OfflineContext) -> None:
        self._context = context
        self._dispatcher = context.dispatcher("tinkerkit-rest")

    def _submit(self, kind: str, fn: Callable[[], T]) -> APIFuture[T]:
        return self._dispatcher.submit(kind, fn)

    def _training_run(self, run: RunRecord) -> types.TrainingRun:
        checkpoints = self._context.store.list_checkpoints(run.run_id)
        last = {kind: None for kind in ("weights", "sampler_weights")}
        for record in checkpoints:
            if record.kind in last:
                last[record.kind] = record  # type: ignore[assignment]
        latest_time = max([run.created, *(c.created for c in checkpoints)])
        return types.TrainingRun(
            training_run_id=run.run_id,
            base_model=run.base_model,
            model_owner="local",
            is_lora=True,
            lora_rank=run.lora.get("rank"),
            last_request_time=datetime.fromisoformat(latest_time),
            last_checkpoint=to_checkpoint(last["weights"]) if last["weights"] else None,
            last_sampler_checkpoint=to_checkpoint(last["sampler_weights"])
            if last["sampler_weights"]
            else None,
            user_metadata=run.user_metadata,
        )

    def get_server_capabilities(self) -> APIFuture[types.GetServerCapabilitiesResponse]:
        """Models this backend serves, with their context lengths (as the service's REST API)."""
        from tinkerkit.backends.service_client import capabilities

        return self._submit("get_server_capabilities", lambda: capabilities(self._context))

    def list_training_runs(
        self,
        limit: int = 20,
        offset: int = 0,
        access_scope: Literal["owned", "accessible"] = "owned",
        project_id: str | None = None,
    ) -> APIFuture[types.TrainingRunsResponse]:
        """Training runs of this backend, newest first.

        Example:
            >>> rest = service.create_rest_client()
            >>> [r.training_run_id for r in rest.list_training_runs().result().training_runs]
        """

        def run() -> types.TrainingRunsResponse:
            runs = [
                r for r in self._context.store.list_runs() if r.backend == self._context.backend
            ]
            page = runs[offset : offset + limit]
            return types.TrainingRunsResponse(
                training_runs=[self._training_run(r) for r in page],
                cursor=types.Cursor(offset=offset, limit=limit, total_count=len(runs)),
            )

        return self._submit("list_training_runs", run)

    def get_training_run(
        self, training_run_id: str, access_scope: str = "owned"
    ) -> APIFuture[types.TrainingRun]:
        return self._submit(
            "get_training_run",
            lambda: self._training_run(self._context.store.get_run(training_run_id)),
        )

    def get_training_run_by_tinker_path(
        self, tinker_path: str, access_scope: str = "owned"
    ) -> APIFuture[types.TrainingRun]:
        run_id, _, _ = parse_tinker_path(tinker_path)
        return self.get_training_run(run_id)

    def list_checkpoints(self, training_run_id: str) -> APIFuture[types.CheckpointsListResponse]:
        """Every checkpoint (training, sampler, external) of one run, oldest first."""
        return self._submit(
            "list_checkpoints",
            lambda: types.CheckpointsListResponse(
                checkpoints=[
                    to_checkpoint(r) for r in self._context.store.list_checkpoints(training_run_id)
                ]
            ),
        )

    def get_external_weights_urls(
        self, tinker_path: str
    ) -> APIFuture[types.ExternalWeightsUrlsResponse]:
        """``file://`` URLs, one per file, for a checkpoint (the service signs https URLs)."""
        parse_tinker_path(tinker_path, ("external_weights",))

        def run() -> types.ExternalWeightsUrlsResponse:
            files = self._context.store.files(tinker_path)
            return types.ExternalWeightsUrlsResponse(
                urls={name: path.resolve().as_uri() for name, path in files.items()},
                expires=datetime.now(UTC) + URL_LIFETIME,
            )

        return self._submit("get_external_weights_urls", run)

    def delete_checkpoint_from_tinker_path(self, tinker_path: str) -> APIFuture[None]:
        parse_tinker_path(tinker_path)
        return self._submit("delete_checkpoint", lambda: self._context.store.delete(tinker_path))

    # --- async spellings (return results, as the SDK's RestClient does) -----------------------

    async def list_training_runs_async(self, *a: Any, **k: Any) -> types.TrainingRunsResponse:
        return await self.list_training_runs(*a, **k)

    async def get_training_run_async(self, *a: Any, **k: Any) -> types.TrainingRun:
        return await self.get_training_run(*a, **k)

    async def list_checkpoints_async(self, *a: Any, **k: Any) -> types.CheckpointsListResponse:
        return await self.list_checkpoints(*a, **k)

    async def get_external_weights_urls_async(
        self, *a: Any, **k: Any
    ) -> types.ExternalWeightsUrlsResponse:
        return await self.get_external_weights_urls(*a, **k)

    async def delete_checkpoint_from_tinker_path_async(self, tinker_path: str) -> None:
        await self.delete_checkpoint_from_tinker_path(tinker_path)
