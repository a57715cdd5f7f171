"""The offline ``TrainingClient``: a ``tinker.TrainingClient`` whose requests run on an engine.

Every request runs on this client's dispatcher in submission order, so
``forward_backward`` then ``optim_step`` submitted without waiting apply in order.
Gradients accumulate (sum) across ``forward_backward`` calls until ``optim_step``.
A request the service would refuse (bad datum, unknown loss, ...) fails its own future
only; a failed ``forward_backward_custom`` stops the client, as the SDK does.

Arguments are checked where the SDK checks them: what the SDK refuses before sending
(no data, two optimizer parameter sets, a custom loss without ``target_tokens``) raises
at the call, what the service refuses fails the future.
"""

from __future__ import annotations

import logging
import threading
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args

import tinker
from tinker import types
from tinker.lib.public_interfaces.api_future import APIFuture
from tinker.lib.public_interfaces.backcompat_sampling_client_future import (
    BackcompatSamplingClientFuture,
)
from tinker.lib.public_interfaces.custom_loss import LossHandle
from tinker.types.optimizer import OptimParamsBase

from tinkerkit.backends import age
from tinkerkit.backends.builtin import run_builtin
from tinkerkit.backends.context import OfflineContext
from tinkerkit.backends.custom_losses import CustomLossFn, check_custom_call, run_custom
from tinkerkit.backends.engine import Engine, EngineState, adapter_config, load, step
from tinkerkit.backends.futures import Origin, done_future, plain
from tinkerkit.backends.sampling_client import (
    InflightWeights,
    SamplingClient,
    sampling_client_from_path,
)
from tinkerkit.backends.sdk_surface import mirrors
from tinkerkit.backends.store import RunRecord, check_ttl, parse_tinker_path
from tinkerkit.errors import (
    ClientFailedError,
    UntrainedStepWarning,
    WrongCheckpointKindError,
)
from tinkerkit.paths import tinkerkit_home

T = TypeVar("T")
logger = logging.getLogger("tinkerkit")


class _StepLedger:
    """What happened since the last ``optim_step``: did any gradient arrive, what failed."""

    def __init__(self) -> None:
        self.gradients = 0
        self.failure: tuple[Origin, BaseException] | None = None

    def reset(self) -> None:
        self.gradients, self.failure = 0, None


