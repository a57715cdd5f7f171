"""The offline ``SamplingClient``: a ``tinker.SamplingClient`` sampling from an offline engine.

Like the SDK's client it is picklable and has string handles
(``get_sampler_handle`` / ``SamplingClient.from_sampler_handle``), so it can be handed
to worker processes; an unnamed snapshot's weights are written under
``TINKERKIT_HOME/samplers`` the first time it leaves the process.
"""

from __future__ import annotations

import base64
import json
import threading
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tinker
from tinker import types
from tinker.lib.public_interfaces.api_future import APIFuture

from tinkerkit.atomic import staged_folder
from tinkerkit.backends import prompt_scoring, sampler
from tinkerkit.backends.context import OfflineContext
from tinkerkit.backends.engine import Engine, EngineInput, EngineState, LoraConfig, load, new_engine
from tinkerkit.backends.futures import SampleFuture
from tinkerkit.backends.limits import check_sampled_tokens, check_sampling
from tinkerkit.backends.sdk_surface import mirrors
from tinkerkit.backends.store import parse_tinker_path
from tinkerkit.errors import (
    InvalidPromptError,
    PromptTypeError,
    RequestLimitError,
    WrongCheckpointKindError,
)
from tinkerkit.paths import tinkerkit_home
from tinkerkit.rules.datums import check_tokens, model_input_tokens, text_token_count


def _prompt_tokens(prompt: Any, engine: Engine) -> list[int]:
    if isinstance(prompt, str | list | tuple):
        raise PromptTypeError(
            f"prompt must be a tinker.types.ModelInput, got {type(prompt).__name__}. Build one "
            "with types.ModelInput.from_ints(tokenizer.encode(text)), or call "
            "tk.sample_text(sampling_client, text) for strings and chat messages."
        )
    if not isinstance(prompt, types.ModelInput):
        raise PromptTypeError(
            f"prompt must be a tinker.types.ModelInput, got {type(prompt).__name__}."
        )
    tokens = model_input_tokens(0, prompt)
    if not tokens:
        raise InvalidPromptError("prompt is empty; give the model at least one token.")
    spec = engine.spec
    if len(tokens) >= spec.max_context_length:
        raise InvalidPromptError(
            f"prompt of {len(tokens)} tokens leaves no room in the model's context of "
            f"{spec.max_context_length} tokens; shorten it."
        )
    check_tokens(0, "prompt", np.asarray(tokens), spec)
    return tokens


def _check_last_n(last_n: int | None, length: int) -> None:
    if last_n is not None and not 1 <= last_n <= length - 1:
        raise InvalidPromptError(
            f"prompt_logprobs_last_n must be between 1 and len(prompt) - 1 = {length - 1}, "
            f"got {last_n}."
        )


def check_sample_arguments(
    include_prompt_logprobs: bool,
    target_prompt_logprobs: types.TensorData | None,
    prompt_alt_tokens_k: int,
    prompt_logprobs_last_n: int | None,
) -> None:
    """What the SDK refuses before sending a sample request (``ValueError``, as it raises)."""
    if target_prompt_logprobs is not None:
        if target_prompt_logprobs.dtype != "int64":
            raise ValueError(
                "target_prompt_logprobs must be an int64 tensor of token ids, "
                f"got {target_prompt_logprobs.dtype}"
            )
        shape = target_prompt_logprobs.shape
        if shape is None or len(shape) != 2:
            raise ValueError(
                f"target_prompt_logprobs must be 2-D, [len(prompt) - 1, K], got shape {shape}"
            )
    if prompt_alt_tokens_k < 0:
        raise ValueError(f"prompt_alt_tokens_k must be 0 or greater, got {prompt_alt_tokens_k}")
    if prompt_logprobs_last_n is not None:
        if prompt_logprobs_last_n < 1:
            raise ValueError(
                f"prompt_logprobs_last_n must be 1 or greater, got {prompt_logprobs_last_n}"
            )
        if not include_prompt_logprobs:
            raise ValueError(
                "prompt_logprobs_last_n applies to prompt logprobs; set include_prompt_logprobs"
            )


