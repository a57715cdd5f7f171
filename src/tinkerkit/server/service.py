"""The Tinker service over an offline backend: the one place its semantics live.

A ``Service`` holds what one API key's clients created — sessions, models (training
runs being trained), samplers, pending results — over one engine factory (``mock`` or
``local``) and the ``TINKERKIT_HOME`` checkpoint store. The HTTP routes
(``routes_*.py``) only translate the SDK's wire format into calls here.

``latency`` delays every result as a network round trip would, ``faults``
(``tinkerkit.testing.FailNth``, ...) fail chosen requests, and ``warn`` is where the
service's warnings about a client's requests go: Python warnings in the user's own
process for ``tk.connect``, the server's log for ``tinkerkit serve``.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tinker import types

from tinkerkit.backends.engine import EngineFactory, EngineState, LoraConfig, load, new_engine
from tinkerkit.backends.faults import FaultInjector
from tinkerkit.backends.limits import check_latency, check_lora_rank
from tinkerkit.backends.stability import SequenceRecords
from tinkerkit.backends.store import CheckpointStore, parse_tinker_path
from tinkerkit.errors import UnretrievedFailureWarning, WrongCheckpointKindError
from tinkerkit.models.registry import ModelSpec
from tinkerkit.server.model import Model
from tinkerkit.server.sampler import Sampler
from tinkerkit.server.state import FutureTable, Pending, Sequencer, chain
from tinkerkit.server.worker import Worker

logger = logging.getLogger("tinkerkit.server")
Warn = Callable[[str, type[Warning]], None]


def log_warning(message: str, category: type[Warning]) -> None:
    """The served service's warnings: one line in the server's log."""
    logger.warning("%s: %s", category.__name__, message)


@dataclass
class ModelSlot:
    model: Model
    sequencer: Sequencer = field(default_factory=Sequencer)


@dataclass
class SamplerSlot:
    """A sampling session; ``sampler`` resolves once its weights are loaded."""

    sampling_session_id: str
    sampler: Future[Sampler]
    clones: int = 0


@dataclass
class Session:
    session_id: str
    metadata: dict[str, Any] = field(default_factory=dict)
    """``user_metadata``, ``project_id``, ``display_name``: recorded with the session."""
    created: float = field(default_factory=time.time)
    last_heartbeat: float = field(default_factory=time.time)
    finished: bool = False


class Service:
    """Everything one API key's clients created, over one backend.

    Example:
        >>> service = Service(engine_factory("mock"))
        >>> model = service.create_model("tinkerkit/tiny", LoraConfig(rank=8), None, None,
        ...                              session_id=None).result()
    """

    def __init__(
        self,
        factory: EngineFactory,
        *,
        latency: float = 0.0,
        faults: Iterable[Any] = (),
        warn: Warn = log_warning,
        store: CheckpointStore | None = None,
    ) -> None:
        self.factory = factory
        self.backend: str = factory.name
        self.store = store or CheckpointStore()
        self.latency = check_latency(latency)  # every door: connect, serve, tk.serve
        self.faults = faults if isinstance(faults, FaultInjector) else FaultInjector(faults)
        self.warn = warn
        self.sequences = SequenceRecords()
        """Sequences sampled with ``record_stability_info=True`` (for ``stable_reinforce``)."""
        self.sessions: dict[str, Session] = {}
        self.models: dict[str, ModelSlot] = {}
        self.samplers: dict[str, SamplerSlot] = {}
        self.futures = FutureTable(on_unretrieved_failure=self._unretrieved)
        self.copies: dict[str, str] = {}
        """``X-Idempotency-Key`` of a ``copy_weights`` → the path of the copy it made."""
        self._worker = Worker("tinkerkit-service", self.latency, self.faults)
        self._tokenizer_ids: dict[str, str] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<tinkerkit Service {self.backend}: {len(self.models)} models>"

    def _unretrieved(self, entry: Pending, exc: BaseException) -> None:
        self.warn(
            f"{entry.kind} request {entry.request_id}"
            f"{f' of {entry.owner}' if entry.owner else ''} failed and its result was never "
            f"retrieved: {type(exc).__name__}: {exc}",
            UnretrievedFailureWarning,
        )

    # --- sessions ------------------------------------------------------------------------

    def new_session(
        self,
        user_metadata: dict[str, str] | None = None,
        project_id: str | None = None,
        display_name: str | None = None,
    ) -> Session:
        """A new SDK session. It is recorded in the store (``RestClient.get_session``)
        when it creates its first training run or sampler, so a command that fails
        before it trains anything leaves no file behind."""
        metadata = {
            "user_metadata": user_metadata,
            "project_id": project_id,
            "display_name": display_name,
        }
        session = Session(f"session-{uuid.uuid4().hex[:16]}", metadata)
        self.sessions[session.session_id] = session
        return session

    def _record_session(self, session_id: str | None) -> None:
        if session_id is None:
            return
        session = self.sessions.get(session_id)
        metadata = session.metadata if session is not None else {}
        # pid: the session is active while this process (the service) is alive.
        self.store.sessions.ensure(session_id, self.backend, pid=os.getpid(), **metadata)

    def finish_session(self, session_id: str, status: str, detail: str | None) -> None:
        """Mark an SDK session finished (first reason wins) and let its models go: later
        requests of its clients are refused, as on the service."""
        session = self.sessions.get(session_id)
        if session is not None:
            session.finished = True
        if status in ("success", "errored", "interrupted"):
            self.store.sessions.finish(session_id, status, detail)
        for model_id, slot in list(self.models.items()):
            if slot.model.run.session_id == session_id:
                self.unload(model_id)

    # --- models --------------------------------------------------------------------------

    def model(self, model_id: str | None) -> ModelSlot | None:
        return self.models.get(model_id or "")

    def _register(self, model: Model) -> Model:
        # Called on the service worker: a dict store is atomic.
        self.models[model.model_id] = ModelSlot(model)
        return model

    def create_model(
        self,
        base_model: str,
        lora: LoraConfig,
        user_metadata: dict[str, str] | None,
        optimizer: types.OptimizerConfig | None,
        *,
        session_id: str | None,
    ) -> Future[Model]:
        """A new LoRA training run on ``base_model``."""

        def create() -> Model:
            check_lora_rank(lora.rank)  # before any allocation: rank 10**8 was a MemoryError
            spec = self.factory.resolve(base_model)
            engine = new_engine(self.factory, spec, lora, optimizer)
            self._record_session(session_id)
            run = self.store.create_run(
                self.backend, base_model, lora, user_metadata, session_id=session_id
            )
            return self._register(Model(self, engine, run, run.run_id))

        return self._worker.submit("create_model", create)

    def load_model(
        self,
        path: str,
        *,
        with_optimizer: bool,
        base_model: str | None,
        user_metadata: dict[str, str] | None,
        optimizer: types.OptimizerConfig | None,
        session_id: str | None,
        model_id: str | None = None,
    ) -> Future[Model]:
        """A new training run starting from a ``weights`` checkpoint (with its optimizer
        state and optimizer if ``with_optimizer``), addressed as ``model_id``."""

        def create() -> Model:
            _, kind, _ = parse_tinker_path(path)
            if kind != "weights":
                raise WrongCheckpointKindError(path, "create_training_client_from_state", "weights")
            loaded = self.store.load(path, with_optimizer=with_optimizer, backend=self.backend)
            name = base_model or loaded.record.base_model
            spec = self.factory.resolve(name)
            lora = LoraConfig(**loaded.record.lora)
            check_lora_rank(lora.rank)  # a hand-edited record: refused before allocating
            config = optimizer
            if with_optimizer and loaded.optimizer is not None:
                config = optimizer_config_of(loaded.optimizer)
            engine = new_engine(self.factory, spec, lora, config)
            load(engine, EngineState(loaded.weights, loaded.optimizer))
            self._record_session(session_id)
            run = self.store.create_run(
                self.backend, name, lora, user_metadata, session_id=session_id
            )
            return self._register(Model(self, engine, run, model_id or run.run_id))

        return self._worker.submit("create_model", create)

    def run_id(self, model_or_run_id: str) -> str:
        """The store's run id for an id the SDK uses (a model's wire id, or a run id)."""
        slot = self.models.get(model_or_run_id)
        return slot.model.run_id if slot is not None else model_or_run_id

    def unload(self, model_id: str) -> None:
        slot = self.models.pop(model_id, None)
        if slot is not None:
            slot.model.close()

    # --- samplers ------------------------------------------------------------------------

    def create_sampler(
        self, *, model_path: str | None, base_model: str | None, session_id: str | None
    ) -> Future[Sampler]:
        """A sampler on a ``sampler_weights`` checkpoint, or on a base model."""

        def create() -> Sampler:
            if model_path is not None:
                return self._sampler_from_path(model_path)
            assert base_model is not None
            engine = new_engine(self.factory, self.factory.resolve(base_model), None)
            return Sampler(self, lambda: engine, base_model=base_model)

        return self._worker.submit("create_sampling_session", create)

    def _sampler_from_path(self, model_path: str) -> Sampler:
        _, kind, _ = parse_tinker_path(model_path)
        if kind == "weights":
            raise WrongCheckpointKindError(model_path, "create_sampling_client", "sampler_weights")
        loaded = self.store.load(model_path, backend=self.backend)
        base = loaded.record.base_model
        engine = new_engine(
            self.factory, self.factory.resolve(base), LoraConfig(**loaded.record.lora)
        )
        load(engine, EngineState(loaded.weights))
        return Sampler(self, lambda: engine, base_model=base, model_path=model_path)

    def add_sampler(
        self, sampling_session_id: str, sampler: Future[Sampler], session_id: str | None
    ) -> SamplerSlot:
        """File a sampling session (and, once it exists, record it in its SDK session)."""
        slot = SamplerSlot(sampling_session_id, sampler)
        self.samplers[sampling_session_id] = slot

        def note(created: Sampler) -> Sampler:
            if session_id is not None:
                self._record_session(session_id)
                self.store.sessions.add_sampler(
                    session_id,
                    self.backend,
                    sampling_session_id,
                    created.base_model,
                    created.model_path,
                )
            return created

        slot.sampler = chain(sampler, note)
        return slot

    # --- what the service knows about its models -------------------------------------------

    def tokenizer_id(self, spec: ModelSpec) -> str:
        """A local folder holding ``spec``'s tokenizer, which the SDK's ``get_tokenizer()``
        loads with ``AutoTokenizer.from_pretrained`` (no hub). Saved once per model."""
        from tinkerkit.models.tokenizers.folders import saved_folder

        with self._lock:
            known = self._tokenizer_ids.get(spec.name)
        if known is None:
            named = getattr(self.factory, "tokenizer_id", None)
            name = str(named(spec)) if callable(named) else spec.name
            # A mapped model folder holds its tokenizer already; anything else is saved.
            is_folder = Path(name).is_dir() and (Path(name) / "tokenizer_config.json").is_file()
            known = name if is_folder else str(saved_folder(self.factory.tokenizer(spec), name))
            with self._lock:
                self._tokenizer_ids[spec.name] = known
        return known

    def capabilities(self) -> types.GetServerCapabilitiesResponse:
        """Every model the backend knows, trainable and sampleable, with its context length."""
        models = []
        for name in self.factory.known_models():
            spec = self.factory.resolve(name)
            models.append(
                types.SupportedModel(
                    model_name=name,
                    max_context_length=spec.max_context_length,
                    trainable=True,
                    sampleable=True,
                )
            )
        return types.GetServerCapabilitiesResponse(supported_models=models)

    def close(self) -> None:
        """Finish every session (their heartbeats stop) and let every model go."""
        for session in self.sessions.values():
            session.finished = True
        for model_id in list(self.models):
            self.unload(model_id)
        for slot in self.samplers.values():
            slot.sampler.add_done_callback(
                lambda f: (
                    f.result().close() if not f.cancelled() and f.exception() is None else None
                )
            )
        self.samplers.clear()
        self._worker.close()


def optimizer_config_of(state: dict[str, Any]) -> types.OptimizerConfig | None:
    """The optimizer a saved optimizer state belongs to (None: AdamW, the default)."""
    kind = state.get("optimizer")
    if kind is None:
        return None
    name = bytes(kind.tobytes()).decode() if hasattr(kind, "tobytes") else str(kind)
    if name == "dimuon":
        return types.DimuonOptimizerConfig()
    return None
