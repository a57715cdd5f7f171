"""Tinker LoRA adapter → PEFT adapter, for the dense Llama-3 and Qwen3 families.

Tinker saves ``adapter_model.safetensors`` with PEFT-style names rooted at
``base_model.model.`` (e.g. ``base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight``)
except for the unembedding, which it calls ``model.unembed_tokens`` where the HF model
has ``lm_head``; MoE experts come as stacked 3-D ``.experts.w1/w2/w3`` tensors and
gpt-oss names attention ``.attn`` (all per tinker-cookbook ``tinker_cookbook/weights``).
``lora_A`` is ``(r, in)``, ``lora_B`` ``(out, r)``, and the delta is
``(lora_alpha / r) * B @ A``. The ``local`` backend already writes PEFT names, so for
its adapters conversion is validation plus a clean ``adapter_config.json``.
"""

from __future__ import annotations

import json
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from tinkerkit.export.adapter_config import read_adapter_config
from tinkerkit.export.bases import read_config, resolve_base
from tinkerkit.export.errors import (
    AdapterFormatError,
    SafetensorsFormatError,
    UnsupportedModelError,
)
from tinkerkit.export.outputs import staged_output
from tinkerkit.export.safe_tar import safe_extract
from tinkerkit.export.safetensors_check import check_safetensors
from tinkerkit.export.shards import weight_shapes
from tinkerkit.models.mock_modules import is_mock_adapter

ADAPTER_FILE = "adapter_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"
PREFIX = "base_model.model."
SUPPORTED = {
    "llama": "Llama 3 (dense)",
    "qwen3": "Qwen3 (dense)",
    "qwen3_vl": "Qwen3-VL (dense; LoRA on the language model)",
}
_SUPPORTED_TEXT = (
    "dense Llama-3 (model_type 'llama', incl. tinkerkit/tiny), Qwen3 ('qwen3') and Qwen3-VL "
    "('qwen3_vl', incl. tinkerkit/tiny-vl; LoRA on the language model)"
)


@dataclass
class Adapter:
    """LoRA tensors by their saved name, and the adapter config."""

    weights: dict[str, torch.Tensor]
    config: dict[str, Any]

    @property
    def rank(self) -> int:
        return int(self.config["r"])

    @property
    def scaling(self) -> float:
        alpha = float(self.config.get("lora_alpha", self.rank))
        if self.config.get("use_rslora"):
            return alpha / math.sqrt(self.rank)
        return alpha / self.rank


def load_adapter(source: str | Path | Adapter, *, name: str | None = None) -> Adapter:
    """Read an adapter folder (``adapter_model.safetensors`` + ``adapter_config.json``) or tar.

    ``name`` is how errors call the adapter (default: its path; ``export``
    passes the ``tinker://`` path or URL it was downloaded from).

    Example:
        >>> load_adapter("weights/").rank
        8
    """
    if isinstance(source, Adapter):
        return source
    path = Path(source)
    if path.is_file():
        with tempfile.TemporaryDirectory() as tmp:
            return load_adapter(safe_extract(path, Path(tmp) / "adapter"), name=name or str(path))
    label = name or str(path)
    weights_file, config_file = path / ADAPTER_FILE, path / ADAPTER_CONFIG
    if (path / f"{ADAPTER_FILE}.age").is_file():
        raise AdapterFormatError(
            f"{label} holds age-encrypted files (saved with age_encryption_recipients); decrypt "
            "them first: age -d -i IDENTITY -o adapter_model.safetensors adapter_model.safetensors.age"
        )
    if not weights_file.is_file():
        pickled = " (adapter_model.bin is pickled; tinkerkit never loads pickles)"
        raise AdapterFormatError(
            f"{label} has no {ADAPTER_FILE}{pickled if (path / 'adapter_model.bin').exists() else ''}. "
            "Point at the folder `tinkerkit download` wrote."
        )
    if not config_file.is_file():
        raise AdapterFormatError(f"{label} has no {ADAPTER_CONFIG}; it is not a LoRA adapter.")
    config = read_adapter_config(config_file, label=f"{label}/{ADAPTER_CONFIG}")
    check_safetensors(weights_file, label=f"{label}/{ADAPTER_FILE}")
    try:
        weights = load_file(str(weights_file))
    except SafetensorError as exc:
        raise SafetensorsFormatError(f"{label}/{ADAPTER_FILE}", "data", str(exc)) from None
    names = list(weights)
    if is_mock_adapter(names):
        raise AdapterFormatError(
            f"{label} was trained by the mock backend, and mock adapters do not export: they are "
            "numpy stand-ins with no Hugging Face weights behind them. Train with --backend "
            "local (a real small Llama) or on Tinker to get an adapter you can export."
        )
    for key, tensor in weights.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise AdapterFormatError(
                f"{label}/{ADAPTER_FILE}: tensor {key!r} holds NaN or infinite values; merging it "
                "would give a broken model. Export an earlier checkpoint."
            )
    return Adapter(weights, config)