class InflightWeights:
    """A training model's shared ``kind="inflight"`` target: the latest published snapshot.

    Every inflight sampling client samples from whatever was published last when its
    request runs (the service's contract: the weights saved when the client was created,
    or newer).
    """

    def __init__(self) -> None:
        self._engine: Engine | None = None
        self._lock = threading.Lock()

    def publish(self, engine: Engine) -> None:
        with self._lock:
            self._engine = engine

    def current(self) -> Engine:
        with self._lock:
            assert self._engine is not None, "nothing was published to this inflight target"
            return self._engine


@dataclass(frozen=True)
class SamplerHandle:
    """Everything another process needs to rebuild a sampling client (no credentials)."""

    backend: str
    base_model: str
    latency: float
    record_stability_info: bool
    model_path: str | None = None
    weights_dir: str | None = None
    lora: dict[str, Any] | None = None

    def encode(self) -> str:
        payload = json.dumps({"tinkerkit": 1, **asdict(self)}, separators=(",", ":"))
        return base64.urlsafe_b64encode(payload.encode()).decode()

    @staticmethod
    def decode(handle: str) -> SamplerHandle:
        try:
            fields = json.loads(base64.urlsafe_b64decode(handle.encode()))
        except (ValueError, TypeError) as exc:
            raise ValueError(f"not a tinkerkit sampler handle: {handle[:40]!r}...") from exc
        if not isinstance(fields, dict) or fields.pop("tinkerkit", None) != 1:
            raise ValueError(
                "not a tinkerkit sampler handle (handles from the Tinker service need "
                "tinker.SamplingClient.from_sampler_handle)"
            )
        return SamplerHandle(**fields)


