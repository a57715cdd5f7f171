"""The ``local`` engine: a real ``transformers`` model with PEFT LoRA, trained by torch.

The base is shared and frozen (``models.base_model``); each engine wraps a copy of
its module tree that shares the base tensors, so engines and sampling snapshots
cost only their LoRA tensors. Forward passes bucket datums by length
(``batching``), AdamW is ``torch.optim.AdamW`` (``optim``), Dimuon is ``dimuon``,
decoding uses the KV cache (``decode``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future
from typing import Any

import numpy as np
import torch
from tinker import types
from torch import nn

from tinkerkit.backends import optimizers
from tinkerkit.backends.engine import (
    EngineInput,
    EngineState,
    LoraConfig,
    SampleJob,
    lora_targets,
)
from tinkerkit.backends.local import lora as lora_lib
from tinkerkit.backends.local import models
from tinkerkit.backends.local.batching import LocalForward, each_bucket, prefix_logprobs
from tinkerkit.backends.local.decode import LocalDecoder
from tinkerkit.backends.local.dimuon import LoraDimuon
from tinkerkit.backends.local.generate import Generation, batchable
from tinkerkit.backends.local.models import Source
from tinkerkit.backends.local.multi_lora import Gradients, TrainJob
from tinkerkit.backends.local.optim import LoraAdam
from tinkerkit.backends.local.scheduler import SCHEDULER
from tinkerkit.backends.local.threads import Shape, fit, knob
from tinkerkit.backends.local.vision import VisionTrunk, vision_inputs
from tinkerkit.models.registry import ModelSpec
from tinkerkit.models.stand_ins import ModelNames
from tinkerkit.rules.images import Picture

_BATCHABLE: dict[int, bool] = {}
"""Per base model (by id; bases live as long as the process): whether sample requests
on it can share a batch."""


class LocalEngine:
    """A frozen base model + trainable PEFT LoRA tensors + AdamW or Dimuon, in torch.

    Example:
        >>> factory = LocalFactory()
        >>> engine = factory.create(factory.resolve("tinkerkit/tiny"), LoraConfig(rank=8, seed=0))
        >>> item = EngineInput(np.array([1, 2, 3]), np.array([2, 3, 4]))
        >>> engine.forward([item], grad=False).logprobs[0].shape
        (3,)
    """

    def __init__(
        self,
        spec: ModelSpec,
        lora: LoraConfig | None,
        source: models.Source,
        *,
        optimizer: types.OptimizerConfig | None = None,
        names: ModelNames | None = None,
        _model: nn.Module | None = None,
        _params: dict[str, nn.Parameter] | None = None,
    ) -> None:
        self.spec = spec
        self.lora = lora
        self.optimizer_config = optimizers.normalized_config(optimizer)
        self.source = source
        self.names = names
        self.device = models.device()
        base = self.base = models.base_model(source, names)
        if _model is not None:  # a snapshot: given, frozen
            self.model, self.params, self.frozen = _model, _params or {}, True
        elif lora is None:
            self.model, self.params, self.frozen = base, {}, True
        else:
            self.model, self.params = lora_lib.wrap(base, lora)
            self.frozen = False
        self.lm = lora_lib.causal_lm(self.model)  # a transformers *ForCausalLM
        vision = spec.vision
        # a VL model's trunk is the whole model below the head (vision tower included)
        self.trunk = self.lm.get_decoder() if vision is None else VisionTrunk(self.lm.model, vision)
        self.head = self.lm.get_output_embeddings()
        self.vocab = int(self.head.weight.shape[0])
        self.shape = Shape.of(base.config, self.vocab)
        self.optim = self._new_optimizer() if not self.frozen else None
        self.family = (id(self.base), tuple(lora_targets(self.params)))
        """Engines of one family (one base, LoRA on the same modules; the bare base has
        none) share passes: their samples decode in one lane, their training in one pass."""

    def _new_optimizer(self) -> LoraAdam | LoraDimuon:
        if self.optimizer_config.type == optimizers.DIMUON:
            rank = self.lora.rank if self.lora is not None else optimizers.RANK_REFERENCE
            return LoraDimuon(self.params, rank)
        return LoraAdam(self.params)

    def forward(self, batch: Sequence[EngineInput], *, grad: bool) -> LocalForward:
        trainable = grad and not self.frozen

        def run() -> LocalForward:
            with torch.set_grad_enabled(trainable):
                found = list(
                    each_bucket(self.trunk, self.head, batch, self.vocab, self.device, self.shape)
                )
            return LocalForward(found, len(batch), not self.frozen, SCHEDULER.call, self.shape)

        return SCHEDULER.call(run)

    def forward_backward(self, batch: Sequence[EngineInput], gradients: Gradients) -> None:
        """``forward`` with grad, ``gradients`` of each datum's logprobs, ``backward``:
        bucket by bucket, in one pass with the other clients on this base whose requests
        wait at the same time (``multi_lora``)."""
        if self.frozen:
            fp = self.forward(batch, grad=True)
            fp.backward([gradients(i, lp) for i, lp in enumerate(fp.logprobs)])
            return
        SCHEDULER.train(TrainJob(self, batch, gradients))

    def optim_step(self, params: types.AdamParams | types.DimuonParams) -> dict[str, float]:
        optim = self.optim
        if optim is None:
            raise RuntimeError("this engine has no trainable LoRA weights")
        size = sum(p.numel() for p in self.params.values())

        def run() -> dict[str, float]:
            fit(20.0 * size)  # a few elementwise passes over the LoRA tensors
            return optim.step(params)

        return SCHEDULER.call(run)

    def decoder(
        self, prompt: Sequence[int], n: int, pictures: Sequence[Picture] = ()
    ) -> LocalDecoder:
        def run() -> LocalDecoder:
            fit(max(len(prompt) * self.shape.trunk, n * self.shape.head))
            images = None
            if pictures and self.spec.vision is not None:
                ids = torch.tensor([list(prompt)], dtype=torch.long, device=self.device)
                images = vision_inputs(self.lm.model, self.spec.vision, ids, [pictures])
            return LocalDecoder(self.lm, prompt, n, self.device, SCHEDULER.call, images)

        return SCHEDULER.call(run)

    def generate(self, job: SampleJob) -> Future[list[types.SampledSequence]] | None:
        """Decode ``job`` together with the other requests on these weights
        (``generate.Lane``); ``None`` for a model whose cache cannot be batched."""
        if job.pictures:  # images decode alone (their positions are the model's 3-D ones)
            return None
        key = id(self.base)
        if key not in _BATCHABLE:
            _BATCHABLE[key] = SCHEDULER.call(lambda: batchable(self.lm, self.device))
        if not _BATCHABLE[key]:
            return None
        request = Generation(job)
        SCHEDULER.generate(self.family, self.lm, self.device, self.shape, request)
        return request.future

    def next_token_logprobs(
        self, tokens: Sequence[int], pictures: Sequence[Picture] = ()
    ) -> Iterator[np.ndarray]:
        chunks = prefix_logprobs(
            self.trunk, self.head, tokens, self.vocab, self.device, self.shape, pictures
        )
        while True:  # each chunk on the compute thread, where the model's hooks are known
            chunk = SCHEDULER.call(lambda: next(chunks, None))
            if chunk is None:
                return
            yield chunk

    def state(self) -> EngineState:
        weights = {k: p.detach().float().cpu().numpy().copy() for k, p in self.params.items()}
        if self.optim is None:
            name = self.optimizer_config.type
            return EngineState(weights, optimizers.tag_state(name, {"step": np.zeros(1, np.int64)}))
        return EngineState(weights, self.optim.state())

    def load(self, state: EngineState) -> None:
        with torch.no_grad():
            for key, value in state.weights.items():
                p = self.params[key]
                p.copy_(torch.as_tensor(np.asarray(value), dtype=p.dtype, device=p.device))
        if state.optimizer is None:
            return
        if self.optim is None:
            raise RuntimeError("this engine has no optimizer")
        self.optim.load(state.optimizer)

    def snapshot(self) -> LocalEngine:
        if self.lora is None:
            return self  # the bare base never changes
        model, params = lora_lib.snapshot(self.model)
        return LocalEngine(
            self.spec,
            self.lora,
            self.source,
            optimizer=self.optimizer_config,
            names=self.names,
            _model=model,
            _params=params,
        )


class LocalFactory:
    """Models of the ``local`` backend: ``tinkerkit/tiny``, stand-ins for the service's
    models (a small Llama sized to the model's vocabulary, with its real tokenizer), names
    mapped to local HF model folders (``models=``: that real model, under the name), local
    HF model folders, and hub ids already in the local HF cache.

    Example:
        >>> LocalFactory().resolve("tinkerkit/tiny").vocab_size
        261
        >>> LocalFactory(models={"Qwen/Qwen3-8B": "/models/qwen3-8b"}).resolve("Qwen/Qwen3-8B")
    """

    name = "local"

    def __init__(self, models: Mapping[str, str | os.PathLike[str]] | None = None) -> None:
        knob()  # a bad TINKERKIT_THREADS is refused here, not on every request
        self.names = ModelNames(models)
        self._sources: dict[str, tuple[Source, Any]] = {}

    def known_models(self) -> list[str]:
        return self.names.known()

    def _find(self, model: str) -> tuple[Source, Any]:
        # Sampling asks for the tokenizer and stop tokens on every request: look once.
        found = self._sources.get(model)
        if found is None:
            found = self._sources[model] = models.find_source(model, self.names)
        return found

    def _source(self, model: str) -> Source:
        return self._find(model)[0]

    def resolve(self, model: str) -> ModelSpec:
        source, config = self._find(model)
        return models.spec_for(source, config, self.names)

    def tokenizer(self, spec: ModelSpec) -> Any:
        return models.tokenizer(self._source(spec.name), self.names)

    def tokenizer_id(self, spec: ModelSpec) -> str:
        return models.tokenizer_id(self._source(spec.name), self.names)

    def stop_tokens(self, spec: ModelSpec) -> list[int]:
        return models.stop_tokens(self._source(spec.name), self.names)

    def create(
        self,
        spec: ModelSpec,
        lora: LoraConfig | None,
        optimizer: types.OptimizerConfig | None = None,
    ) -> LocalEngine:
        source = self._source(spec.name)
        return LocalEngine(spec, lora, source, optimizer=optimizer, names=self.names)