def module_pairs(adapter: Adapter) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """HF weight name (``model.layers.0.self_attn.q_proj.weight``) → ``(lora_A, lora_B)``."""
    pairs: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for key, a in adapter.weights.items():
        if not key.endswith(".lora_A.weight"):
            if not key.endswith(".lora_B.weight"):
                raise AdapterFormatError(f"unexpected tensor {key!r} in the adapter (not LoRA A/B)")
            continue
        stem = key.removesuffix(".lora_A.weight")
        b = adapter.weights.get(f"{stem}.lora_B.weight")
        if b is None:
            raise AdapterFormatError(
                f"{key} has no matching lora_B tensor; the adapter is incomplete."
            )
        module = stem.removeprefix(PREFIX)
        if ".experts" in module or a.ndim != 2 or b.ndim != 2:
            raise UnsupportedModelError(
                f"{key} is a mixture-of-experts LoRA tensor. tinkerkit.export supports "
                f"{_SUPPORTED_TEXT}; for MoE models use tinker-cookbook's weights tools."
            )
        if module == "model.unembed_tokens":  # Tinker's name for the output head
            module = "lm_head"
        if a.shape[0] != adapter.rank or b.shape[1] != a.shape[0]:
            raise AdapterFormatError(
                f"{stem}: lora_A {tuple(a.shape)} / lora_B {tuple(b.shape)} do not match r={adapter.rank}."
            )
        pairs[f"{module}.weight"] = (a, b)
    if not pairs:
        raise AdapterFormatError("the adapter holds no LoRA tensors (no '*.lora_A.weight').")
    return pairs


def check_family(base_dir: Path) -> dict[str, Any]:
    """The base config, if its family is supported; ``UnsupportedModelError`` otherwise."""
    config = read_config(base_dir)
    model_type = config.get("model_type")
    if model_type not in SUPPORTED:
        raise UnsupportedModelError(
            f"{base_dir} is a {model_type!r} model; tinkerkit.export supports {_SUPPORTED_TEXT}. "
            "MoE (Qwen3-30B-A3B, DeepSeek), gpt-oss and other vision models need their own key "
            "layouts: use tinker-cookbook's weights tools (build_hf_model / build_lora_adapter)."
        )
    return config


def check_shapes(
    pairs: dict[str, tuple[torch.Tensor, torch.Tensor]],
    shapes: dict[str, tuple[int, ...]],
    base: str,
) -> None:
    """Every adapted weight exists in the base with shape ``(out, in)`` = ``(B rows, A cols)``."""
    for target, (a, b) in pairs.items():
        shape = shapes.get(target)
        if shape is None and target == "lm_head.weight":
            shape = shapes.get("model.embed_tokens.weight")  # tied embeddings
        if shape is None:
            raise AdapterFormatError(
                f"the adapter adapts {target}, which base model {base} does not have. Was it "
                "trained on another model? Pass the base it was trained on (--base-model)."
            )
        if tuple(shape) != (b.shape[0], a.shape[1]):
            raise AdapterFormatError(
                f"{target}: the adapter's delta is {(b.shape[0], a.shape[1])} but the base "
                f"{base} has {tuple(shape)}; the adapter was trained on another model "
                "(offline, service names stand for the tiny model). Pass the right --base-model."
            )


def peft_config(adapter: Adapter, targets: list[str], base: str) -> dict[str, Any]:
    return {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": base,
        "r": adapter.rank,
        "lora_alpha": adapter.config["lora_alpha"],
        "use_rslora": bool(adapter.config.get("use_rslora", False)),
        "target_modules": targets,
        "lora_dropout": 0.0,
        "bias": "none",
        "fan_in_fan_out": False,
        "inference_mode": True,
    }


def to_peft(
    adapter: str | Path | Adapter, out_dir: str | Path, *, base_model: str | Path | None = None
) -> Path:
    """Write ``adapter`` as a PEFT adapter folder loadable by ``PeftModel.from_pretrained``.

    ``base_model`` (a local folder or ``tinkerkit/tiny``; default: the adapter config's
    ``base_model_name_or_path``) is read for its family and weight shapes only.

    Example:
        >>> to_peft("downloaded/", "peft/", base_model="tinkerkit/tiny")
        PosixPath('peft')
    """
    loaded = load_adapter(adapter)
    base = str(base_model or loaded.config.get("base_model_name_or_path") or "")
    if not base:
        raise AdapterFormatError("the adapter config names no base model; pass base_model=...")
    base_dir = resolve_base(base)
    check_family(base_dir)
    pairs = module_pairs(loaded)
    check_shapes(pairs, weight_shapes(base_dir), base)
    tensors = {
        f"{PREFIX}{target.removesuffix('.weight')}.lora_{ab}.weight": t.contiguous()
        for target, pair in pairs.items()
        for ab, t in zip("AB", pair, strict=True)
    }
    targets = sorted({t.removesuffix(".weight").rsplit(".", 1)[-1] for t in pairs})
    return _publish(Path(out_dir), tensors, peft_config(loaded, targets, base))


def _publish(out: Path, tensors: dict[str, torch.Tensor], config: dict[str, Any]) -> Path:
    with staged_output(out, "peft") as tmp:
        save_file(tensors, str(tmp / ADAPTER_FILE), metadata={"format": "pt"})
        (tmp / ADAPTER_CONFIG).write_text(json.dumps(config, indent=2))
    return out