@mirrors(tinker.SamplingClient)
class SamplingClient(tinker.SamplingClient):
    """Samples from a frozen copy of some weights (a checkpoint, a snapshot, or a base model)."""

    def __init__(
        self,
        context: OfflineContext,
        engine: Engine | InflightWeights,
        model_path: str | None,
        *,
        base_model: str | None = None,
        record_stability_info: bool = False,
        lora: dict[str, Any] | None = None,
    ) -> None:
        self._context = context
        self._source = engine
        self._dispatcher = context.dispatcher("tinkerkit-sampler", label="SamplingClient")
        self.model_path = model_path
        self._base_model = base_model or self._engine().spec.name
        self._record_stability_info = record_stability_info
        self._lora = lora
        self._sampling_session_id = f"{context.session_id}:sample:{uuid.uuid4().hex[:12]}"
        self._handle: SamplerHandle | None = None

    @property
    def sampler_id(self) -> str:
        """This sampler's id (``RestClient.get_sampler``), as the service's sampling session id."""
        return self._sampling_session_id

    def _engine(self) -> Engine:
        source = self._source
        return source.current() if isinstance(source, InflightWeights) else source

    def __repr__(self) -> str:
        return f"<SamplingClient {self._context.backend}: {self.model_path or self._base_model}>"

    # --- sampling ----------------------------------------------------------------------

    def _prompt_logprobs(
        self, engine: Engine, tokens: list[int], last_n: int | None
    ) -> list[float | None]:
        out: list[float | None] = [None]
        if len(tokens) > 1:
            item = EngineInput(np.asarray(tokens[:-1]), np.asarray(tokens[1:]))
            out.extend(float(x) for x in engine.forward([item], grad=False).logprobs[0])
        if last_n is not None:
            out[: len(out) - last_n] = [None] * (len(out) - last_n)
        return out

    def sample(
        self,
        prompt: types.ModelInput,
        num_samples: int,
        sampling_params: types.SamplingParams,
        include_prompt_logprobs: bool = False,
        topk_prompt_logprobs: int = 0,
        topk_sample_logprobs: int = 0,
        target_prompt_logprobs: types.TensorData | None = None,
        prompt_alt_tokens_k: int = 0,
        prompt_logprobs_last_n: int | None = None,
    ) -> APIFuture[types.SampleResponse]:
        """Draw ``num_samples`` continuations of ``prompt``.

        Each returned sequence carries a ``sequence_id``, fixed when the request is
        submitted (``future.sequence_ids``); with ``record_stability_info=True`` the
        sequences are recorded under those ids for ``stable_reinforce``. The top-k,
        target and alternative-token fields are computed from the model's full
        next-token distributions (``backends/prompt_scoring.py``).

        Example:
            >>> prompt = types.ModelInput.from_ints(tok.encode("Hello"))
            >>> out = sampling.sample(prompt, 1, types.SamplingParams(max_tokens=8)).result()
            >>> out.sequences[0].tokens, out.sequences[0].logprobs
        """
        return self._submit_sample(
            prompt,
            num_samples,
            sampling_params,
            include_prompt_logprobs=include_prompt_logprobs,
            topk_prompt_logprobs=topk_prompt_logprobs,
            topk_sample_logprobs=topk_sample_logprobs,
            target_prompt_logprobs=target_prompt_logprobs,
            prompt_alt_tokens_k=prompt_alt_tokens_k,
            prompt_logprobs_last_n=prompt_logprobs_last_n,
            record_stability_info=self._record_stability_info,
        )

    def _submit_sample(
        self,
        prompt: types.ModelInput,
        num_samples: int,
        sampling_params: types.SamplingParams,
        *,
        include_prompt_logprobs: bool,
        topk_prompt_logprobs: int,
        topk_sample_logprobs: int,
        target_prompt_logprobs: types.TensorData | None,
        prompt_alt_tokens_k: int,
        prompt_logprobs_last_n: int | None,
        record_stability_info: bool,
        sequence_ids: list[str] | None = None,
    ) -> SampleFuture[types.SampleResponse]:
        """``sample``, recording or not as ``record_stability_info`` says (the server
        passes each request's own flag: there one client serves a whole sampling session).
        The future's ``sequence_ids`` are the ids its sequences will carry: new ones, or
        ``sequence_ids`` (one per sample) where the caller promised them already — the
        server answers a request with its ids before the engine starts on it."""
        check_sample_arguments(
            include_prompt_logprobs,
            target_prompt_logprobs,
            prompt_alt_tokens_k,
            prompt_logprobs_last_n,
        )
        # Over a limit: refused before any id is made (100M ids took the server down);
        # the future fails, as the service's 400 fails the SDK's.
        try:
            self._check_limits(prompt, num_samples, sampling_params)
            refused: RequestLimitError | None = None
        except RequestLimitError as exc:
            refused, sequence_ids = exc, []
        if sequence_ids is None:
            sequence_ids = [
                f"{self._sampling_session_id}:{uuid.uuid4().hex[:16]}" for _ in range(num_samples)
            ]
        ids = list(sequence_ids)
        context = self._context

        def run() -> types.SampleResponse:
            if refused is not None:
                raise refused
            if not isinstance(sampling_params, types.SamplingParams):
                raise InvalidPromptError(
                    f"sampling_params must be tinker.types.SamplingParams, got "
                    f"{type(sampling_params).__name__}."
                )
            engine = self._engine()
            tokens = _prompt_tokens(prompt, engine)
            _check_last_n(prompt_logprobs_last_n, len(tokens))
            vocab_size = engine.spec.vocab_size
            prompt_scoring.check_topk("topk_sample_logprobs", topk_sample_logprobs, vocab_size)
            requests = prompt_scoring.check_prompt_requests(
                tokens,
                vocab_size,
                sampling_params,
                topk_prompt_logprobs=topk_prompt_logprobs,
                target_prompt_logprobs=target_prompt_logprobs,
                prompt_alt_tokens_k=prompt_alt_tokens_k,
                prompt_logprobs_last_n=prompt_logprobs_last_n,
            )
            factory = context.factory
            tokenizer: Any = factory.tokenizer(engine.spec)
            sequences = sampler.sample(
                engine.decoder,
                tokens,
                num_samples,
                sampling_params,
                max_context=engine.spec.max_context_length,
                default_stop_tokens=factory.stop_tokens(engine.spec),
                decode=tokenizer.decode,
                sequence_ids=ids,
                topk=topk_sample_logprobs,
            )
            if record_stability_info:
                for seq in sequences:
                    context.sequences.record(
                        seq.sequence_id, tokens, seq.tokens, seq.logprobs or []
                    )
            prompt_lp = None
            if include_prompt_logprobs:
                values = self._prompt_logprobs(engine, tokens, prompt_logprobs_last_n)
                prompt_lp = np.array([np.nan if v is None else v for v in values], dtype=np.float32)
            scores = prompt_scoring.score_prompt(
                engine.decoder, tokens, requests, engine.next_token_logprobs
            )
            return types.SampleResponse(
                sequences=sequences,
                prompt_logprobs_np=prompt_lp,
                topk_prompt_logprobs_np=scores.topk,
                target_prompt_logprobs=scores.target,
                prompt_alt_tokens=scores.alt_tokens,
            )

        future = self._dispatcher.submit_sample("sample", run)
        future.sequence_ids = ids  # type: ignore[attr-defined]
        return future

    def _check_limits(self, prompt: Any, num_samples: Any, sampling_params: Any) -> None:
        """The request limits (``tinkerkit.backends.limits``): ``RequestLimitError`` before
        any work. Ill-typed arguments pass, for the request itself to refuse by name."""
        if not isinstance(sampling_params, types.SamplingParams):
            return
        check_sampling(num_samples, sampling_params)
        if isinstance(prompt, types.ModelInput):
            length = text_token_count([prompt])
            context = self._engine().spec.max_context_length
            check_sampled_tokens(num_samples, sampling_params, length, context)

    async def sample_async(
        self,
        prompt: types.ModelInput,
        num_samples: int,
        sampling_params: types.SamplingParams,
        include_prompt_logprobs: bool = False,
        topk_prompt_logprobs: int = 0,
        topk_sample_logprobs: int = 0,
        target_prompt_logprobs: types.TensorData | None = None,
        prompt_alt_tokens_k: int = 0,
        prompt_logprobs_last_n: int | None = None,
    ) -> types.SampleResponse:
        return await self.sample(
            prompt,
            num_samples,
            sampling_params,
            include_prompt_logprobs,
            topk_prompt_logprobs,
            topk_sample_logprobs,
            target_prompt_logprobs,
            prompt_alt_tokens_k,
            prompt_logprobs_last_n,
        )

    def compute_logprobs(
        self, prompt: types.ModelInput, prompt_logprobs_last_n: int | None = None
    ) -> APIFuture[list[float | None]]:
        """Logprob of every prompt token given the ones before it (``None`` for the first).

        Example:
            >>> sampling.compute_logprobs(types.ModelInput.from_ints([72, 105, 33])).result()
            [None, -5.1, -4.7]
        """
        check_sample_arguments(True, None, 0, prompt_logprobs_last_n)

        def run() -> list[float | None]:
            engine = self._engine()
            tokens = _prompt_tokens(prompt, engine)
            _check_last_n(prompt_logprobs_last_n, len(tokens))
            return self._prompt_logprobs(engine, tokens, prompt_logprobs_last_n)

        return self._dispatcher.submit_sample("compute_logprobs", run)

    async def compute_logprobs_async(
        self, prompt: types.ModelInput, prompt_logprobs_last_n: int | None = None
    ) -> list[float | None]:
        return await self.compute_logprobs(prompt, prompt_logprobs_last_n)

    # --- model info --------------------------------------------------------------------

    def get_tokenizer(self) -> Any:
        """The model's tokenizer (offline: no download)."""
        return self._context.factory.tokenizer(self._engine().spec)

    def get_base_model(self) -> str:
        """The base model name of this sampler; answered from the client, no request."""
        return self._base_model

    async def get_base_model_async(self) -> str:
        return self._base_model

    def get_telemetry(self) -> None:
        return None

    def on_queue_state_change(self, queue_state: Any, queue_state_reason: str | None) -> None:
        """Offline samplers never queue; nothing to report."""

    @staticmethod
    def create(
        holder: Any,
        *,
        model_path: str | None = None,
        base_model: str | None = None,
        sampling_session_id: str | None = None,
        retry_config: Any = None,
        record_stability_info: bool = False,
    ) -> Any:
        """Not offline: the SDK builds clients from its internal holder. Use
        ``ServiceClient.create_sampling_client`` or ``SamplingClient.from_sampler_handle``."""
        raise TypeError(
            "SamplingClient.create takes the SDK's internal client holder, which offline "
            "backends do not have; use service.create_sampling_client(...) or "
            "training.save_weights_and_get_sampling_client() instead."
        )

    # --- handing the client to other processes -----------------------------------------------

    def _sampler_handle(self) -> SamplerHandle:
        if self._handle is not None and not isinstance(self._source, InflightWeights):
            return self._handle
        context = self._context
        weights_dir = None
        if self.model_path is None and self._lora is not None:
            weights_dir = str(_persist_snapshot(self._engine(), self._lora))
        self._handle = SamplerHandle(
            backend=context.factory.name,
            base_model=self._base_model,
            latency=context.latency,
            record_stability_info=self._record_stability_info,
            model_path=self.model_path,
            weights_dir=weights_dir,
            lora=self._lora,
        )
        return self._handle

    def get_sampler_handle(self) -> str:
        """A string naming this sampler that ``SamplingClient.from_sampler_handle`` turns
        into a new client for the same weights, in any process (no credentials inside).

        Example:
            >>> handle = sampling.get_sampler_handle()
            >>> again = tk.backends.sampling_client.SamplingClient.from_sampler_handle(handle)
        """
        return self._sampler_handle().encode()

    @staticmethod
    def from_sampler_handle(handle: str, *, api_key: str | None = None) -> SamplingClient:
        """A new client for the sampler behind ``handle`` (from ``get_sampler_handle``)."""
        return _from_handle(SamplerHandle.decode(handle))

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return (_from_handle, (self._sampler_handle(),))


