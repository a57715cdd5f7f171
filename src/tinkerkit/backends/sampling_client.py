"""The offline ``SamplingClient``: same methods and types as ``tinker.SamplingClient``."""

from __future__ import annotations

from typing import Any

import numpy as np
from tinker import types
from tinker.lib.public_interfaces.api_future import APIFuture

from tinkerkit.backends import sampler
from tinkerkit.backends.context import OfflineContext
from tinkerkit.backends.engine import Engine, EngineInput
from tinkerkit.backends.validation import check_tokens, model_input_tokens
from tinkerkit.errors import InvalidPromptError, UnsupportedFeatureError


def _prompt_tokens(prompt: Any, engine: Engine) -> list[int]:
    if isinstance(prompt, str | list | tuple):
        raise InvalidPromptError(
            f"prompt must be a tinker.types.ModelInput, got {type(prompt).__name__}. Build one "
            "with types.ModelInput.from_ints(tokenizer.encode(text)), or call "
            "tk.sample_text(sampling_client, text) for strings and chat messages."
        )
    if not isinstance(prompt, types.ModelInput):
        raise InvalidPromptError(
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


class SamplingClient:
    """Samples from a frozen copy of some weights (a checkpoint, or a base model)."""

    def __init__(self, context: OfflineContext, engine: Engine, model_path: str | None) -> None:
        self._context = context
        self._engine = engine
        self._dispatcher = context.dispatcher("tinkerkit-sampler")
        self.model_path = model_path

    def __repr__(self) -> str:
        source = self.model_path or self._engine.spec.name
        return f"<SamplingClient {self._context.backend}: {source}>"

    # --- sampling ----------------------------------------------------------------------

    def _prompt_logprobs(self, tokens: list[int], last_n: int | None) -> list[float | None]:
        out: list[float | None] = [None]
        if len(tokens) > 1:
            item = EngineInput(np.asarray(tokens[:-1]), np.asarray(tokens[1:]))
            out.extend(float(x) for x in self._engine.forward([item], grad=False).logprobs[0])
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

        Example:
            >>> prompt = types.ModelInput.from_ints(tok.encode("Hello"))
            >>> out = sampling.sample(prompt, 1, types.SamplingParams(max_tokens=8)).result()
            >>> out.sequences[0].tokens, out.sequences[0].logprobs
        """
        for name, value in (
            ("topk_prompt_logprobs", topk_prompt_logprobs),
            ("topk_sample_logprobs", topk_sample_logprobs),
            ("prompt_alt_tokens_k", prompt_alt_tokens_k),
        ):
            if value:
                raise UnsupportedFeatureError(f"sample({name}=...)", self._context.backend)
        if target_prompt_logprobs is not None:
            raise UnsupportedFeatureError(
                "sample(target_prompt_logprobs=...)", self._context.backend
            )
        if not isinstance(sampling_params, types.SamplingParams):
            raise InvalidPromptError(
                f"sampling_params must be tinker.types.SamplingParams, got "
                f"{type(sampling_params).__name__}."
            )
        if num_samples < 1:
            raise InvalidPromptError(f"num_samples must be at least 1, got {num_samples}.")
        tokens = _prompt_tokens(prompt, self._engine)
        if prompt_logprobs_last_n is not None and not include_prompt_logprobs:
            raise InvalidPromptError(
                "prompt_logprobs_last_n requires include_prompt_logprobs=True."
            )
        _check_last_n(prompt_logprobs_last_n, len(tokens))
        engine = self._engine
        factory = self._context.factory

        def run() -> types.SampleResponse:
            tokenizer: Any = factory.tokenizer(engine.spec)
            sequences = sampler.sample(
                engine.decoder,
                tokens,
                num_samples,
                sampling_params,
                max_context=engine.spec.max_context_length,
                default_stop_tokens=factory.stop_tokens(engine.spec),
                decode=tokenizer.decode,
            )
            prompt_lp = None
            if include_prompt_logprobs:
                values = self._prompt_logprobs(tokens, prompt_logprobs_last_n)
                prompt_lp = np.array([np.nan if v is None else v for v in values], dtype=np.float32)
            return types.SampleResponse(sequences=sequences, prompt_logprobs_np=prompt_lp)

        return self._dispatcher.submit("sample", run)

    async def sample_async(self, *args: Any, **kwargs: Any) -> types.SampleResponse:
        return await self.sample(*args, **kwargs)

    def compute_logprobs(
        self, prompt: types.ModelInput, prompt_logprobs_last_n: int | None = None
    ) -> APIFuture[list[float | None]]:
        """Logprob of every prompt token given the ones before it (``None`` for the first).

        Example:
            >>> sampling.compute_logprobs(types.ModelInput.from_ints([72, 105, 33])).result()
            [None, -5.1, -4.7]
        """
        tokens = _prompt_tokens(prompt, self._engine)
        _check_last_n(prompt_logprobs_last_n, len(tokens))
        return self._dispatcher.submit(
            "compute_logprobs", lambda: self._prompt_logprobs(tokens, prompt_logprobs_last_n)
        )

    async def compute_logprobs_async(
        self, prompt: types.ModelInput, prompt_logprobs_last_n: int | None = None
    ) -> list[float | None]:
        return await self.compute_logprobs(prompt, prompt_logprobs_last_n)

    # --- model info --------------------------------------------------------------------

    def get_tokenizer(self) -> Any:
        return self._context.factory.tokenizer(self._engine.spec)

    def get_base_model(self) -> str:
        return self._engine.spec.name

    async def get_base_model_async(self) -> str:
        return self.get_base_model()