@mirrors(tinker.TrainingClient)
class TrainingClient(tinker.TrainingClient):
    """Trains one LoRA adapter; see the tinker SDK's ``TrainingClient`` for each method."""

    def __init__(
        self,
        context: OfflineContext,
        engine: Engine,
        run: RunRecord,
        optimizer: types.OptimizerConfig | None = None,
    ) -> None:
        self._context = context
        self._engine = engine
        self._run = run
        self.model_id = run.run_id
        self._dispatcher = context.dispatcher(
            "tinkerkit-train", label=f"TrainingClient {run.run_id}"
        )
        lora = engine.lora
        self._info = types.GetInfoResponse(
            model_data=types.ModelData(
                arch=engine.spec.arch,
                model_name=engine.spec.name,
                tokenizer_id=tokenizer_id(context, engine),
            ),
            model_id=run.run_id,
            optimizer_config=engine.optimizer_config,
            is_lora=True,
            lora_rank=lora.rank if lora else None,
            model_name=engine.spec.name,
        )
        self._inflight = InflightWeights()
        self._ledger = _StepLedger()
        # As on the service: once a custom-loss operation fails, the client rejects every
        # queued and later training request (its request sequence has a hole in it).
        self._failed: BaseException | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<TrainingClient {self._context.backend}: {self._run.base_model} ({self.model_id})>"

    # --- plumbing ------------------------------------------------------------------------

    def _submit(
        self, kind: str, fn: Callable[[], T], *, origin: Origin | None = None
    ) -> APIFuture[T]:
        self._context.check_open()

        def guarded() -> T:
            if self._failed is not None:
                raise ClientFailedError(self._failed)
            return fn()

        return self._dispatcher.submit(kind, guarded, origin=origin)

    def _gradient_request(
        self, kind: str, fn: Callable[[], types.ForwardBackwardOutput]
    ) -> APIFuture[types.ForwardBackwardOutput]:
        """A request that adds gradients: the ledger notes whether it did or why not."""
        origin = self._dispatcher.origin(kind)

        def run() -> types.ForwardBackwardOutput:
            try:
                out = fn()
            except BaseException as exc:
                self._ledger.failure = (origin, exc)
                raise
            self._ledger.gradients += 1
            return out

        return self._submit(kind, run, origin=origin)

    @staticmethod
    def _check_submission(data: Any) -> list[types.Datum]:
        if not data:
            raise ValueError("No data provided")
        return list(data)

    # --- forward / backward ------------------------------------------------------------

    def forward(
        self,
        data: list[types.Datum],
        loss_fn: types.LossFnType,
        loss_fn_config: Mapping[str, float | str] | None = None,
    ) -> APIFuture[types.ForwardBackwardOutput]:
        """Loss and per-token outputs without touching the gradients.

        Example:
            >>> out = training.forward(data, "cross_entropy").result()
            >>> out.loss_fn_outputs[0]["logprobs"].to_numpy()
        """
        batch = self._check_submission(data)
        context = self._context
        return self._submit(
            "forward",
            lambda: run_builtin(
                self._engine, batch, loss_fn, loss_fn_config, backward=False, context=context
            ),
        )

    async def forward_async(
        self,
        data: list[types.Datum],
        loss_fn: types.LossFnType,
        loss_fn_config: Mapping[str, float | str] | None = None,
    ) -> APIFuture[types.ForwardBackwardOutput]:
        return self.forward(data, loss_fn, loss_fn_config)

    def forward_backward(
        self,
        data: list[types.Datum],
        loss_fn: types.LossFnType,
        loss_fn_config: Mapping[str, float | str] | None = None,
    ) -> APIFuture[types.ForwardBackwardOutput]:
        """Loss, per-token outputs, and gradients added to the accumulated ones.

        Example:
            >>> fb = training.forward_backward(data, "cross_entropy")
            >>> step = training.optim_step(types.AdamParams(learning_rate=1e-4))
            >>> fb.result().metrics["loss:sum"]
        """
        batch = self._check_submission(data)
        context = self._context
        return self._gradient_request(
            "forward_backward",
            lambda: run_builtin(
                self._engine, batch, loss_fn, loss_fn_config, backward=True, context=context
            ),
        )

    async def forward_backward_async(
        self,
        data: list[types.Datum],
        loss_fn: types.LossFnType,
        loss_fn_config: Mapping[str, float | str] | None = None,
    ) -> APIFuture[types.ForwardBackwardOutput]:
        return self.forward_backward(data, loss_fn, loss_fn_config)

    def forward_backward_custom(
        self,
        data: list[types.Datum],
        loss_fn: CustomLossFn | LossHandle,
        *,
        loss_type_input: Literal["logprobs"] | None = None,
    ) -> APIFuture[types.ForwardBackwardOutput]:
        """Train on any differentiable function of the per-token logprobs.

        ``loss_fn(data, logprobs_list) -> (loss, metrics)`` gets one torch tensor of
        target-token logprobs per datum (shaped like its ``target_tokens``); the gradient
        of ``loss`` with respect to them is pushed back through the model as a linear
        ``cross_entropy`` surrogate with ``weights = -dloss/dlogprobs``, as the service
        does. ``metrics`` come back with ``loss:sum`` (the custom loss) and
        ``surrogate_loss:sum``. A ``LossHandle`` from ``create_custom_loss`` works too.

        Example:
            >>> def mean_nll(data, logprobs):
            ...     loss = -sum(lp.mean() for lp in logprobs)
            ...     return loss, {"nll": float(loss)}
            >>> training.forward_backward_custom(data, mean_nll).result().metrics
        """
        batch = check_custom_call(data, loss_fn, loss_type_input, self._context.session_id)

        def run() -> types.ForwardBackwardOutput:
            try:
                return run_custom(self._engine, batch, loss_fn)
            except BaseException as exc:
                self._failed = exc
                raise

        return self._gradient_request("forward_backward_custom", run)

    async def forward_backward_custom_async(
        self,
        data: list[types.Datum],
        loss_fn: CustomLossFn | LossHandle,
        *,
        loss_type_input: Literal["logprobs"] | None = None,
    ) -> APIFuture[types.ForwardBackwardOutput]:
        return self.forward_backward_custom(data, loss_fn, loss_type_input=loss_type_input)

    # --- optimizer ---------------------------------------------------------------------

    def optim_step(
        self,
        optim_params: types.OptimParams | None = None,
        *,
        adam_params: types.AdamParams | None = None,
    ) -> APIFuture[types.OptimStepResponse]:
        """One step of the optimizer chosen at creation on the accumulated gradients,
        which are then reset. Pass ``types.AdamParams`` (AdamW, the default) or
        ``types.DimuonParams`` (a client created with ``types.DimuonOptimizerConfig()``).
        """
        if optim_params is not None and adam_params is not None:
            raise ValueError("Specify optim_params or legacy adam_params, not both")
        params = optim_params if optim_params is not None else adam_params
        if not isinstance(params, types.AdamParams | OptimParamsBase):
            raise TypeError(
                "Expected AdamParams or OptimParamsBase, e.g. types.AdamParams(learning_rate=1e-4)"
                f"; got {type(params).__name__}."
            )
        origin = self._dispatcher.origin("optim_step")

        def run() -> types.OptimStepResponse:
            ledger = self._ledger
            if ledger.gradients == 0 and ledger.failure is not None:
                failed_origin, exc = ledger.failure
                self._context.warn(
                    f"{origin.describe()} applied no gradient: {failed_origin.describe()} before "
                    f"it failed ({type(exc).__name__}: {exc}), so this step trains on nothing.",
                    UntrainedStepWarning,
                    origin,
                )
            ledger.reset()
            return types.OptimStepResponse(metrics=step(self._engine, params))

        return self._submit("optim_step", run, origin=origin)

    async def optim_step_async(
        self,
        optim_params: types.OptimParams | None = None,
        *,
        adam_params: types.AdamParams | None = None,
    ) -> APIFuture[types.OptimStepResponse]:
        return self.optim_step(optim_params, adam_params=adam_params)

    # --- checkpoints -------------------------------------------------------------------

    def _save(self, kind: Any, name: str, optimizer: bool, **kw: Any) -> str:
        check_ttl(kw.get("ttl_seconds"))
        engine = self._engine
        state = engine.state()
        record = self._context.store.save(
            self._run,
            kind,
            name,
            state.weights,
            adapter_config(engine.spec, engine.lora, state.weights),
            optimizer=state.optimizer if optimizer else None,
            **kw,
        )
        return record.path

    def save_state(
        self,
        name: str,
        ttl_seconds: int | None = None,
        overwrite: bool = False,
        user_metadata: dict[str, str] | None = None,
    ) -> APIFuture[types.SaveWeightsResponse]:
        """Save weights and optimizer state as ``tinker://<run>/weights/<name>``."""
        return self._submit(
            "save_state",
            lambda: types.SaveWeightsResponse(
                path=self._save(
                    "weights",
                    name,
                    True,
                    ttl_seconds=ttl_seconds,
                    overwrite=overwrite,
                    user_metadata=user_metadata,
                )
            ),
        )

    async def save_state_async(
        self,
        name: str,
        ttl_seconds: int | None = None,
        overwrite: bool = False,
        user_metadata: dict[str, str] | None = None,
    ) -> APIFuture[types.SaveWeightsResponse]:
        return self.save_state(
            name, ttl_seconds=ttl_seconds, overwrite=overwrite, user_metadata=user_metadata
        )

    def _load(self, path: str, with_optimizer: bool) -> types.LoadWeightsResponse:
        _, kind, _ = parse_tinker_path(path)
        if kind != "weights":
            raise WrongCheckpointKindError(path, "load_state", "weights")
        loaded = self._context.store.load(
            path, with_optimizer=with_optimizer, backend=self._context.backend
        )
        check_compatible(loaded.record.base_model, loaded.record.lora, self._run, path)
        load(self._engine, EngineState(loaded.weights, loaded.optimizer))
        return types.LoadWeightsResponse(path=path, model_id=self.model_id)

    def load_weights(
        self, path: str, *, with_optimizer: bool
    ) -> APIFuture[types.LoadWeightsResponse]:
        """``load_state``/``load_state_with_optimizer`` without their deprecation (the
        server's ``/load_weights`` into a running model uses it)."""
        return self._submit("load_state", lambda: self._load(path, with_optimizer))

    def load_state(
        self, path: str, weights_access_token: str | None = None
    ) -> APIFuture[types.LoadWeightsResponse]:
        """Load weights (not optimizer state) from a ``weights`` checkpoint."""
        return self.load_weights(path, with_optimizer=False)

    async def load_state_async(
        self, path: str, weights_access_token: str | None = None
    ) -> APIFuture[types.LoadWeightsResponse]:
        return self.load_weights(path, with_optimizer=False)

    def load_state_with_optimizer(
        self, path: str, weights_access_token: str | None = None
    ) -> APIFuture[types.LoadWeightsResponse]:
        """Load weights and optimizer state from a ``weights`` checkpoint."""
        return self.load_weights(path, with_optimizer=True)

    async def load_state_with_optimizer_async(
        self, path: str, weights_access_token: str | None = None
    ) -> APIFuture[types.LoadWeightsResponse]:
        return self.load_weights(path, with_optimizer=True)

    def save_weights_for_sampler(
        self,
        name: str,
        ttl_seconds: int | None = None,
        user_metadata: dict[str, str] | None = None,
    ) -> APIFuture[types.SaveWeightsForSamplerResponse]:
        """Save the adapter as ``tinker://<run>/sampler_weights/<name>`` (Tinker archive)."""
        return self._submit(
            "save_weights_for_sampler",
            lambda: types.SaveWeightsForSamplerResponse(
                path=self._save(
                    "sampler_weights",
                    name,
                    False,
                    ttl_seconds=ttl_seconds,
                    user_metadata=user_metadata,
                )
            ),
        )

    async def save_weights_for_sampler_async(
        self,
        name: str,
        ttl_seconds: int | None = None,
        user_metadata: dict[str, str] | None = None,
    ) -> APIFuture[types.SaveWeightsForSamplerResponse]:
        return self.save_weights_for_sampler(
            name, ttl_seconds=ttl_seconds, user_metadata=user_metadata
        )

    def save_weights_external(
        self,
        name: str,
        ttl_seconds: int | None = None,
        age_encryption_recipients: list[str] | None = None,
    ) -> APIFuture[types.SaveWeightsExternalResponse]:
        """Save the adapter as PEFT files at ``tinker://<run>/external_weights/<name>``.

        With ``age_encryption_recipients`` (at most 10 ``age1...`` or SSH public keys)
        every file is encrypted to them and stored as ``<file>.age`` (``backends.age``;
        needs ``tinkerkit[age]``); decrypt with ``age -d -i IDENTITY`` or ``pyrage``.
        """

        def run() -> types.SaveWeightsExternalResponse:
            seal = None
            if age_encryption_recipients is not None:
                seal = age.sealer(age_encryption_recipients)
            return types.SaveWeightsExternalResponse(
                path=self._save("external_weights", name, False, ttl_seconds=ttl_seconds, seal=seal)
            )

        return self._submit("save_weights_external", run)

    async def save_weights_external_async(
        self,
        name: str,
        ttl_seconds: int | None = None,
        age_encryption_recipients: list[str] | None = None,
    ) -> APIFuture[types.SaveWeightsExternalResponse]:
        return self.save_weights_external(
            name, ttl_seconds=ttl_seconds, age_encryption_recipients=age_encryption_recipients
        )

    # --- sampling clients ----------------------------------------------------------------

    def save_weights_and_get_sampling_client(
        self,
        name: str | None = None,
        retry_config: Any = None,
        record_stability_info: bool = False,
        kind: types.SamplingClientKind = "snapshot",
    ) -> BackcompatSamplingClientFuture:
        """A sampling client on the current weights (after every request submitted before).

        ``kind="snapshot"`` (default) freezes them; ``kind="inflight"`` publishes them to
        this model's shared inflight target, which every inflight client follows.
        """
        if name is not None:
            warnings.warn(
                "The 'name' parameter of save_weights_and_get_sampling_client() is deprecated "
                "and has no effect — checkpoints are always ephemeral. This parameter will be "
                "removed in a future release. Remove the 'name' argument from your call. If you "
                "need a persistent checkpoint, use save_weights_for_sampler(name=...) + "
                "create_sampling_client(model_path=...) instead.",
                DeprecationWarning,
                stacklevel=2,
            )
        base = self._engine.spec.name

        def run() -> SamplingClient:
            if kind not in get_args(types.SamplingClientKind):
                raise ValueError(
                    f"kind must be one of {', '.join(get_args(types.SamplingClientKind))}; "
                    f"got {kind!r}"
                )
            snapshot = self._engine.snapshot()
            if kind == "inflight":
                self._inflight.publish(snapshot)
                return SamplingClient(
                    self._context,
                    self._inflight,
                    None,
                    base_model=base,
                    record_stability_info=record_stability_info,
                    lora=self._run.lora,
                )
            return SamplingClient(
                self._context,
                snapshot,
                None,
                base_model=base,
                record_stability_info=record_stability_info,
                lora=self._run.lora,
            )

        def run_noted() -> SamplingClient:
            client = run()
            self._context.note_sampler(client.sampler_id, base, None)
            return client

        future = self._submit("save_weights_for_sampler", run_noted)
        return BackcompatSamplingClientFuture(plain(future))

    async def save_weights_and_get_sampling_client_async(
        self,
        name: str | None = None,
        retry_config: Any = None,
        record_stability_info: bool = False,
        kind: types.SamplingClientKind = "snapshot",
    ) -> tinker.SamplingClient:
        return await self.save_weights_and_get_sampling_client(
            name, retry_config=retry_config, record_stability_info=record_stability_info, kind=kind
        )

    def create_sampling_client(
        self,
        model_path: str,
        retry_config: Any = None,
        record_stability_info: bool = False,
    ) -> BackcompatSamplingClientFuture:
        """A sampling client on a ``sampler_weights`` checkpoint."""

        context = self._context

        def create() -> SamplingClient:
            client = sampling_client_from_path(context, model_path, record_stability_info)
            context.note_sampler(client.sampler_id, client.get_base_model(), model_path)
            return client

        future = self._submit("create_sampling_client", create)
        return BackcompatSamplingClientFuture(plain(future))

    async def create_sampling_client_async(
        self,
        model_path: str,
        retry_config: Any = None,
        record_stability_info: bool = False,
    ) -> tinker.SamplingClient:
        return await self.create_sampling_client(
            model_path, retry_config=retry_config, record_stability_info=record_stability_info
        )

    # --- info ----------------------------------------------------------------------------

    def get_info(self) -> types.GetInfoResponse:
        """Base model, LoRA rank and optimizer; answered from the client, no request."""
        return self._info

    async def get_info_async(self) -> types.GetInfoResponse:
        return self._info

    def get_tokenizer(self) -> Any:
        """The model's tokenizer (offline: no download)."""
        return self._context.factory.tokenizer(self._engine.spec)

    def get_console_url(self) -> str:
        """Offline there is no console: the run's folder under ``TINKERKIT_HOME``."""
        return Path(tinkerkit_home() / "runs" / self.model_id).resolve().as_uri()

    def get_telemetry(self) -> None:
        return None


def tokenizer_id(context: OfflineContext, engine: Engine) -> str:
    """What ``get_info`` names as the tokenizer: for a service model the hub id the SDK
    and the cookbook load (``models.catalogue``), a mapped folder's path, or the offline
    tokenizer's own name. Asked of the factory, so no tokenizer is loaded for it."""
    named = getattr(context.factory, "tokenizer_id", None)
    if callable(named):
        return str(named(engine.spec))
    tok = context.factory.tokenizer(engine.spec)
    return str(getattr(tok, "name_or_path", None) or engine.spec.name)


def check_compatible(base_model: str, lora: dict[str, Any], run: RunRecord, path: str) -> None:
    """Refuse to load a checkpoint of another base model or LoRA shape into this run."""
    from tinkerkit.errors import ConfigMismatchError

    if base_model != run.base_model:
        raise ConfigMismatchError("base_model", base_model, run.base_model, path)
    for key in ("rank", "train_mlp", "train_attn", "train_unembed"):
        if lora.get(key) != run.lora.get(key):
            raise ConfigMismatchError(f"LoRA {key}", lora.get(key), run.lora.get(key), path)


__all__ = ["TrainingClient", "check_compatible", "done_future"]
