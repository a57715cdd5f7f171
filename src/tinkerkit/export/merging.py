"""Merge a LoRA adapter into its base: a full HF model folder, written shard by shard.

For every adapted linear ``W' = W + (lora_alpha / r) * B @ A``. The base is read one
safetensors shard at a time (``safe_open``) and each output tensor is produced,
written and dropped before the next (``shards.write_safetensors``); the delta is added
in row blocks, so peak memory stays near one shard's mapped pages plus the adapter,
whatever the model's size. Config, tokenizer and generation files are copied; the
index json is rewritten when the base is sharded.

Tied embeddings (Llama-3.2-1B/3B, small Qwen3): Tinker trains a separate LoRA on the
output head (``unembed_tokens``). The merged model then gets its own
``lm_head.weight = embed_tokens + delta`` (in the embedding's shard) and
``tie_word_embeddings: false``; the input embedding is left unchanged.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open

from tinkerkit.export.base_files import side_files
from tinkerkit.export.bases import resolve_base
from tinkerkit.export.convert import (
    Adapter,
    check_family,
    check_shapes,
    load_adapter,
    module_pairs,
)
from tinkerkit.export.errors import AdapterFormatError
from tinkerkit.export.outputs import check_out_dir, staged_output
from tinkerkit.export.shards import (
    INDEX,
    list_shards,
    tensor_dtype,
    weight_shapes,
    write_safetensors,
)
from tinkerkit.train.progress import progress_bar

EMBED = "model.embed_tokens.weight"
HEAD = "lm_head.weight"
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".msgpack", ".h5", ".gguf")
ROW_BLOCK = 2048  # rows of W updated at once: bounds the float32 temporaries


def apply_delta(
    weight: torch.Tensor, a: torch.Tensor, b: torch.Tensor, scaling: float
) -> torch.Tensor:
    """``weight + scaling * b @ a`` in float32, cast back to ``weight``'s dtype, in place.

    Example:
        >>> apply_delta(torch.zeros(2, 3), torch.ones(1, 3), torch.ones(2, 1), 0.5)[0, 0]
        tensor(0.5000)
    """
    a32 = a.to(torch.float32)
    b32 = b.to(torch.float32) * scaling
    for start in range(0, weight.shape[0], ROW_BLOCK):
        rows = slice(start, start + ROW_BLOCK)
        block = weight[rows].to(torch.float32) + b32[rows] @ a32
        weight[rows] = block.to(weight.dtype)
    return weight


def merge(
    base_model: str | Path,
    adapter: str | Path | Adapter,
    out_dir: str | Path,
    *,
    progress: bool = False,
) -> Path:
    """Write base + adapter as one HF model folder (loads with ``AutoModelForCausalLM``).

    Example:
        >>> merge("tinkerkit/tiny", "downloaded/", "merged/")
        PosixPath('merged')
        >>> AutoModelForCausalLM.from_pretrained("merged/")
    """
    out = Path(out_dir)
    check_out_dir(out)
    loaded = load_adapter(adapter)
    base_dir = resolve_base(base_model)
    config = check_family(base_dir)
    shapes = weight_shapes(base_dir)  # every shard's header is checked here
    pairs = module_pairs(loaded)
    check_shapes(pairs, shapes, str(base_model))
    untie = HEAD in pairs and HEAD not in shapes
    extras = [
        path
        for path in side_files(base_dir)  # links out of the base folder are refused here
        if not path.name.endswith(_WEIGHT_SUFFIXES) and path.name not in (INDEX, "config.json")
    ]

    with staged_output(out, "merge") as tmp:
        weight_map: dict[str, str] = {}
        done: set[str] = set()
        total = 0
        shards = list_shards(base_dir)
        bar = progress_bar(len(shards), desc="merge", unit="shard") if progress else None
        for shard in shards:
            with safe_open(str(base_dir / shard), framework="pt") as f:
                layout = []
                for key in f.keys():  # noqa: SIM118 (safe_open is not a dict)
                    sl = f.get_slice(key)
                    layout.append((key, tuple(sl.get_shape()), tensor_dtype(sl.get_dtype())))
                    if untie and key == EMBED:
                        layout.append((HEAD, layout[-1][1], layout[-1][2]))

                def produce(name: str, f: Any = f) -> torch.Tensor:
                    tensor = f.get_tensor(EMBED if (untie and name == HEAD) else name)
                    if name in pairs:
                        done.add(name)
                        return apply_delta(tensor, *pairs[name], loaded.scaling)
                    return tensor

                total += write_safetensors(tmp / shard, layout, produce, f.metadata())
                weight_map.update({name: shard for name, _, _ in layout})
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()
        missing = sorted(set(pairs) - done)
        if missing:
            raise AdapterFormatError(
                f"adapted weights not found in any shard of {base_dir}: {missing}"
            )
        _copy_files(extras, tmp)
        if untie:
            _untie(config)
        (tmp / "config.json").write_text(json.dumps(config, indent=2))
        if (base_dir / INDEX).is_file():
            index = {
                "metadata": {"total_size": total},
                "weight_map": dict(sorted(weight_map.items())),
            }
            (tmp / INDEX).write_text(json.dumps(index, indent=2))
    return out


def _copy_files(files: list[Path], dest: Path) -> None:
    """Copy config, tokenizer, generation config, chat template, README into ``dest``.

    Each copy is opened with ``"xb"``: it can only create a new file in ``dest``.
    """
    for path in files:
        with open(path, "rb") as src, open(dest / path.name, "xb") as out:
            shutil.copyfileobj(src, out)


def _untie(config: dict[str, Any]) -> None:
    config["tie_word_embeddings"] = False
    text = config.get("text_config")
    if isinstance(text, dict) and "tie_word_embeddings" in text:
        text["tie_word_embeddings"] = False
