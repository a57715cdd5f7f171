"""The offline ``TrainingClient``: same methods and types as ``tinker.TrainingClient``.

Every request runs on this client's dispatcher in submission order, so
``forward_backward`` then ``optim_step`` submitted without waiting apply in order.
Gradients accumulate (sum) across ``forward_backward`` calls until ``optim_step``.
A request that fails (bad datum, unknown loss, ...) fails its own future only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import numpy as np
from tinker import types
from tinker.lib.public_interfaces.api_future import APIFuture

from tinkerkit.backends.builtin import run_builtin, tensor
from tinkerkit.backends.context import ClientFuture, OfflineContext
from tinkerkit.backends.engine import Engine
from tinkerkit.backends.sampling_client import SamplingClient
from tinkerkit.backends.store import RunRecord
from tinkerkit.backends.validation import CheckedDatum, check_batch
from tinkerkit.errors import ClientFailedError, RequestError

T = TypeVar("T")
CustomLossFn = Callable[[list[types.Datum], list[Any]], tuple[Any, dict[str, float]]]


class TrainingClient:
    """Trains one LoRA adapter; see the tinker SDK's ``TrainingClient`` for each method."""

    def __init__(self, context: OfflineContext, engine: Engine, run: RunRecord) -> None:
        self._context = context
        self._engine = engine
        self._run = run
        self._dispatcher = context.dispatcher("tinkerkit-train")
        self.model_id = run.run_id
        # As on the service: once a custom-loss operation fails, the client rejects every
        # queued and later training request (its request sequence has a hole in it).
        self._failed: BaseException | None = None

    def __repr__(self) -> str:
        return f"<TrainingClient {self._context.backend}: {self._run.base_model} ({self.model_id})>"

    def _submit(self, kind: str, fn: Callable[[], T]) -> APIFuture[T]:
        def guarded() -> T:
            if self._failed is not None:
                raise ClientFailedError(self._failed)
            return fn()

        return self._dispatcher.submit(kind, guarded)

    # --- forward / backward ------------------------------------------------------------

    def _check_submission(self, data: Sequence[types.Datum]) -> list[types.Datum]:
        if not data:
            raise ValueError("No data provided")
        return list(data)

    def forward(
        self,
        data: list[types.Datum],
        loss_fn: types.LossFnType,
        loss_fn_config: Mapping[str, float | str] | None = None,
    ) -> APIFuture[types.ForwardBackwardOutput]:
        """Loss and per-token ``logprobs`` without touching the gradients."""
        batch = self._check_submission(data)
        return self._submit(
            "forward", lambda: run_builtin(self._engine, batch, loss_fn, loss_fn_config, backward=False)
        )

    def forward_backward(
        self,
        data: list[types.Datum],
        loss_fn: types.LossFnType,
        loss_fn_config: Mapping[str, float | str] | None = None,
    ) -> APIFuture[types.ForwardBackwardOutput]:
        """Loss, per-token ``logprobs``, and gradients added to the accumulated ones.

        Example:
            >>> fb = training.forward_backward(data, "cross_entropy")
            >>> step = training.optim_step(types.AdamParams(learning_rate=1e-4))
            >>> fb.result().metrics["loss:sum"]
        """
        batch = self._check_submission(data)
        return self._submit(
            "forward_backward", lambda: run_builtin(self._engine, batch, loss_fn, loss_fn_config, backward=True)
        )

    def forward_backward_custom(
        self,
        data: list[types.Datum],
        loss_fn: CustomLossFn,
        *,
        loss_type_input: str | None = None,
    ) -> APIFuture[types.ForwardBackwardOutput]:
        """Train on any differentiable function of the per-token logprobs.

        ``loss_fn(data, logprobs_list) -> (loss, metrics)`` gets one torch tensor of
        target-token logprobs per datum; the gradient of ``loss`` with respect to them
        is pushed back through the model (as the service does, via a linear surrogate).

        Example:
            >>> def mean_nll(data, logprobs):
            ...     loss = -sum(lp.mean() for lp in logprobs)
            ...     return loss, {"nll": float(loss)}
            >>> training.forward_backward_custom(data, mean_nll).result().metrics
        """
        if loss_type_input not in (None, "logprobs"):
            raise ValueError(f"loss_type_input must be 'logprobs' or None, got {loss_type_input!r}")
        if not callable(loss_fn):
            raise TypeError("loss_fn must be callable: loss_fn(data, logprobs) -> (loss, metrics)")
        batch = self._check_submission(data)

        def run() -> types.ForwardBackwardOutput:
            try:
                return self._run_custom(batch, loss_fn)
            except BaseException as exc:
                self._failed = exc
                raise

        return self._submit("forward_backward", run)

    def _run_custom(
        self, data: list[types.Datum], loss_fn: CustomLossFn
    ) -> types.ForwardBackwardOutput:
        try:
            import torch
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise ImportError(
                "forward_backward_custom needs PyTorch: pip install 'tinkerkit[local]'"
            ) from exc
        checked: list[CheckedDatum] = check_batch(data, self._engine.spec, None)
        fp = self._engine.forward([c.engine_input for c in checked], grad=True)
        tensors = [torch.tensor(lp, dtype=torch.float32, requires_grad=True) for lp in fp.logprobs]
        loss, metrics = loss_fn(data, tensors)
        if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
            raise RequestError(
                "custom loss_fn must return (loss, metrics) with loss a scalar torch tensor; got "
                f"{type(loss).__name__}."
            )
        loss.backward()
        grads = []
        for t in tensors:
            g = t.grad.numpy().astype(np.float64) if t.grad is not None else np.zeros(t.shape)
            if not np.all(np.isfinite(g)):
                raise RequestError(
                    "custom loss produced a NaN or infinite gradient; nothing was applied."
                )
            grads.append(g)
        fp.backward(grads)
        out_metrics = {k: float(v) for k, v in dict(metrics or {}).items()}
        out_metrics["loss:sum"] = float(loss.detach())
        return types.ForwardBackwardOutput(
            loss_fn_output_type="ArrayRecord",
            loss_fn_outputs=[{"logprobs": tensor(lp)} for lp in fp.logprobs],
            metrics=out_metrics,
        )

    # --- optimizer ---------------------------------------------------------------------

    def optim_step(
        self,
        optim_params: types.AdamParams | None = None,
        *,
        adam_params: types.AdamParams | None = None,
    ) -> APIFuture[types.OptimStepResponse]:
        """One AdamW step on the accumulated gradients, which are then reset."""
        if optim_params is not None and adam_params is not None:
            raise ValueError("Specify optim_params or legacy adam_params, not both")
        params = optim_params if optim_params is not None else adam_params
        if not isinstance(params, types.AdamParams):
            raise TypeError(
                "optim_step takes tinker.types.AdamParams, e.g. "
                "types.AdamParams(learning_rate=1e-4)"
            )
        return self._submit(
            "optim_step",
            lambda: types.OptimStepResponse(metrics=self._engine.optim_step(params)),
        )

    # --- checkpoints -------------------------------------------------------------------

    def _save(self, kind: Any, name: str, optimizer: bool, **kw: Any) -> str:
        engine = self._engine
        record = self._context.store.save(
            self._run,
            kind,
            name,
            engine.get_weights(),
            engine.adapter_config(),
            optimizer=engine.get_optimizer_state() if optimizer else None,
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

    def _load(self, path: str, with_optimizer: bool) -> types.LoadWeightsResponse:
        loaded = self._context.store.load(path, with_optimizer=with_optimizer)
        check_compatible(loaded.record.base_model, loaded.record.lora, self._run, path)
        self._engine.set_weights(loaded.weights)
        if loaded.optimizer is not None:
            self._engine.set_optimizer_state(loaded.optimizer)
        return types.LoadWeightsResponse(path=path, model_id=self.model_id)

    def load_state(
        self, path: str, weights_access_token: str | None = None
    ) -> APIFuture[types.LoadWeightsResponse]:
        """Load weights (not optimizer state) from a ``weights`` checkpoint."""
        return self._submit("load_state", lambda: self._load(path, False))

    def load_state_with_optimizer(
        self, path: str, weights_access_token: str | None = None
    ) -> APIFuture[types.LoadWeightsResponse]:
        """Load weights and optimizer state from a ``weights`` checkpoint."""
        return self._submit("load_state", lambda: self._load(path, True))

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

    def save_weights_external(
        self,
        name: str,
        ttl_seconds: int | None = None,
        age_encryption_recipients: list[str] | None = None,
    ) -> APIFuture[types.SaveWeightsExternalResponse]:
        """Save the adapter as PEFT files at ``tinker://<run>/external_weights/<name>``."""
        if age_encryption_recipients:
            raise ValueError("age encryption of external weights is not available offline")
        return self._submit(
            "save_weights_external",
            lambda: types.SaveWeightsExternalResponse(
                path=self._save("external_weights", name, False, ttl_seconds=ttl_seconds)
            ),
        )

    # --- sampling clients ----------------------------------------------------------------

    def save_weights_and_get_sampling_client(
        self,
        name: str | None = None,
        retry_config: Any = None,
        record_stability_info: bool = False,
        kind: str = "snapshot",
    ) -> ClientFuture[SamplingClient]:
        """A sampling client on the current weights (after every request submitted before)."""

        def run() -> SamplingClient:
            path = self._save("sampler_weights", name, False) if name else None
            return SamplingClient(self._context, self._engine.snapshot(), path)

        return ClientFuture(self._submit("save_weights_for_sampler", run).future())

    def create_sampling_client(
        self, model_path: str, retry_config: Any = None, record_stability_info: bool = False
    ) -> ClientFuture[SamplingClient]:
        from tinkerkit.backends.service_client import sampling_client_from_path

        return ClientFuture(
            self._submit(
                "create_sampling_client",
                lambda: sampling_client_from_path(self._context, model_path),
            ).future()
        )

    # --- info ----------------------------------------------------------------------------

    def get_info(self) -> types.GetInfoResponse:
        spec = self._engine.spec
        lora = self._engine.lora
        return types.GetInfoResponse(
            model_data=types.ModelData(
                arch=spec.arch, model_name=spec.name, tokenizer_id="tinkerkit/byte-tokenizer"
            ),
            model_id=self.model_id,
            is_lora=True,
            lora_rank=lora.rank if lora else None,
            model_name=spec.name,
        )

    async def get_info_async(self) -> types.GetInfoResponse:
        return self.get_info()

    def get_tokenizer(self) -> Any:
        """The model's tokenizer (offline: built in code, no download)."""
        return self._context.factory.tokenizer(self._engine.spec)

    # --- deprecated-in-0.38 async spellings: return the future, as the SDK does -------------

    async def forward_async(self, *a: Any, **k: Any) -> APIFuture[types.ForwardBackwardOutput]:
        return self.forward(*a, **k)

    async def forward_backward_async(
        self, *a: Any, **k: Any
    ) -> APIFuture[types.ForwardBackwardOutput]:
        return self.forward_backward(*a, **k)

    async def forward_backward_custom_async(
        self, *a: Any, **k: Any
    ) -> APIFuture[types.ForwardBackwardOutput]:
        return self.forward_backward_custom(*a, **k)

    async def optim_step_async(self, *a: Any, **k: Any) -> APIFuture[types.OptimStepResponse]:
        return self.optim_step(*a, **k)

    async def save_state_async(self, *a: Any, **k: Any) -> APIFuture[types.SaveWeightsResponse]:
        return self.save_state(*a, **k)

    async def load_state_async(self, *a: Any, **k: Any) -> APIFuture[types.LoadWeightsResponse]:
        return self.load_state(*a, **k)

    async def load_state_with_optimizer_async(
        self, *a: Any, **k: Any
    ) -> APIFuture[types.LoadWeightsResponse]:
        return self.load_state_with_optimizer(*a, **k)

    async def save_weights_for_sampler_async(
        self, *a: Any, **k: Any
    ) -> APIFuture[types.SaveWeightsForSamplerResponse]:
        return self.save_weights_for_sampler(*a, **k)

    async def save_weights_external_async(
        self, *a: Any, **k: Any
    ) -> APIFuture[types.SaveWeightsExternalResponse]:
        return self.save_weights_external(*a, **k)

    async def save_weights_and_get_sampling_client_async(self, *a: Any, **k: Any) -> SamplingClient:
        return await self.save_weights_and_get_sampling_client(*a, **k)

    async def create_sampling_client_async(self, *a: Any, **k: Any) -> SamplingClient:
        return await self.create_sampling_client(*a, **k)


def check_compatible(base_model: str, lora: dict[str, Any], run: RunRecord, path: str) -> None:
    """Refuse to load a checkpoint of another base model or LoRA shape into this run."""
    from tinkerkit.errors import ConfigMismatchError

    if base_model != run.base_model:
        raise ConfigMismatchError("base_model", base_model, run.base_model, path)
    for key in ("rank", "train_mlp", "train_attn", "train_unembed"):
        if lora.get(key) != run.lora.get(key):
            raise ConfigMismatchError(f"LoRA {key}", lora.get(key), run.lora.get(key), path)
