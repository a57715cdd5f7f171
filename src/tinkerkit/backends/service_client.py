"""The offline ``ServiceClient``: a ``tinker.ServiceClient`` whose clients run offline.

It is a real subclass of ``tinker.ServiceClient`` with the same methods, arguments,
return types (the SDK's own back-compat client futures) and deprecation warnings, so
``isinstance`` checks and ``with`` blocks written for the service hold offline.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Literal, Self

import tinker
from tinker import types
from tinker.lib.public_interfaces.api_future import APIFuture, AwaitableConcurrentFuture
from tinker.lib.public_interfaces.backcompat_sampling_client_future import (
    BackcompatSamplingClientFuture,
)
from tinker.lib.public_interfaces.backcompat_training_client_future import (
    BackcompatTrainingClientFuture,
)
from tinker.lib.public_interfaces.custom_loss import LossHandle, PerDatumLossFn, trace_loss

from tinkerkit.backends.context import OfflineContext
from tinkerkit.backends.engine import EngineState, LoraConfig, load, new_engine
from tinkerkit.backends.futures import done_future, plain
from tinkerkit.backends.limits import check_lora_rank

# capabilities and sampling_client_from_path live with the clients that need them (no
# import cycle back to this module); importing them from here still works.
from tinkerkit.backends.rest_client import RestClient, capabilities
from tinkerkit.backends.sampling_client import SamplingClient, sampling_client_from_path
from tinkerkit.backends.sdk_surface import mirrors
from tinkerkit.backends.store import parse_tinker_path
from tinkerkit.backends.training_client import TrainingClient
from tinkerkit.errors import WrongCheckpointKindError

CloseStatus = Literal["success", "errored", "interrupted"]


def base_model_tokenizer(service: object, base_model: str) -> Any | None:
    """The tokenizer that an offline ``service``'s training clients on ``base_model``
    will have, found without creating anything (no run, no session record); None for any
    other client (the SDK's, a served one), whose tokenizer only the service knows.
    Unknown names raise ``UnknownModelError``, as creating the client would.

    Example:
        >>> base_model_tokenizer(tk.connect("mock"), "tinkerkit/tiny").encode("hi")
        [104, 105]
    """
    if not isinstance(service, ServiceClient):
        return None
    factory = service._context.factory
    return factory.tokenizer(factory.resolve(base_model))


@mirrors(tinker.ServiceClient)
class ServiceClient(tinker.ServiceClient):
    """Entry point of an offline backend. Create it with ``tk.connect("mock")``.

    Example:
        >>> with tk.connect("mock") as service:
        ...     training = service.create_lora_training_client(base_model="tinkerkit/tiny").result()
    """

    def __init__(
        self,
        context: OfflineContext,
        user_metadata: dict[str, str] | None = None,
        project_id: str | None = None,
        *,
        display_name: str | None = None,
    ) -> None:
        self._context = context
        self._dispatcher = context.dispatcher(
            "tinkerkit-service", label=f"ServiceClient ({context.backend})"
        )
        self._user_metadata = dict(user_metadata) if user_metadata else None
        self._project_id = project_id or os.environ.get("TINKER_PROJECT_ID") or None
        self._display_name = display_name
        self._lifecycle_lock = threading.Lock()
        self._closed = False
        context.open_session(self._user_metadata, self._project_id, display_name)

    def __repr__(self) -> str:
        latency = f", latency={self._context.latency}s" if self._context.latency else ""
        return f"<tinkerkit ServiceClient backend={self._context.backend!r}{latency}>"

    @property
    def backend(self) -> str:
        """Which offline backend this is (``"mock"`` or ``"local"``)."""
        return self._context.backend

    @property
    def session_id(self) -> str:
        """The offline session's id (custom losses and recorded samples are scoped to it)."""
        return self._context.session_id

    @property
    def holder(self) -> Any:
        raise AttributeError(
            "offline ServiceClients have no InternalClientHolder (it is the SDK's HTTP layer)"
        )

    # --- lifecycle -----------------------------------------------------------------------

    def __enter__(self) -> Self:
        with self._lifecycle_lock:
            if self._closed:
                raise RuntimeError("ServiceClient is closed")
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        status: CloseStatus
        if exc_type is None:
            status = "success"
        elif issubclass(exc_type, Exception):
            status = "errored"
        else:
            status = "interrupted"
        self.close(status).result()

    def close(
        self, status: CloseStatus, detail: str | None = None
    ) -> AwaitableConcurrentFuture[None]:
        """Finish the session: later requests from this client and its training and
        sampling clients are refused (``RuntimeError``), as on the service."""
        if status not in ("success", "errored", "interrupted"):
            raise ValueError(
                f"status must be 'success', 'errored' or 'interrupted', got {status!r}"
            )
        with self._lifecycle_lock:
            if not self._closed:
                self._closed = True
                self._context.closed = True
                self._context.finish_session(status, detail)
        return done_future(None)

    def _check_open(self) -> None:
        with self._lifecycle_lock:
            if self._closed:
                raise RuntimeError("ServiceClient is closed")

    def get_console_url(self) -> str:
        """Offline there is no console: the folder of this backend's runs."""
        return self._context.store.root.resolve().as_uri()

    def get_telemetry(self) -> None:
        return None

    # --- training clients ----------------------------------------------------------------

    def _new_training_client(
        self,
        base_model: str,
        lora: LoraConfig,
        user_metadata: dict[str, str] | None,
        optimizer: types.OptimizerConfig | None,
    ) -> TrainingClient:
        context = self._context
        spec = context.factory.resolve(base_model)
        engine = new_engine(context.factory, spec, lora, optimizer)
        run = context.store.create_run(
            self.backend, base_model, lora, user_metadata, session_id=context.session_id
        )
        return TrainingClient(context, engine, run, optimizer)

    def create_lora_training_client(
        self,
        base_model: str,
        rank: int = 32,
        seed: int | None = None,
        train_mlp: bool = True,
        train_attn: bool = True,
        train_unembed: bool = True,
        user_metadata: dict[str, str] | None = None,
        optimizer: types.OptimizerConfig | None = None,
    ) -> BackcompatTrainingClientFuture:
        """A future of a new LoRA training client on ``base_model``.

        Example:
            >>> training = service.create_lora_training_client(base_model="tinkerkit/tiny").result()
        """
        self._check_open()
        if not (train_mlp or train_attn or train_unembed):
            raise AssertionError(
                "At least one of train_mlp, train_attn, or train_unembed must be True"
            )
        # Built here, as the SDK builds it: a wrong type fails now, with pydantic's message.
        config = types.LoraConfig(
            rank=rank,
            seed=seed,
            train_mlp=train_mlp,
            train_attn=train_attn,
            train_unembed=train_unembed,
        )

        def create() -> TrainingClient:
            # Before any allocation: rank 10**8 was a MemoryError.
            lora = LoraConfig(
                check_lora_rank(config.rank), seed, train_mlp, train_attn, train_unembed
            )
            return self._new_training_client(base_model, lora, user_metadata, optimizer)

        future = self._dispatcher.submit("create_model", create)
        return BackcompatTrainingClientFuture(plain(future))

    async def create_lora_training_client_async(
        self,
        base_model: str,
        rank: int = 32,
        seed: int | None = None,
        train_mlp: bool = True,
        train_attn: bool = True,
        train_unembed: bool = True,
        user_metadata: dict[str, str] | None = None,
        optimizer: types.OptimizerConfig | None = None,
    ) -> tinker.TrainingClient:
        return await self.create_lora_training_client(
            base_model, rank, seed, train_mlp, train_attn, train_unembed, user_metadata, optimizer
        )

    def _from_state(
        self,
        path: str,
        with_optimizer: bool,
        base_model: str | None,
        user_metadata: dict[str, str] | None,
        optimizer: types.OptimizerConfig | None,
    ) -> BackcompatTrainingClientFuture:
        self._check_open()
        context = self._context

        def create() -> TrainingClient:
            _, kind, _ = parse_tinker_path(path)
            if kind != "weights":
                raise WrongCheckpointKindError(path, "create_training_client_from_state", "weights")
            loaded = context.store.load(
                path, with_optimizer=with_optimizer, backend=context.backend
            )
            model = base_model or loaded.record.base_model
            spec = context.factory.resolve(model)
            lora = LoraConfig(**loaded.record.lora)
            check_lora_rank(lora.rank)  # a hand-edited record: refused before allocating
            config = optimizer
            if with_optimizer and loaded.optimizer is not None:
                config = optimizer_config_of(loaded.optimizer)
            engine = new_engine(context.factory, spec, lora, config)
            load(engine, EngineState(loaded.weights, loaded.optimizer))
            run = context.store.create_run(
                self.backend, model, lora, user_metadata, session_id=context.session_id
            )
            return TrainingClient(context, engine, run, config)

        future = self._dispatcher.submit("create_model", create)
        return BackcompatTrainingClientFuture(plain(future))

    def create_training_client_from_state(
        self,
        path: str,
        base_model: str | None = None,
        user_metadata: dict[str, str] | None = None,
        weights_access_token: str | None = None,
        optimizer: types.OptimizerConfig | None = None,
    ) -> BackcompatTrainingClientFuture:
        """A new training run starting from a ``weights`` checkpoint (fresh optimizer)."""
        return self._from_state(path, False, base_model, user_metadata, optimizer)

    async def create_training_client_from_state_async(
        self,
        path: str,
        base_model: str | None = None,
        user_metadata: dict[str, str] | None = None,
        weights_access_token: str | None = None,
        optimizer: types.OptimizerConfig | None = None,
    ) -> tinker.TrainingClient:
        return await self.create_training_client_from_state(
            path,
            base_model=base_model,
            user_metadata=user_metadata,
            weights_access_token=weights_access_token,
            optimizer=optimizer,
        )

    def create_training_client_from_state_with_optimizer(
        self,
        path: str,
        base_model: str | None = None,
        user_metadata: dict[str, str] | None = None,
        weights_access_token: str | None = None,
    ) -> BackcompatTrainingClientFuture:
        """A new training run from a ``weights`` checkpoint, with its optimizer and state."""
        return self._from_state(path, True, base_model, user_metadata, None)

    async def create_training_client_from_state_with_optimizer_async(
        self,
        path: str,
        base_model: str | None = None,
        user_metadata: dict[str, str] | None = None,
        weights_access_token: str | None = None,
    ) -> tinker.TrainingClient:
        return await self.create_training_client_from_state_with_optimizer(
            path,
            base_model=base_model,
            user_metadata=user_metadata,
            weights_access_token=weights_access_token,
        )

    # --- sampling clients ----------------------------------------------------------------

    def create_sampling_client(
        self,
        model_path: str | None = None,
        base_model: str | None = None,
        retry_config: Any = None,
        record_stability_info: bool = False,
    ) -> BackcompatSamplingClientFuture:
        """A sampling client on a ``sampler_weights`` checkpoint, or on a base model."""
        self._check_open()
        if model_path is None and base_model is None:
            raise ValueError("Either model_path or base_model must be provided")
        context = self._context

        def create() -> SamplingClient:
            if model_path is not None:
                return sampling_client_from_path(context, model_path, record_stability_info)
            assert base_model is not None
            spec = context.factory.resolve(base_model)
            return SamplingClient(
                context,
                new_engine(context.factory, spec, None),
                None,
                base_model=base_model,
                record_stability_info=record_stability_info,
            )

        def create_noted() -> SamplingClient:
            client = create()
            context.note_sampler(client.sampler_id, client.get_base_model(), client.model_path)
            return client

        future = self._dispatcher.submit("create_sampling_session", create_noted)
        return BackcompatSamplingClientFuture(plain(future))

    async def create_sampling_client_async(
        self,
        model_path: str | None = None,
        base_model: str | None = None,
        retry_config: Any = None,
        record_stability_info: bool = False,
    ) -> tinker.SamplingClient:
        return await self.create_sampling_client(
            model_path=model_path,
            base_model=base_model,
            retry_config=retry_config,
            record_stability_info=record_stability_info,
        )

    # --- custom losses, weights, REST ---------------------------------------------------------

    def create_custom_loss(
        self, fn: PerDatumLossFn, input_ranks: Mapping[str, types.CustomLossInputRank]
    ) -> APIFuture[LossHandle]:
        """A ``LossHandle`` for ``forward_backward_custom``: ``fn`` is traced and checked by
        the SDK's own tracer and runs client-side, per datum, as the SDK runs it when the
        server does not host custom losses.

        Example:
            >>> def neg_ll(logprobs, weights):
            ...     loss = -(logprobs * weights).sum()
            ...     return loss, {"custom/neg_ll:sum": loss}
            >>> handle = service.create_custom_loss(neg_ll, {"logprobs": 1, "weights": 1}).result()
            >>> training.forward_backward_custom(data, handle).result().metrics
        """
        self._check_open()
        return done_future(trace_loss(fn, input_ranks, self._context.session_id))

    def copy_weights(
        self,
        path: str,
        *,
        ttl_seconds: int | None = None,
        weights_access_token: str | None = None,
    ) -> APIFuture[str]:
        """Copy a checkpoint into this client's project; a future of the copy's path."""
        return self._rest().copy_weights(
            path,
            destination_project_id=self._project_id,
            ttl_seconds=ttl_seconds,
            weights_access_token=weights_access_token,
        )

    def _rest(self) -> RestClient:
        return RestClient(self._context)

    def create_rest_client(self) -> RestClient:
        return self._rest()

    # --- info ----------------------------------------------------------------------------

    def get_server_capabilities(self) -> types.GetServerCapabilitiesResponse:
        return capabilities(self._context)

    async def get_server_capabilities_async(self) -> types.GetServerCapabilitiesResponse:
        return capabilities(self._context)


def optimizer_config_of(state: dict[str, Any]) -> types.OptimizerConfig | None:
    """The optimizer a saved optimizer state belongs to (None: AdamW, the default)."""
    kind = state.get("optimizer")
    if kind is None:
        return None
    name = bytes(kind.tobytes()).decode() if hasattr(kind, "tobytes") else str(kind)
    if name == "dimuon":
        return types.DimuonOptimizerConfig()
    return None
