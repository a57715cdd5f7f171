"""The Engine protocol: the one narrow interface an offline backend implements.

Every built-in loss of the service is a function of the per-token logprobs of the
target tokens. So an engine only has to (1) compute those logprobs, (2) push a
gradient with respect to them back into its LoRA weights, (3) take a step of the
optimizer chosen at creation (AdamW or Dimuon, ``backends/optimizers.py``), (4) decode
tokens, and (5) hand its trainable state out and back in (``state``/``load``, one
``EngineState``). Losses, validation, ordering, futures, latency and checkpoints are
written once, above it, in ``tinkerkit.backends`` — so ``mock`` and ``local`` cannot
drift apart on them. The checks both engines once repeated live here too, in the three
functions every caller goes through: ``new_engine`` (the optimizer is normalised and a
stand-in announced before any work), ``step`` (params of another optimizer family are
refused before the engine sees them) and ``load`` (the weights' names and shapes are
checked before any is written); ``adapter_config`` derives the PEFT config from the
spec, the LoRA options and the weight names, for every engine alike.

``Engine`` has 10 members: 3 attributes (``spec``, ``lora``, ``optimizer_config``) and 7
methods (``forward``, ``optim_step``, ``decoder``, ``next_token_logprobs``, ``state``,
``load``, ``snapshot``); it had 13 (``get_weights``, ``set_weights``,
``get_optimizer_state``, ``set_optimizer_state`` and ``adapter_config`` are gone).
``EngineFactory`` keeps its 6 (``name``, ``resolve``, ``known_models``, ``tokenizer``,
``stop_tokens``, ``create``): the sampler, the REST surface and the served HF overlay
each need one of them, and ``create`` no longer normalises or announces anything.
A minimal fake — a bigram table trained by plain SGD, with its factory — that passes
the SDK's forward_backward, optim_step, save_state, create_training_client_from_state
and sampling is 93 lines, 65 of them not blank (``tests/backends/test_engine_fake.py``,
between its ``# --- the fake ---`` markers); under the old protocol the same fake would
have needed roughly 25 more, by estimate (the five removed methods, the weight and
optimizer-family checks, the factory's optimizer normalisation and stand-in notice).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
from tinker import types

from tinkerkit.backends import optimizers
from tinkerkit.models.registry import ModelSpec, announce_stand_in
from tinkerkit.rules.datums import EngineInput  # defined with the datum rules; re-exported
from tinkerkit.rules.images import Picture


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


def lora_targets(weights: Iterable[str]) -> list[str]:
    """The leaf module names LoRA ``weights`` (PEFT-style names) sit on, sorted.

    Example:
        >>> lora_targets(["base_model.model.model.layers.0.mlp.up_proj.lora_A.weight"])
        ['up_proj']
    """
    return sorted({name.split(".lora_")[0].rsplit(".", 1)[-1] for name in weights})


def adapter_config(
    spec: ModelSpec, lora: LoraConfig | None, weights: Iterable[str]
) -> dict[str, object]:
    """The PEFT ``adapter_config.json`` of LoRA ``weights`` (PEFT-style names, as
    ``Engine.state`` gives them): ``target_modules`` are the leaf module names present.

    Example:
        >>> names = ["base_model.model.model.layers.0.mlp.up_proj.lora_A.weight"]
        >>> adapter_config(ModelSpec("m", "a", 8, 8), LoraConfig(rank=4), names)["target_modules"]
        ['up_proj']
    """
    return peft_adapter_config(spec.name, lora, lora_targets(weights))


@dataclass(frozen=True)
class EngineState:
    """An engine's trainable state: what ``Engine.state`` gives and ``Engine.load`` takes."""

    weights: dict[str, np.ndarray]
    """The LoRA tensors by PEFT-style name, float32 numpy copies."""
    optimizer: dict[str, np.ndarray] | None = None
    """Flat numpy arrays that round-trip exactly, ``"optimizer"`` naming the family
    (``optimizers.tag_state``). ``None`` in a load: leave the optimizer as it is."""


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


@dataclass(frozen=True)
class SampleJob:
    """One ``sample`` request with the service's rules already applied: ``budget`` tokens
    at most per continuation, the stop tokens and strings (``sampler.stop_rule``)."""

    prompt: Sequence[int]
    num_samples: int
    params: types.SamplingParams
    budget: int
    stop_tokens: frozenset[int]
    stop_strings: tuple[str, ...]
    decode: Callable[[list[int]], str]
    sequence_ids: tuple[str, ...]
    topk: int = 0
    """Top logprobs to report at each generated position (0: none)."""
    pictures: tuple[Picture, ...] = ()
    """The prompt's images (their positions hold the model's image token id)."""


