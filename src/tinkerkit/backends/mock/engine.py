"""The ``mock`` engine: the numpy model of ``model.py`` behind the Engine protocol."""

from __future__ import annotations

import copy
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
from tinker import types

from tinkerkit.backends import optimizers
from tinkerkit.backends.engine import EngineInput, EngineState, LoraConfig
from tinkerkit.backends.mock import model, vision
from tinkerkit.backends.mock.adam import Adam
from tinkerkit.backends.mock.dimuon import Dimuon
from tinkerkit.models import tokenizer as byte_tok
from tinkerkit.models.registry import BUILTINS, TINY, ModelSpec
from tinkerkit.models.stand_ins import ModelNames
from tinkerkit.rules.images import Picture

MAX_CONTEXT = 2048
# Learning rates that work for LoRA on real models (1e-4 .. 1e-3) should visibly
# train the mock too; a larger alpha than rank gives its tiny matrices that reach.
MOCK_ALPHA = 32.0


def _key(target: str, which: str) -> str:
    return f"base_model.model.{target}.lora_{which}.weight"


def _pad(batch: Sequence[EngineInput]) -> tuple[np.ndarray, np.ndarray, list[int], list[int]]:
    """Right-padded tokens (B, T) and targets: (B, T), or (B, T, K) if some datum has
    (T_i, K_i) targets (K = the largest K_i; a 1-D datum uses slot 0). Also each datum's
    length and K_i (0 for 1-D targets)."""
    lengths = [len(item.tokens) for item in batch]
    ks = [item.targets.shape[1] if item.targets.ndim == 2 else 0 for item in batch]
    width, k = max(lengths), max(ks)
    tokens = np.zeros((len(batch), width), dtype=np.int64)
    targets = np.zeros((len(batch), width, k) if k else (len(batch), width), dtype=np.int64)
    for row, item in enumerate(batch):
        n = lengths[row]
        tokens[row, :n] = item.tokens
        if not k:
            targets[row, :n] = item.targets
        elif ks[row]:
            targets[row, :n, : ks[row]] = item.targets
        else:
            targets[row, :n, 0] = item.targets
    return tokens, targets, lengths, ks


def _rows(array: np.ndarray, row: int, n: int, k: int) -> np.ndarray:
    """Datum ``row``'s part of a padded (B, T) or (B, T, K) array (a view)."""
    if array.ndim == 2:
        return array[row, :n]
    return array[row, :n, :k] if k else array[row, :n, 0]


class _MockForward:
    def __init__(
        self, engine: MockEngine, weights: dict[str, np.ndarray], batch: Sequence[EngineInput]
    ) -> None:
        self._engine = engine
        self._weights = weights
        tokens, targets, self._lengths, self._ks = _pad(batch)
        inserts = [engine.inserts(item.pictures) for item in batch]
        logprobs, self._acts = model.forward(weights, tokens, targets, inserts)
        self.logprobs = [
            _rows(logprobs, row, n, k).copy()
            for row, (n, k) in enumerate(zip(self._lengths, self._ks, strict=True))
        ]

    def backward(self, dlogprobs: Sequence[np.ndarray]) -> None:
        engine = self._engine
        if engine.lora is None:
            raise RuntimeError("this engine has no LoRA weights to train")
        g = np.zeros(self._acts.targets.shape, dtype=model.DTYPE)
        for row, (n, k, d) in enumerate(zip(self._lengths, self._ks, dlogprobs, strict=True)):
            _rows(g, row, n, k)[...] = d
        grads = model.backward(self._weights, self._acts, g, set(engine.targets))
        s = engine.lora.scaling
        for target, dw in grads.items():
            a_key, b_key = _key(target, "A"), _key(target, "B")
            a, b = engine.params[a_key], engine.params[b_key]
            engine.grads[a_key] += s * (dw @ b).T
            engine.grads[b_key] += s * (a @ dw).T