def _persist_snapshot(engine: Engine, lora: dict[str, Any]) -> Path:
    """Write an unnamed snapshot's weights once, so another process can load them."""
    from safetensors.numpy import save_file

    root = tinkerkit_home() / "samplers"
    folder = root / uuid.uuid4().hex
    with staged_folder(folder, prefix=".tmp-") as tmp:
        save_file(engine.state().weights, str(tmp / "adapter_model.safetensors"))
        meta = {"lora": lora, "base_model": engine.spec.name}
        (tmp / "sampler.json").write_text(json.dumps(meta))
    return folder


def sampling_client_from_path(
    context: OfflineContext, model_path: str, record_stability_info: bool = False
) -> SamplingClient:
    """A sampling client on a ``sampler_weights`` checkpoint (what the service samples from)."""
    _, kind, _ = parse_tinker_path(model_path)
    if kind == "weights":
        raise WrongCheckpointKindError(model_path, "create_sampling_client", "sampler_weights")
    loaded = context.store.load(model_path, backend=context.backend)
    spec = context.factory.resolve(loaded.record.base_model)
    engine = new_engine(context.factory, spec, LoraConfig(**loaded.record.lora))
    load(engine, EngineState(loaded.weights))
    return SamplingClient(
        context,
        engine,
        model_path,
        base_model=loaded.record.base_model,
        record_stability_info=record_stability_info,
        lora=loaded.record.lora,
    )


def _from_handle(handle: SamplerHandle) -> SamplingClient:
    from safetensors.numpy import load_file

    from tinkerkit.backends.registry import engine_factory

    context = OfflineContext(factory=engine_factory(handle.backend), latency=handle.latency)
    if handle.model_path is not None:
        return sampling_client_from_path(context, handle.model_path, handle.record_stability_info)
    factory = context.factory
    spec = factory.resolve(handle.base_model)
    lora = LoraConfig(**handle.lora) if handle.lora is not None else None
    engine = new_engine(factory, spec, lora)
    if handle.weights_dir is not None:
        weights = load_file(str(Path(handle.weights_dir) / "adapter_model.safetensors"))
        load(engine, EngineState(weights))
    return SamplingClient(
        context,
        engine,
        None,
        base_model=handle.base_model,
        record_stability_info=handle.record_stability_info,
        lora=handle.lora,
    )
