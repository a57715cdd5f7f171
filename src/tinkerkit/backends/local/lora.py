"""PEFT LoRA on a shared frozen base: which modules, seeded init, PEFT's tensor names."""

from __future__ import annotations

import copy
import math
import secrets
import warnings
from typing import Any, cast

import peft
import torch
from torch import nn

from tinkerkit.backends.engine import LoraConfig

ATTN = ("q_proj", "k_proj", "v_proj", "o_proj")
MLP = ("gate_proj", "up_proj", "down_proj")
UNEMBED = ("lm_head",)
ADAPTER = "default"


def target_modules(lora: LoraConfig, model: nn.Module) -> list[str]:
    """The module names LoRA wraps, keeping only those this architecture has.

    Example:
        >>> target_modules(LoraConfig(train_mlp=False, train_unembed=False), model)
        ['q_proj', 'k_proj', 'v_proj', 'o_proj']
    """
    wanted = [
        *(ATTN if lora.train_attn else ()),
        *(MLP if lora.train_mlp else ()),
        *(UNEMBED if lora.train_unembed else ()),
    ]
    present = {
        name.rsplit(".", 1)[-1] for name, m in model.named_modules() if isinstance(m, nn.Linear)
    }
    targets = [t for t in wanted if t in present]
    if not targets:
        raise ValueError(
            f"none of the LoRA target modules {wanted} exist in this model; "
            "the local backend supports Llama-style module names."
        )
    return targets


def share_frozen(module: nn.Module, frozen: list[nn.Parameter]) -> nn.Module:
    """A deep copy of ``module`` that shares (does not copy) the ``frozen`` parameters."""
    memo: dict[int, Any] = {id(p): p for p in frozen}
    return copy.deepcopy(module, memo)


def peft_config(lora: LoraConfig, targets: list[str]) -> peft.LoraConfig:
    alpha = lora.alpha if lora.alpha is not None else lora.rank
    return peft.LoraConfig(
        r=lora.rank,
        lora_alpha=cast(int, alpha),  # typed int by PEFT, but any float works
        target_modules=targets,
        lora_dropout=0.0,
        bias="none",
        task_type="CAUSAL_LM",
    )


def wrap(base: nn.Module, lora: LoraConfig) -> tuple[nn.Module, dict[str, nn.Parameter]]:
    """A PEFT model on a copy of ``base`` sharing its frozen weights, and its LoRA params.

    LoRA A is drawn (kaiming-uniform, as PEFT does) from a generator seeded by
    ``lora.seed`` on the CPU, so a seed gives the same adapter on any device; B is 0.

    Example:
        >>> model, params = wrap(base, LoraConfig(rank=8, seed=0))
        >>> next(iter(params))
        'base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight'
    """
    targets = target_modules(lora, base)
    shell = share_frozen(base, list(base.parameters()))
    # fork_rng: PEFT draws its own init from the global RNG; keep the caller's intact.
    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = peft.get_peft_model(shell, peft_config(lora, targets))
    params = lora_params(model)
    seed = lora.seed if lora.seed is not None else secrets.randbits(63)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in params.items():
            init = torch.empty(p.shape, dtype=torch.float32)
            if ".lora_A." in name:
                nn.init.kaiming_uniform_(init, a=math.sqrt(5), generator=gen)
            else:
                init.zero_()
            p.copy_(init)
            p.grad = torch.zeros_like(p)
    return model, params


def lora_params(model: nn.Module) -> dict[str, nn.Parameter]:
    """Trainable LoRA parameters by PEFT's saved name (the adapter name left out)."""
    marker = f".{ADAPTER}."
    return {
        name.replace(marker, "."): p for name, p in model.named_parameters() if ".lora_" in name
    }


def snapshot(model: nn.Module) -> tuple[nn.Module, dict[str, nn.Parameter]]:
    """A copy of a PEFT model with its own LoRA tensors but the same frozen base."""
    frozen = [p for name, p in model.named_parameters() if ".lora_" not in name]
    clone = share_frozen(model, frozen)
    params = lora_params(clone)
    for p in params.values():
        p.requires_grad_(False)
        p.grad = None
    return clone, params


def causal_lm(model: nn.Module) -> Any:
    """The underlying ``*ForCausalLM`` (LoRA layers injected) of a PEFT model.

    Typed ``Any``: its transformers methods (``get_decoder``, ...) are not on ``nn.Module``.
    """
    return model.base_model.model if isinstance(model, peft.PeftModel) else model
