"""A model the service trains: one LoRA adapter on an engine, its run record, its worker.

Every request runs on the model's worker in the order the sequencer admits it, so a
``forward_backward`` and an ``optim_step`` sent back to back apply in order. Gradients
accumulate (sum) across ``forward_backward`` requests until ``optim_step``. A request
the service refuses (bad datum, unknown loss, ...) fails its own future only.

The model keeps a ledger of what happened since its last ``optim_step``: a step that
follows only failed gradient requests trains on nothing, and the service says so
(``UntrainedStepWarning``), naming the failed request and its error.
"""

from __future__ import annotations

import math
import threading
from collections import Counter
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from tinker import types

from tinkerkit.backends import age
from tinkerkit.backends.builtin import run_builtin
from tinkerkit.backends.engine import Engine, EngineState, adapter_config, load, step
from tinkerkit.backends.store import RunRecord, check_ttl, parse_tinker_path
from tinkerkit.errors import (
    ConfigMismatchError,
    RequestError,
    UntrainedStepWarning,
    WrongCheckpointKindError,
)
from tinkerkit.server.worker import Worker

if TYPE_CHECKING:
    from tinkerkit.server.sampler import Sampler
    from tinkerkit.server.service import Service

T = TypeVar("T")


@dataclass(frozen=True)
class Origin:
    """Which request this is: its kind, its number among its kind, and its model."""

    kind: str
    number: int
    model_id: str

    def describe(self) -> str:
        return f"{self.kind} #{self.number} on TrainingClient {self.model_id}"


class _Ledger:
    """What happened since the last ``optim_step``: gradients that arrived, what failed."""

    def __init__(self) -> None:
        self.gradients = 0
        self.failure: tuple[Origin, BaseException] | None = None

    def reset(self) -> None:
        self.gradients, self.failure = 0, None


