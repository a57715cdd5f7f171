"""The offline ``ServiceClient``: same methods and types as ``tinker.ServiceClient``."""

from __future__ import annotations

from typing import Any

from tinker import types

from tinkerkit.backends.context import ClientFuture, OfflineContext
from tinkerkit.backends.engine import LoraConfig
from tinkerkit.backends.rest_client import RestClient
from tinkerkit.backends.sampling_client import SamplingClient
from tinkerkit.backends.store import parse_tinker_path
from tinkerkit.backends.training_client import TrainingClient
from tinkerkit.errors import InvalidTinkerPathError


def sampling_client_from_path(context: OfflineContext, model_path: str) -> SamplingClient:
    """A sampling client on a saved checkpoint (any of the three kinds)."""
    store = context.store
    loaded = store.load(model_path)
    spec = context.factory.resolve(loaded.record.base_model)
    engine = context.factory.create(spec, LoraConfig(**loaded.record.lora))
    engine.set_weights(loaded.weights)
    return SamplingClient(context, engine, model_path)


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


class ServiceClient:
    """Entry point of an offline backend. Create it with ``tk.connect("mock")``.

    Example:
        >>> service = tk.connect("mock")
        >>> training = service.create_lora_training_client(base_model="tinkerkit/tiny").result()
    """

    def __init__(self, context: OfflineContext) -> None:
        self._context = context
        self._dispatcher = context.dispatcher("tinkerkit-service")

    def __repr__(self) -> str:
        latency = f", latency={self._context.latency}s" if self._context.latency else ""
        return f"<tinkerkit ServiceClient backend={self._context.backend!r}{latency}>"

    @property
    def backend(self) -> str:
        """Which offline backend this is (``"mock"`` or ``"local"``)."""
        return self._context.backend

    # --- training clients ----------------------------------------------------------------

    def create_lora_training_client(
        self,
        base_model: str,
        rank: int = 32,
        seed: int | None = None,
        train_mlp: bool = True,
        train_attn: bool = True,
        train_unembed: bool = True,
        user_metadata: dict[str, str] | None = None,
        optimizer: Any = None,
    ) -> ClientFuture[TrainingClient]:
        """A future of a new LoRA training client on ``base_model``."""
        if not isinstance(rank, int) or rank < 1:
            raise ValueError(f"rank must be a positive integer, got {rank!r}")
        if not (train_mlp or train_attn or train_unembed):
            raise ValueError("at least one of train_mlp, train_attn, train_unembed must be True")
        lora = LoraConfig(rank, seed, train_mlp, train_attn, train_unembed)

        def create() -> TrainingClient:
            spec = self._context.factory.resolve(base_model)
            engine = self._context.factory.create(spec, lora)
            run = self._context.store.create_run(self.backend, base_model, lora, user_metadata)
            return TrainingClient(self._context, engine, run)

        return ClientFuture(self._dispatcher.submit("create_model", create).future())

    def _from_state(
        self, path: str, with_optimizer: bool, base_model: str | None, user_metadata: Any
    ) -> ClientFuture[TrainingClient]:
        parse_tinker_path(path, ("weights",))

        def create() -> TrainingClient:
            loaded = self._context.store.load(path, with_optimizer=with_optimizer)
            model = base_model or loaded.record.base_model
            spec = self._context.factory.resolve(model)
            lora = LoraConfig(**loaded.record.lora)
            engine = self._context.factory.create(spec, lora)
            engine.set_weights(loaded.weights)
            if loaded.optimizer is not None:
                engine.set_optimizer_state(loaded.optimizer)
            run = self._context.store.create_run(self.backend, model, lora, user_metadata)
            return TrainingClient(self._context, engine, run)

        return ClientFuture(self._dispatcher.submit("create_model", create).future())

    def create_training_client_from_state(
        self,
        path: str,
        base_model: str | None = None,
        user_metadata: dict[str, str] | None = None,
        weights_access_token: str | None = None,
        optimizer: Any = None,
    ) -> ClientFuture[TrainingClient]:
        """A new training run starting from a ``weights`` checkpoint (fresh optimizer)."""
        return self._from_state(path, False, base_model, user_metadata)

    def create_training_client_from_state_with_optimizer(
        self,
        path: str,
        base_model: str | None = None,
        user_metadata: dict[str, str] | None = None,
        weights_access_token: str | None = None,
    ) -> ClientFuture[TrainingClient]:
        """A new training run from a ``weights`` checkpoint, with its Adam state."""
        return self._from_state(path, True, base_model, user_metadata)

    # --- sampling clients ----------------------------------------------------------------

    def create_sampling_client(
        self,
        model_path: str | None = None,
        base_model: str | None = None,
        retry_config: Any = None,
        record_stability_info: bool = False,
    ) -> ClientFuture[SamplingClient]:
        """A sampling client on a checkpoint (``model_path``) or a base model."""
        if (model_path is None) == (base_model is None):
            raise ValueError("Pass exactly one of model_path or base_model")
        if model_path is not None and not model_path.startswith("tinker://"):
            raise InvalidTinkerPathError(model_path, "sampler_weights, weights or external_weights")

        def create() -> SamplingClient:
            if model_path is not None:
                return sampling_client_from_path(self._context, model_path)
            assert base_model is not None
            spec = self._context.factory.resolve(base_model)
            return SamplingClient(self._context, self._context.factory.create(spec, None), None)

        return ClientFuture(self._dispatcher.submit("create_sampling_session", create).future())

    def create_rest_client(self) -> RestClient:
        return RestClient(self._context)

    # --- info ----------------------------------------------------------------------------

    def get_server_capabilities(self) -> types.GetServerCapabilitiesResponse:
        return capabilities(self._context)

    async def get_server_capabilities_async(self) -> types.GetServerCapabilitiesResponse:
        return self.get_server_capabilities()

    # --- deprecated-in-0.38 async spellings ------------------------------------------------

    async def create_lora_training_client_async(self, *a: Any, **k: Any) -> TrainingClient:
        return await self.create_lora_training_client(*a, **k)

    async def create_training_client_from_state_async(self, *a: Any, **k: Any) -> TrainingClient:
        return await self.create_training_client_from_state(*a, **k)

    async def create_training_client_from_state_with_optimizer_async(
        self, *a: Any, **k: Any
    ) -> TrainingClient:
        return await self.create_training_client_from_state_with_optimizer(*a, **k)

    async def create_sampling_client_async(self, *a: Any, **k: Any) -> SamplingClient:
        return await self.create_sampling_client(*a, **k)
