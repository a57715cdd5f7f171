"""A sampler the service samples from: a frozen copy of some weights, or a model's
``inflight`` target (whatever it published last).

``sample`` draws continuations with the service's stop rule and, where asked, scores
the prompt (logprobs, top-k, target ids, alternative tokens) from the model's full
next-token distributions (``backends/prompt_scoring.py``). Sequences sampled with
``record_stability_info`` are recorded under the ids the service promised, for
``stable_reinforce``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np
from tinker import types

from tinkerkit.backends import prompt_scoring, sampler
from tinkerkit.backends.engine import BatchSampling, Engine, EngineInput
from tinkerkit.backends.limits import check_sampled_tokens, check_sampling
from tinkerkit.errors import InvalidPromptError
from tinkerkit.rules import images
from tinkerkit.rules.datums import check_tokens, text_token_count
from tinkerkit.rules.images import Picture
from tinkerkit.server.state import chain
from tinkerkit.server.worker import Later, Worker

if TYPE_CHECKING:
    from tinkerkit.server.service import Service


@dataclass(frozen=True)
class SampleCall:
    """One ``asample`` request, as the wire gives it."""

    prompt: types.ModelInput
    num_samples: int
    params: types.SamplingParams
    sequence_ids: list[str]
    prompt_logprobs: bool = False
    topk_prompt_logprobs: int = 0
    topk_sample_logprobs: int = 0
    target_prompt_logprobs: types.TensorData | None = None
    prompt_alt_tokens_k: int = 0
    prompt_logprobs_last_n: int | None = None
    record_stability_info: bool = False


class Sampler:
    """Samples from the engine ``source()`` gives at the time each request runs."""

    def __init__(
        self,
        service: Service,
        source: Callable[[], Engine],
        *,
        base_model: str,
        model_path: str | None = None,
    ) -> None:
        self.service = service
        self._source = source
        self.base_model = base_model
        self.model_path = model_path
        self.worker = Worker("tinkerkit-sampler", service.latency, service.faults)

    def engine(self) -> Engine:
        return self._source()

    def check_limits(self, call: SampleCall) -> None:
        """The request limits (``backends/limits.py``): ``RequestLimitError`` before any work."""
        check_sampling(call.num_samples, call.params)
        length = text_token_count([call.prompt])
        context = self.engine().spec.max_context_length
        check_sampled_tokens(call.num_samples, call.params, length, context)

    def sample(self, call: SampleCall) -> Future[types.SampleResponse]:
        """Draw ``call.num_samples`` continuations of ``call.prompt``.

        Example:
            >>> sampler.sample(SampleCall(prompt, 1, types.SamplingParams(max_tokens=8), ["s:0"]))
        """
        return self.worker.submit("sample", lambda: self._sample(call))

    def _sample(self, call: SampleCall) -> types.SampleResponse | Later:
        engine = self.engine()
        tokens, pictures = prompt_tokens(call.prompt, engine)
        check_last_n(call.prompt_logprobs_last_n, len(tokens))
        vocab_size = engine.spec.vocab_size
        prompt_scoring.check_topk("topk_sample_logprobs", call.topk_sample_logprobs, vocab_size)
        requests = prompt_scoring.check_prompt_requests(
            tokens,
            vocab_size,
            call.params,
            topk_prompt_logprobs=call.topk_prompt_logprobs,
            target_prompt_logprobs=call.target_prompt_logprobs,
            prompt_alt_tokens_k=call.prompt_alt_tokens_k,
            prompt_logprobs_last_n=call.prompt_logprobs_last_n,
        )
        factory = self.service.factory
        tokenizer: Any = factory.tokenizer(engine.spec)
        job = sampler.job(
            tokens,
            call.num_samples,
            call.params,
            max_context=engine.spec.max_context_length,
            default_stop_tokens=factory.stop_tokens(engine.spec),
            decode=tokenizer.decode,
            sequence_ids=call.sequence_ids,
            topk=call.topk_sample_logprobs,
            pictures=pictures,
        )
        prompt_lp = None
        if call.prompt_logprobs:
            values = prompt_logprobs(engine, tokens, call.prompt_logprobs_last_n, pictures)
            prompt_lp = np.array([np.nan if v is None else v for v in values], dtype=np.float32)
        prefill = engine.next_token_logprobs
        if pictures:  # the prefill scores prompt[:-1], which holds every image whole
            prefill = partial(engine.next_token_logprobs, pictures=pictures)
        scores = prompt_scoring.score_prompt(engine.decoder, tokens, requests, prefill)

        def respond(sequences: list[types.SampledSequence]) -> types.SampleResponse:
            if call.record_stability_info:
                for seq in sequences:
                    self.service.sequences.record(
                        seq.sequence_id, tokens, seq.tokens, seq.logprobs or []
                    )
            return types.SampleResponse(
                sequences=sequences,
                prompt_logprobs_np=prompt_lp,
                topk_prompt_logprobs_np=scores.topk,
                target_prompt_logprobs=scores.target,
                prompt_alt_tokens=scores.alt_tokens,
            )

        batched = engine.generate(job) if isinstance(engine, BatchSampling) else None
        if batched is not None:  # decoding with other requests; the worker moves on
            return Later(chain(batched, respond))
        decoder = partial(engine.decoder, pictures=pictures) if pictures else engine.decoder
        return respond(sampler.draw(decoder, job))

    def close(self) -> None:
        self.worker.close()


def prompt_tokens(prompt: types.ModelInput, engine: Engine) -> tuple[list[int], list[Picture]]:
    """The prompt's tokens and images, refused when empty, too long for the model or out of
    vocabulary."""
    tokens, pictures = images.read(prompt, engine.spec.vision, "prompt")
    if pictures and isinstance(prompt.chunks[-1], types.ImageChunk):
        raise InvalidPromptError(
            "the prompt ends with an image; end it with text (a chat's generation prompt), "
            "after which the model answers."
        )
    if not tokens:
        raise InvalidPromptError("prompt is empty; give the model at least one token.")
    spec = engine.spec
    if len(tokens) >= spec.max_context_length:
        raise InvalidPromptError(
            f"prompt of {len(tokens)} tokens leaves no room in the model's context of "
            f"{spec.max_context_length} tokens; shorten it."
        )
    check_tokens(0, "prompt", np.asarray(tokens), spec)
    return tokens, pictures


def check_last_n(last_n: int | None, length: int) -> None:
    if last_n is not None and not 1 <= last_n <= length - 1:
        raise InvalidPromptError(
            f"prompt_logprobs_last_n must be between 1 and len(prompt) - 1 = {length - 1}, "
            f"got {last_n}."
        )


def prompt_logprobs(
    engine: Engine, tokens: list[int], last_n: int | None, pictures: Sequence[Picture] = ()
) -> list[float | None]:
    """Logprob of every prompt token given the ones before it (``None`` for the first,
    and for all but the last ``last_n``)."""
    out: list[float | None] = [None]
    if len(tokens) > 1:
        item = EngineInput(np.asarray(tokens[:-1]), np.asarray(tokens[1:]), tuple(pictures))
        out.extend(float(x) for x in engine.forward([item], grad=False).logprobs[0])
    if last_n is not None:
        out[: len(out) - last_n] = [None] * (len(out) - last_n)
    return out