class Model:
    """A training run being trained: engine, run record, ordered worker."""

    def __init__(self, service: Service, engine: Engine, run: RunRecord, model_id: str) -> None:
        self.service = service
        self.engine = engine
        self.run = run
        self.model_id = model_id
        """The id the SDK addresses it by (the run id, or ``<session>:train:<n>`` for a
        model created by ``load_weights``)."""
        self.worker = Worker("tinkerkit-model", service.latency, service.faults)
        self._ledger = _Ledger()
        self._counts: Counter[str] = Counter()
        self._count_lock = threading.Lock()
        self._inflight: Engine | None = None
        self._inflight_lock = threading.Lock()

    @property
    def run_id(self) -> str:
        return self.run.run_id

    def info(self) -> types.GetInfoResponse:
        """Base model, LoRA rank and optimizer (``get_info``)."""
        spec, lora = self.engine.spec, self.engine.lora
        return types.GetInfoResponse(
            model_data=types.ModelData(
                arch=spec.arch,
                model_name=spec.name,
                tokenizer_id=self.service.tokenizer_id(spec),
            ),
            model_id=self.model_id,
            optimizer_config=self.engine.optimizer_config,
            is_lora=True,
            lora_rank=lora.rank if lora else None,
            model_name=spec.name,
        )

    # --- requests ------------------------------------------------------------------------

    def _origin(self, kind: str) -> Origin:
        with self._count_lock:
            self._counts[kind] += 1
            return Origin(kind, self._counts[kind], self.model_id)

    def _submit(self, kind: str, fn: Callable[[], T]) -> Future[T]:
        return self.worker.submit(kind, fn)

    def forward(
        self,
        data: list[types.Datum],
        loss_fn: str,
        loss_fn_config: Mapping[str, float | str] | None,
        *,
        backward: bool,
    ) -> Future[types.ForwardBackwardOutput]:
        """``forward`` (``backward=False``) or ``forward_backward`` of a built-in loss.

        Example:
            >>> out = model.forward(data, "cross_entropy", None, backward=True).result()
            >>> out.metrics["loss:sum"]
        """
        kind = "forward_backward" if backward else "forward"
        origin = self._origin(kind)
        records = self.service.sequences

        def run() -> types.ForwardBackwardOutput:
            if not data:
                raise RequestError("No data provided")
            try:
                out = run_builtin(
                    self.engine, data, loss_fn, loss_fn_config, backward=backward, records=records
                )
            except BaseException as exc:
                if backward:
                    self._ledger.failure = (origin, exc)
                raise
            if backward:
                self._ledger.gradients += 1
            return out

        return self._submit(kind, run)

    def optim_step(self, params: Any) -> Future[types.OptimStepResponse]:
        """One step of the optimizer chosen at creation; the accumulated gradients reset."""
        origin = self._origin("optim_step")

        def run() -> types.OptimStepResponse:
            check_learning_rate(params)
            ledger = self._ledger
            if ledger.gradients == 0 and ledger.failure is not None:
                failed, exc = ledger.failure
                self.service.warn(
                    f"{origin.describe()} applied no gradient: {failed.describe()} before it "
                    f"failed ({type(exc).__name__}: {exc}), so this step trains on nothing.",
                    UntrainedStepWarning,
                )
            ledger.reset()
            return types.OptimStepResponse(metrics=step(self.engine, params))

        return self._submit("optim_step", run)

    # --- checkpoints ---------------------------------------------------------------------

    def save(self, kind: Any, name: str, **options: Any) -> Future[str]:
        """Save the weights (``weights``: with the optimizer state) as
        ``tinker://<run>/<kind>/<name>``; a future of that path.

        ``options``: ``ttl_seconds``, ``overwrite``, ``user_metadata``, and for
        ``external_weights`` ``age_encryption_recipients`` (``backends.age``).
        """
        request = {
            "weights": "save_state",
            "sampler_weights": "save_weights_for_sampler",
            "external_weights": "save_weights_external",
        }[kind]
        recipients = options.pop("age_encryption_recipients", None)

        def run() -> str:
            check_ttl(options.get("ttl_seconds"))
            seal = age.sealer(recipients) if recipients is not None else None
            state = self.engine.state()
            record = self.service.store.save(
                self.run,
                kind,
                name,
                state.weights,
                adapter_config(self.engine.spec, self.engine.lora, state.weights),
                optimizer=state.optimizer if kind == "weights" else None,
                seal=seal,
                **options,
            )
            return record.path

        return self._submit(request, run)

    def load(self, path: str, *, with_optimizer: bool) -> Future[types.LoadWeightsResponse]:
        """Load a ``weights`` checkpoint of the same base model and LoRA shape."""

        def run() -> types.LoadWeightsResponse:
            _, kind, _ = parse_tinker_path(path)
            if kind != "weights":
                raise WrongCheckpointKindError(path, "load_state", "weights")
            store = self.service.store
            loaded = store.load(path, with_optimizer=with_optimizer, backend=self.service.backend)
            check_compatible(loaded.record.base_model, loaded.record.lora, self.run, path)
            load(self.engine, EngineState(loaded.weights, loaded.optimizer))
            return types.LoadWeightsResponse(path=path, model_id=self.model_id)

        return self._submit("load_state", run)

    def sampler(self, kind: str) -> Future[Sampler]:
        """A sampler on the current weights (after every request admitted before):
        ``snapshot`` freezes them, ``inflight`` follows this model's latest publication."""
        from tinkerkit.server.sampler import Sampler

        def run() -> Sampler:
            if kind not in ("snapshot", "inflight"):
                raise RequestError(f"kind must be one of snapshot, inflight; got {kind!r}")
            snapshot = self.engine.snapshot()
            if kind == "inflight":
                with self._inflight_lock:
                    self._inflight = snapshot
                return Sampler(self.service, self._published, base_model=self.engine.spec.name)
            return Sampler(self.service, lambda: snapshot, base_model=self.engine.spec.name)

        return self._submit("save_weights_for_sampler", run)

    def _published(self) -> Engine:
        with self._inflight_lock:
            assert self._inflight is not None
            return self._inflight

    def close(self) -> None:
        self.worker.close()


def check_learning_rate(params: Any) -> None:
    """Refuse a learning rate that is not a finite number >= 0 (NaN poisons every weight)."""
    lr = getattr(params, "learning_rate", None)
    if isinstance(lr, int | float) and (not math.isfinite(lr) or lr < 0):
        raise RequestError(
            f"learning_rate must be a finite number >= 0, got {lr!r}; a NaN or infinite "
            "rate would overwrite every trained weight with NaN."
        )


def check_compatible(base_model: str, lora: dict[str, Any], run: RunRecord, path: str) -> None:
    """Refuse to load a checkpoint of another base model or LoRA shape into this run."""
    if base_model != run.base_model:
        raise ConfigMismatchError("base_model", base_model, run.base_model, path)
    for key in ("rank", "train_mlp", "train_attn", "train_unembed"):
        if lora.get(key) != run.lora.get(key):
            raise ConfigMismatchError(f"LoRA {key}", lora.get(key), run.lora.get(key), path)