class MockEngine:
    """Frozen random base + trainable LoRA tensors + AdamW or Dimuon, all numpy."""

    def __init__(
        self,
        spec: ModelSpec,
        lora: LoraConfig | None,
        optimizer: types.OptimizerConfig | None = None,
    ) -> None:
        self.spec = spec
        self.lora = lora
        self.optimizer_config = optimizers.normalized_config(optimizer)
        self.base = model.base_weights(base_id(spec), spec.vocab_size)
        self.params: dict[str, np.ndarray] = {}
        self.targets: list[str] = []
        if lora is not None:
            rng = np.random.default_rng(lora.seed)
            for target, (base_key, option) in model.TARGETS.items():
                if not getattr(lora, option):
                    continue
                self.targets.append(target)
                n_in, n_out = self.base[base_key].shape
                bound = 1.0 / np.sqrt(n_in)
                a = rng.uniform(-bound, bound, size=(lora.rank, n_in))
                self.params[_key(target, "A")] = a.astype(model.DTYPE)
                self.params[_key(target, "B")] = np.zeros((n_out, lora.rank), model.DTYPE)
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}
        self.optim = self._new_optimizer()
        self._folded: dict[str, np.ndarray] | None = None

    def _new_optimizer(self) -> Adam | Dimuon:
        if self.optimizer_config.type == optimizers.DIMUON:
            return Dimuon(self.lora.rank if self.lora is not None else optimizers.RANK_REFERENCE)
        return Adam()

    def _effective(self) -> dict[str, np.ndarray]:
        """The base with the LoRA deltas folded in, cached until the weights change
        (``optim_step``, ``load``): a sampler folds them once, not per request."""
        cached = self._folded
        if cached is None:
            cached = self._folded = model.effective(self.base, self._lora())
        return cached

    def _lora(self) -> model.Lora | None:
        if self.lora is None:
            return None
        tensors = {t: (self.params[_key(t, "A")], self.params[_key(t, "B")]) for t in self.targets}
        return model.Lora(self.lora.scaling, tensors)

    def forward(self, batch: Sequence[EngineInput], *, grad: bool) -> _MockForward:
        # training folds afresh: the cache is for sampling, which outlives many requests
        self._folded = None
        return _MockForward(self, self._effective(), batch)

    def next_token_logprobs(
        self, tokens: Sequence[int], pictures: Sequence[Picture] = ()
    ) -> Iterator[np.ndarray]:
        ids = np.asarray(tokens, dtype=np.int64)
        yield from model.next_token_logprobs(self._effective(), ids, self.inserts(pictures))

    def optim_step(self, params: types.AdamParams | types.DimuonParams) -> dict[str, float]:
        self._folded = None
        metrics = self.optim.step(self.params, self.grads, params)
        for g in self.grads.values():
            g.fill(0.0)
        return metrics

    def decoder(
        self, prompt: Sequence[int], n: int, pictures: Sequence[Picture] = ()
    ) -> model.MockDecoder:
        ids = np.asarray(prompt, dtype=np.int64)
        return model.decoder(self._effective(), ids, n, self.inserts(pictures))

    def inserts(self, pictures: Sequence[Picture]) -> list[tuple[int, np.ndarray]]:
        """Where the token vectors of ``pictures`` go (``mock.vision``)."""
        return [(p.start, vision.embed(base_id(self.spec), p)) for p in pictures]

    def state(self) -> EngineState:
        return EngineState({k: v.copy() for k, v in self.params.items()}, self.optim.state())

    def load(self, state: EngineState) -> None:
        for key, value in state.weights.items():
            self.params[key] = value.astype(model.DTYPE, copy=True)
        self._folded = None
        if state.optimizer is not None:
            self.optim.load(state.optimizer)

    def snapshot(self) -> MockEngine:
        clone = copy.copy(self)
        clone.params = {k: v.copy() for k, v in self.params.items()}
        clone._folded = None
        clone.grads = {}
        clone.optim = clone._new_optimizer()
        return clone


def base_id(spec: ModelSpec) -> str:
    """The seed name of ``spec``'s frozen base: one base per (family, vocabulary)."""
    return spec.name if spec.family is None else f"{TINY}/stand-in/{spec.family}"


class MockFactory:
    """Models of the ``mock`` backend: ``tinkerkit/tiny``, and stand-ins for the service's
    models (the catalogue) and for the names of the user's mapping (``models=``): a mock
    network sized to the model's vocabulary, with the model's tokenizer."""

    name = "mock"

    def __init__(self, models: Mapping[str, str | os.PathLike[str]] | None = None) -> None:
        self.names = ModelNames(models)

    def known_models(self) -> list[str]:
        return self.names.known()

    def resolve(self, model_name: str) -> ModelSpec:
        self.names.check(model_name)
        vision = self.names.vision(model_name)
        if model_name in BUILTINS and self.names.mapped(model_name) is None:
            vocab = byte_tok.VL_VOCAB_SIZE if vision else byte_tok.VOCAB_SIZE
            return ModelSpec(model_name, "tinkerkit-mock", vocab, MAX_CONTEXT, vision=vision)
        return ModelSpec(
            name=model_name,
            arch="tinkerkit-mock",
            vocab_size=self.names.vocab_size(model_name),
            max_context_length=self.names.context_length(model_name, MAX_CONTEXT),
            stands_in_for=model_name,
            family=self.names.family(model_name),
            vision=vision,
        )

    def tokenizer(self, spec: ModelSpec) -> Any:
        return self.names.tokenizer(spec.name)

    def tokenizer_id(self, spec: ModelSpec) -> str:
        return self.names.tokenizer_id(spec.name)

    def stop_tokens(self, spec: ModelSpec) -> list[int]:
        return self.names.stop_tokens(spec.name)

    def create(
        self,
        spec: ModelSpec,
        lora: LoraConfig | None,
        optimizer: types.OptimizerConfig | None = None,
    ) -> MockEngine:
        if lora is not None and lora.alpha is None:
            lora = LoraConfig(
                rank=lora.rank,
                seed=lora.seed,
                train_mlp=lora.train_mlp,
                train_attn=lora.train_attn,
                train_unembed=lora.train_unembed,
                alpha=MOCK_ALPHA,
            )
        return MockEngine(spec, lora, optimizer)
