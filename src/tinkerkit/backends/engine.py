"""The Engine protocol: the one narrow interface an offline backend implements.

Every built-in loss of the service is a function of the per-token logprobs of the
target tokens. So an engine only has to (1) compute those logprobs, (2) push a
gradient with respect to them back into its LoRA weights, (3) take a step of the
optimizer chosen at creation (AdamW or Dimuon, ``backends/optimizers.py``), (4) decode
tokens, and (5) hand its trainable state out and back in. Losses, validation,
ordering, futures, latency and checkpoints are written once, above it, in
``tinkerkit.backends`` — so ``mock`` and ``local`` cannot drift apart on them.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
from tinker import types

from tinkerkit.models.registry import ModelSpec
from tinkerkit.rules.datums import EngineInput  # defined with the datum rules; re-exported


@dataclass(frozen=True)
class LoraConfig:
    """The LoRA options ``create_lora_training_client`` takes."""

    rank: int = 32
    seed: int | None = None
    train_mlp: bool = True
    train_attn: bool = True
    train_unembed: bool = True
    alpha: float | None = None
    """LoRA alpha; ``None`` means alpha = rank (scaling 1)."""

    @property
    def scaling(self) -> float:
        return (self.alpha if self.alpha is not None else self.rank) / self.rank


def peft_adapter_config(
    base_model: str, lora: LoraConfig | None, targets: list[str]
) -> dict[str, object]:
    """The ``adapter_config.json`` PEFT reads, for an adapter on ``targets``."""
    lora = lora or LoraConfig()
    return {
        "peft_type": "LORA",
        "base_model_name_or_path": base_model,
        "r": lora.rank,
        "lora_alpha": lora.alpha if lora.alpha is not None else lora.rank,
        "lora_dropout": 0.0,
        "bias": "none",
        "target_modules": targets,
        "task_type": "CAUSAL_LM",
        "inference_mode": True,
    }


class ForwardPass(Protocol):
    """The result of ``Engine.forward``: logprobs now, a backward pass on request."""

    logprobs: list[np.ndarray]
    """Per datum, float32 shaped like its targets ((T,) or (T, K)):
    log p(target_t | tokens_<=t), against the full vocabulary."""

    def backward(self, dlogprobs: Sequence[np.ndarray]) -> None:
        """Add d(loss)/d(LoRA weights) to the gradient buffers, given d(loss)/d(logprobs)
        (arrays shaped like ``logprobs``)."""
        ...


class Decoder(Protocol):
    """Incremental decoding of ``n`` parallel continuations of one prompt."""

    @property
    def logits(self) -> np.ndarray:
        """float (n, vocab): next-token logits after everything fed so far."""
        ...

    def step(self, tokens: np.ndarray) -> None:
        """Feed one token per continuation (int (n,)) and update ``logits``."""
        ...


@runtime_checkable
class DirectDraw(Protocol):
    """A ``Decoder`` that can draw the next tokens without the full (n, vocab) logits
    (the mock's factorised head draws a cluster, then a slot: O(sqrt(vocab)) a token)."""

    def draw(self, temperature: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """(tokens int (n,), their logprobs at temperature 1 float64 (n,)): one draw per
        continuation from the next-token distribution at ``temperature`` > 0, unfiltered."""
        ...


class Engine(Protocol):
    """One model with (optional) LoRA weights, gradient buffers and an optimizer."""

    spec: ModelSpec
    lora: LoraConfig | None
    optimizer_config: types.OptimizerConfig
    """The optimizer fixed at creation: ``AdamOptimizerConfig`` or ``DimuonOptimizerConfig``."""

    def forward(self, batch: Sequence[EngineInput], *, grad: bool) -> ForwardPass: ...

    def optim_step(self, params: types.OptimParams) -> dict[str, float]:
        """Apply one step of this engine's optimizer and zero the gradients.

        AdamW (``AdamParams``) has torch.optim.AdamW semantics; Dimuon (``DimuonParams``)
        is the offline formula of ``backends/optimizers.py``. Params of the other family
        are refused (``OptimizerParamsError``). Returns ``grad_norm`` (before clipping)
        and ``learning_rate``.
        """
        ...

    def decoder(self, prompt: Sequence[int], n: int) -> Decoder: ...

    def next_token_logprobs(self, tokens: Sequence[int]) -> Iterator[np.ndarray]:
        """The full next-token distribution after every prefix of ``tokens``, in one
        forward pass: row ``i`` (float32, (vocab,), temperature-1 log-softmax) is
        ``log p(. | tokens[: i + 1])``; yielded in chunks of rows ``(n, vocab)`` so a
        large vocabulary never needs the whole (T, vocab) array at once."""
        ...

    def get_weights(self) -> dict[str, np.ndarray]:
        """The trainable (LoRA) tensors by PEFT-style name, as float32 numpy copies."""
        ...

    def set_weights(self, weights: dict[str, np.ndarray]) -> None: ...

    def get_optimizer_state(self) -> dict[str, np.ndarray]:
        """Flat numpy arrays that round-trip exactly; ``"optimizer"`` names the family."""
        ...

    def set_optimizer_state(self, state: dict[str, np.ndarray]) -> None:
        """Load ``get_optimizer_state()`` output; another family's state is refused
        (``OptimizerStateMismatchError``); untagged state is AdamW's."""
        ...

    def adapter_config(self) -> dict[str, object]:
        """A PEFT ``adapter_config.json`` describing ``get_weights()``."""
        ...

    def snapshot(self) -> Engine:
        """A frozen copy of the current weights, for a sampling client."""
        ...


class EngineFactory(Protocol):
    """What a backend provides: model names, tokenizers and engines."""

    name: str

    def resolve(self, model: str) -> ModelSpec:
        """The spec for ``model``; ``UnknownModelError`` listing known names otherwise."""
        ...

    def known_models(self) -> list[str]: ...

    def tokenizer(self, spec: ModelSpec) -> object: ...

    def stop_tokens(self, spec: ModelSpec) -> list[int]:
        """Token ids that end a generation when ``SamplingParams.stop`` is None."""
        ...

    def create(
        self,
        spec: ModelSpec,
        lora: LoraConfig | None,
        optimizer: types.OptimizerConfig | None = None,
    ) -> Engine:
        """An engine training with ``optimizer`` (None = AdamW); ``UnknownOptimizerError``
        for an optimizer the offline backends do not have."""
        ...
