"""Generators: text in, text out. Adapters for tinker sampling clients and for Claude.

Anything with ``generate(prompt: str) -> str`` is a :class:`Generator`; these two come
with tinkerkit:

* :class:`SamplingClientGenerator` wraps any tinker-shaped ``SamplingClient`` (offline
  ``mock``/``local``, or the real service), rendering the prompt with the model's chat
  template;
* :class:`AnthropicGenerator` calls Claude, if the optional ``anthropic`` package is
  installed.
"""

from __future__ import annotations

import os
from typing import Any, Protocol, runtime_checkable

from tinker import types

from tinkerkit.data.notes.errors import GenerationError, GeneratorUnavailableError
from tinkerkit.models.client_tokenizer import tokenizer_of
from tinkerkit.protocols import SamplingClientLike, Tokenizer

__all__ = [
    "AnthropicGenerator",
    "Generator",
    "SamplingClientGenerator",
    "generator_identity",
]


@runtime_checkable
class Generator(Protocol):
    """Text in, text out. An optional ``identity: str`` attribute names it in the cache."""

    def generate(self, prompt: str) -> str: ...


def generator_identity(generator: Generator) -> str:
    """What distinguishes this generator's outputs in the cache: its ``identity`` attribute,
    or else its class name (so give custom generators an ``identity`` that names the model
    and settings).

    Example:
        >>> generator_identity(SamplingClientGenerator(sc, max_tokens=64, seed=0))
        'sampling|tinkerkit/tiny|max_tokens=64|temperature=0.7|seed=0'
    """
    identity = getattr(generator, "identity", None)
    if isinstance(identity, str) and identity:
        return identity
    return f"{type(generator).__module__}.{type(generator).__qualname__}"


class SamplingClientGenerator:
    """Generate with a tinker-shaped ``SamplingClient`` (offline or the real service).

    The prompt becomes one user message rendered with the tokenizer's chat template
    (plain text when the tokenizer has none); the reply is decoded without special tokens.

    Example:
        >>> sc = tk.connect("mock").create_sampling_client(base_model="tinkerkit/tiny").result()
        >>> SamplingClientGenerator(sc, max_tokens=64, seed=0).generate("Say hi")
        '\\x0eG...'   # a tiny random model writes noise
    """

    def __init__(
        self,
        sampling_client: SamplingClientLike,
        max_tokens: int = 1024,
        temperature: float = 0.7,
        seed: int | None = None,
        *,
        system_prompt: str | None = None,
        stop: list[str] | list[int] | None = None,
        tokenizer: Tokenizer | None = None,
        identity: str | None = None,
    ) -> None:
        self.sampling_client = sampling_client
        self.tokenizer = tokenizer if tokenizer is not None else tokenizer_of(sampling_client)
        self.params = types.SamplingParams(
            max_tokens=max_tokens, temperature=temperature, seed=seed, stop=stop
        )
        self.system_prompt = system_prompt
        self.identity = identity or self._default_identity()

    def _default_identity(self) -> str:
        client = self.sampling_client
        model = getattr(client, "model_path", None)
        if not model:
            try:
                model = client.get_base_model()
            except Exception:  # an identity is best-effort; never fail construction on it
                model = type(client).__qualname__
        p = self.params
        parts = [
            "sampling",
            str(model),
            f"max_tokens={p.max_tokens}",
            f"temperature={p.temperature}",
            f"seed={p.seed}",
        ]
        if p.stop is not None:
            parts.append(f"stop={p.stop!r}")
        if self.system_prompt:
            parts.append(f"system={self.system_prompt!r}")
        return "|".join(parts)

    def __repr__(self) -> str:
        return f"SamplingClientGenerator({self.identity!r})"

    def render(self, prompt: str) -> list[int]:
        """The prompt's token ids, as the model expects a user turn and a reply to follow."""
        tok = self.tokenizer
        messages = [{"role": "user", "content": prompt}]
        if self.system_prompt:
            messages.insert(0, {"role": "system", "content": self.system_prompt})
        if getattr(tok, "chat_template", None):
            text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            # The template already holds any BOS; adding special tokens would double it.
            return list(tok.encode(text, add_special_tokens=False))
        plain = "\n\n".join(m["content"] for m in messages) + "\n\n"
        return list(tok.encode(plain))

    def generate(self, prompt: str) -> str:
        """Sample one reply to ``prompt`` and return its text."""
        model_input = types.ModelInput.from_ints(self.render(prompt))
        future = self.sampling_client.sample(
            prompt=model_input, num_samples=1, sampling_params=self.params
        )
        sequence = future.result().sequences[0]
        text: str = self.tokenizer.decode(list(sequence.tokens), skip_special_tokens=True)
        return text


class AnthropicGenerator:
    """Generate with Claude through the optional ``anthropic`` package.

    The key comes from ``api_key`` or ``ANTHROPIC_API_KEY``; it is never logged or shown in
    ``repr``. Pass ``client=`` to use a preconfigured (or fake) ``anthropic.Anthropic``.

    Example:
        >>> gen = AnthropicGenerator()          # needs `pip install anthropic`
        >>> pairs = generate_qa(text, gen, num_pairs=20)
    """

    def __init__(
        self,
        model: str = "claude-sonnet-4-20250514",
        max_tokens: int = 4000,
        temperature: float = 0.7,
        *,
        api_key: str | None = None,
        client: Any = None,
    ) -> None:
        if client is None:
            try:
                import anthropic
            except ImportError as exc:
                raise GeneratorUnavailableError(
                    "AnthropicGenerator needs the 'anthropic' package: pip install anthropic "
                    "(or use SamplingClientGenerator with a tinker sampling client)."
                ) from exc
            key = api_key or os.environ.get("ANTHROPIC_API_KEY")
            if not key:
                raise GeneratorUnavailableError(
                    "AnthropicGenerator needs an API key: set ANTHROPIC_API_KEY or pass api_key=..."
                )
            client = anthropic.Anthropic(api_key=key)
        self._client = client
        self.model = model
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.identity = f"anthropic|{model}|max_tokens={max_tokens}|temperature={temperature}"

    def __repr__(self) -> str:
        return f"AnthropicGenerator(model={self.model!r})"

    def generate(self, prompt: str) -> str:
        """Send ``prompt`` as one user message; return the text blocks of the reply."""
        try:
            response = self._client.messages.create(
                model=self.model,
                max_tokens=self.max_tokens,
                temperature=self.temperature,
                messages=[{"role": "user", "content": prompt}],
            )
        except Exception as exc:
            if type(exc).__module__.startswith("anthropic"):
                # The SDK's message names the status and reason, never the key.
                raise GenerationError(f"Anthropic API call failed: {exc}") from exc
            raise
        return "".join(getattr(block, "text", "") for block in response.content)