@runtime_checkable
class BatchSampling(Protocol):
    """An engine that samples many requests at once: ``generate`` returns at once and the
    future settles when the job's sequences are done (requests in flight together decode
    together)."""

    def generate(self, job: SampleJob) -> Future[list[types.SampledSequence]] | None:
        """The job's future, or ``None`` where this engine cannot batch (the caller then
        draws through ``decoder``)."""
        ...


@runtime_checkable
class BatchTraining(Protocol):
    """An engine whose ``forward_backward`` may share one pass with other clients' on the
    same base; ``gradients(i, logprobs)`` gives datum ``i``'s d(loss)/d(logprobs), and may
    be called in any order of ``i``, once each."""

    def forward_backward(
        self,
        batch: Sequence[EngineInput],
        gradients: Callable[[int, np.ndarray], np.ndarray],
    ) -> None: ...


class Engine(Protocol):
    """One model with (optional) LoRA weights, gradient buffers and an optimizer."""

    spec: ModelSpec
    lora: LoraConfig | None
    optimizer_config: types.OptimizerConfig
    """The optimizer fixed at creation: ``AdamOptimizerConfig`` or ``DimuonOptimizerConfig``."""

    def forward(self, batch: Sequence[EngineInput], *, grad: bool) -> ForwardPass: ...

    def optim_step(self, params: types.OptimParams) -> dict[str, float]:
        """Apply one step of this engine's optimizer and zero the gradients.

        ``params`` are of the engine's family (``step`` refuses the others): AdamW
        (``AdamParams``) has torch.optim.AdamW semantics; Dimuon (``DimuonParams``) is
        the offline formula of ``backends/optimizers.py``. Returns ``grad_norm`` (before
        clipping) and ``learning_rate``.
        """
        ...

    def decoder(self, prompt: Sequence[int], n: int, pictures: Sequence[Picture] = ()) -> Decoder:
        """``n`` continuations of ``prompt``; ``pictures`` only for a model with
        ``spec.vision``."""
        ...

    def next_token_logprobs(
        self, tokens: Sequence[int], pictures: Sequence[Picture] = ()
    ) -> Iterator[np.ndarray]:
        """The full next-token distribution after every prefix of ``tokens``, in one
        forward pass: row ``i`` (float32, (vocab,), temperature-1 log-softmax) is
        ``log p(. | tokens[: i + 1])``; yielded in chunks of rows ``(n, vocab)`` so a
        large vocabulary never needs the whole (T, vocab) array at once. ``pictures``
        (wholly inside ``tokens``) only for a model with ``spec.vision``."""
        ...

    def state(self) -> EngineState:
        """The LoRA weights and the optimizer state (never ``None`` here; an engine
        without LoRA gives its family's tag and ``step`` 0)."""
        ...

    def load(self, state: EngineState) -> None:
        """Write ``state.weights`` (``load`` has checked their names and shapes), then
        load ``state.optimizer`` unless it is ``None``: another family's state is refused
        (``OptimizerStateMismatchError``), untagged state is AdamW's."""
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
        """An engine training with ``optimizer`` (None = AdamW). Callers go through
        ``new_engine``, which normalises ``optimizer`` and announces a stand-in first."""
        ...


def new_engine(
    factory: EngineFactory,
    spec: ModelSpec,
    lora: LoraConfig | None,
    optimizer: types.OptimizerConfig | None = None,
) -> Engine:
    """``factory.create``, after refusing an optimizer the offline backends do not have
    (``UnknownOptimizerError``, before any work) and announcing a stand-in model."""
    config = optimizers.normalized_config(optimizer)
    if spec.stands_in_for:
        announce_stand_in(factory.name, spec)
    return factory.create(spec, lora, config)


def step(engine: Engine, params: object) -> dict[str, float]:
    """``engine.optim_step``, for params of the engine's optimizer family only
    (``OptimizerParamsError`` otherwise, the gradients untouched); a bare
    ``OptimParamsBase(type="dimuon")`` is read as ``DimuonParams``."""
    return engine.optim_step(optimizers.check_step_params(engine.optimizer_config, params))


def check_weights(expected: dict[str, np.ndarray], weights: dict[str, np.ndarray]) -> None:
    """Refuse ``weights`` unless they have exactly the names and shapes of ``expected``
    (``ValueError``)."""
    mismatch = set(expected) ^ set(weights)
    if mismatch:
        raise ValueError(
            f"weights do not match this model's LoRA tensors: {sorted(mismatch)[:8]} "
            f"({len(mismatch)} names differ). Was it saved from another model or rank?"
        )
    for key, value in weights.items():
        shape, wanted = tuple(np.shape(value)), tuple(np.shape(expected[key]))
        if shape != wanted:
            raise ValueError(f"{key}: shape {shape} does not match {wanted}")


def load(engine: Engine, state: EngineState) -> None:
    """``engine.load(state)`` once the weights' names and shapes are checked, so no
    tensor is written from a checkpoint of another model or rank."""
    check_weights(engine.state().weights, state.weights)
    engine.load(state)
