"""The built-in Hugging Face base models, and where a model name's weights come from.

``tinkerkit/tiny`` is a small Llama (2 layers, hidden 64) over the byte tokenizer,
built in code from a fixed seed, so every process gets the very same base weights
without a download. A service model name (the catalogue) gets the same small Llama
sized to that model's vocabulary, with its real tokenizer's bos/eos/pad ids — one base
per (tokenizer family, vocabulary). A name the user maps to a local HF model folder
(``models=``, ``TINKERKIT_MODELS``, ``--model NAME=PATH``) is that folder; a local
directory holding an HF model, or a hub id already in the local HF cache (never
downloaded), is itself.

Needs torch and transformers (the ``local`` extra). The ``local`` backend
(``tinkerkit.backends.local.models``) loads and caches these bases; ``tinkerkit.export``
writes them out as HF folders (``export_base``) without going through a backend.
"""

from __future__ import annotations

import json
import os
import re
import threading
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoConfig,
    AutoTokenizer,
    LlamaConfig,
    LlamaForCausalLM,
)

from tinkerkit.atomic import staged_folder
from tinkerkit.models import tokenizer as byte_tok
from tinkerkit.models.registry import BUILTINS, TINY, TINY_VL, unknown_model_error
from tinkerkit.models.stand_ins import ModelNames
from tinkerkit.paths import holds_something
from tinkerkit.rules.images import Vision

TINY_ARCH = "llama"
# The seed of the built-in base: a pure function of its name, fixed across processes.
TINY_SEED = zlib.crc32(TINY.encode())


# Stand-ins' position limit: the largest context of the catalogue's bare names. The
# rotary embedding is computed on the fly, so it costs nothing; it only keeps one base
# per (family, vocabulary) whatever name built it first.
STAND_IN_POSITIONS = 262144


@dataclass(frozen=True)
class Source:
    """Where a model name's weights come from: built in (tiny, or a stand-in of
    ``family`` with ``vocab`` rows) or ``path``."""

    name: str
    path: str | None  # None: built in; else a folder or cached hub id
    family: str | None = None  # a stand-in's tokenizer family
    vocab: int | None = None

    @property
    def builtin(self) -> bool:
        return self.path is None

    @property
    def stand_in(self) -> bool:
        return self.path is None and self.family is not None


def _to(model: torch.nn.Module, where: torch.device | torch.dtype) -> torch.nn.Module:
    # transformers wraps `PreTrainedModel.to` in a way type checkers misread.
    return torch.nn.Module.to(model, where)


def stand_in_config(
    vocab: int, bos: int | None, eos: int | None, pad: int | None, positions: int
) -> LlamaConfig:
    """The small Llama of the built-in models, sized to ``vocab`` with these token ids."""
    return LlamaConfig(
        vocab_size=vocab,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=128,
        max_position_embeddings=positions,
        tie_word_embeddings=False,
        bos_token_id=bos,
        eos_token_id=eos,
        pad_token_id=pad,
    )


def tiny_config() -> LlamaConfig:
    """The configuration of ``tinkerkit/tiny``.

    Example:
        >>> tiny_config().hidden_size
        64
    """
    tok = byte_tok.byte_tokenizer()
    return stand_in_config(
        byte_tok.VOCAB_SIZE, tok.bos_token_id, tok.eos_token_id, tok.pad_token_id, 2048
    )


def vl_config(text: LlamaConfig, vision: Vision) -> Any:
    """A tiny Qwen3-VL (transformers' own classes) with ``text``'s sizes and token ids and
    a one-block vision tower that reads ``vision``'s patches: the built-in vision model
    (``tinkerkit/tiny-vl``) and the stand-in of the catalogue's vision models.

    Example:
        >>> vl_config(tiny_config(), Vision(262, 261, 263)).vision_config.patch_size
        16
    """
    from transformers import Qwen3VLConfig

    head_dim = text.hidden_size // text.num_attention_heads
    processor = vision.processor
    return Qwen3VLConfig(
        text_config={
            "vocab_size": text.vocab_size,
            "hidden_size": text.hidden_size,
            "intermediate_size": text.intermediate_size,
            "num_hidden_layers": text.num_hidden_layers,
            "num_attention_heads": text.num_attention_heads,
            "num_key_value_heads": text.num_key_value_heads,
            "head_dim": head_dim,
            "max_position_embeddings": text.max_position_embeddings,
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": 5000000.0,
                # Qwen3-VL's split of the rotary frequencies over (time, height, width)
                "mrope_section": [head_dim // 8, 3 * head_dim // 16, 3 * head_dim // 16],
                "mrope_interleaved": True,
            },
            "bos_token_id": text.bos_token_id,
            "eos_token_id": text.eos_token_id,
            "pad_token_id": text.pad_token_id,
        },
        vision_config={
            "depth": 1,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_heads": 2,
            "out_hidden_size": text.hidden_size,
            "patch_size": processor.patch_size,
            "spatial_merge_size": processor.merge_size,
            "temporal_patch_size": processor.temporal_patch_size,
            "num_position_embeddings": 256,
            "deepstack_visual_indexes": [0],
        },
        image_token_id=vision.image_token,
        video_token_id=vision.image_token,  # no video offline: never matched
        vision_start_token_id=vision.start_token,
        vision_end_token_id=vision.end_token,
        tie_word_embeddings=False,
    )


def tiny_vl_config() -> Any:
    """The configuration of ``tinkerkit/tiny-vl``: ``tinkerkit/tiny``'s sizes over the
    byte tokenizer with the vision tokens, and a one-block vision tower.

    Example:
        >>> tiny_vl_config().text_config.vocab_size
        264
    """
    tok = byte_tok.vl_byte_tokenizer()
    text = stand_in_config(
        byte_tok.VL_VOCAB_SIZE, tok.bos_token_id, tok.eos_token_id, tok.pad_token_id, 2048
    )
    return vl_config(text, byte_tok.tiny_vl_vision())


def _build(config: Any, seed: int) -> Any:
    # fork_rng: seeding must not disturb the caller's global random state.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if getattr(config, "vision_config", None) is not None:
            from transformers import Qwen3VLForConditionalGeneration

            model: Any = Qwen3VLForConditionalGeneration(config)
        else:
            model = LlamaForCausalLM(config)
    return _to(model, torch.float32).eval()


def build_builtin(name: str) -> Any:
    """A fresh copy of built-in base ``name`` (tiny or tiny-vl), identical in every process."""
    if name == TINY_VL:
        return _build(tiny_vl_config(), zlib.crc32(TINY_VL.encode()))
    return build_tiny()


def build_tiny() -> LlamaForCausalLM:
    """A fresh copy of the built-in base (float32, CPU), identical in every process.

    Example:
        >>> build_tiny().config.vocab_size
        261
    """
    return _build(tiny_config(), TINY_SEED)


def stand_in_base_config(source: Source, names: ModelNames) -> Any:
    """The config of ``source``'s stand-in: its vocabulary, its tokenizer's special ids;
    a tiny Qwen3-VL for a vision model."""
    assert source.vocab is not None
    tok = names.tokenizer(source.name)
    text = stand_in_config(
        source.vocab, tok.bos_token_id, tok.eos_token_id, tok.pad_token_id, STAND_IN_POSITIONS
    )
    vision = names.vision(source.name)
    return text if vision is None else vl_config(text, vision)


def build_stand_in(source: Source, names: ModelNames) -> Any:
    """A fresh stand-in base for ``source``: a pure function of (family, vocabulary)."""
    seed = zlib.crc32(f"{TINY}/stand-in/{source.family}:{source.vocab}".encode())
    return _build(stand_in_base_config(source, names), seed)


def _is_model_dir(path: Path) -> bool:
    return path.is_dir() and (path / "config.json").is_file()


def _cached_config(name: str) -> Any | None:
    """The config of hub id ``name`` if it is already in the local HF cache, else None."""
    if name.count("/") != 1 or name.startswith((".", "/")):
        return None
    try:
        return AutoConfig.from_pretrained(name, local_files_only=True)
    except (OSError, ValueError):
        return None


def find_source(name: str, names: ModelNames | None = None) -> tuple[Source, Any]:
    """Resolve ``name`` to a source and its config (None for a stand-in, whose spec comes
    from the catalogue); ``UnknownModelError`` if it is none.

    Example:
        >>> find_source("tinkerkit/tiny")[0].builtin
        True
    """
    names = names or ModelNames()
    mapped = names.mapped(name)
    if mapped is not None and mapped.kind == "model":
        return Source(name, str(mapped.path)), AutoConfig.from_pretrained(str(mapped.path))
    if name in BUILTINS and mapped is None:
        return Source(name, None), tiny_vl_config() if name == TINY_VL else tiny_config()
    if mapped is not None or names.entry(name) is not None:
        return Source(name, None, names.family(name), names.vocab_size(name)), None
    path = Path(name).expanduser()
    if _is_model_dir(path):
        return Source(name, str(path.resolve())), AutoConfig.from_pretrained(str(path))
    config = _cached_config(name)
    if config is not None:
        return Source(name, name), config
    # Say where we looked, so a typo in a path is told apart from a missing download.
    raise unknown_model_error(
        name,
        names.known(),
        extra=(
            f" The local backend also looked for a folder {str(path)!r} with a config.json, "
            f"and for {name!r} in the local Hugging Face cache (it never downloads)."
        ),
    )


_tokenizer_lock = threading.Lock()
_tokenizers: dict[str | None, Any] = {}


def _named(source: Source, names: ModelNames) -> bool:
    """Whether the model names (catalogue, mapping) say which tokenizer ``source`` has."""
    return source.stand_in or names.mapped(source.name) is not None


def tokenizer(source: Source, names: ModelNames | None = None) -> Any:
    """The tokenizer of ``source``: the byte tokenizer for tiny, the model's real one for
    a stand-in or a mapped folder, the folder's own otherwise."""
    names = names or ModelNames()
    if _named(source, names) or source.path is None:
        return names.tokenizer(source.name)
    with _tokenizer_lock:
        tok = _tokenizers.get(source.path)
        if tok is None:
            tok = AutoTokenizer.from_pretrained(source.path, local_files_only=True)
            _tokenizers[source.path] = tok
        return tok


def export_base(name: str, out_dir: Path, names: ModelNames | None = None) -> Path:
    """Write the built-in base ``name`` (tiny, or a service model's stand-in) as a normal
    HF model folder; returns ``out_dir``.

    The folder (config.json, model.safetensors, tokenizer files) is written next to
    ``out_dir`` and renamed into place, so readers never see half of it.
    ``out_dir`` must not exist, or be empty.

    Example:
        >>> export_base("tinkerkit/tiny", Path("/tmp/tiny-base"))
        PosixPath('/tmp/tiny-base')
    """
    names = names or ModelNames()
    source, _ = find_source(name, names)
    if not source.builtin:
        raise ValueError(f"{name!r} is not a built-in model; it already has its own files.")
    out_dir = Path(out_dir)
    if holds_something(out_dir):
        raise FileExistsError(f"{out_dir} already exists and is not empty; pick another folder.")
    with staged_folder(out_dir) as tmp:
        model = build_stand_in(source, names) if source.stand_in else build_builtin(name)
        try:
            model.save_pretrained(tmp, safe_serialization=True)
        except OSError:
            raise
        except Exception as exc:  # safetensors' own error for a failed write
            raise _as_os_error(exc, out_dir) from None
        tokenizer(source, names).save_pretrained(tmp)
        vision = names.vision(name)
        if vision is not None:
            config = json.dumps(vision.processor.config(), indent=2)
            (tmp / "preprocessor_config.json").write_text(config + "\n")
    return out_dir


def _as_os_error(exc: Exception, path: Path) -> Exception:
    """safetensors' ``SafetensorError`` for a failed write (``IoError(Os { code: 28, ...
    })``) as the ``OSError`` it wraps, naming ``path``; any other error as it is."""
    found = re.search(r"\bOs \{ code: (\d+)", str(exc))
    if found is None:
        return exc
    code = int(found.group(1))
    return OSError(code, os.strerror(code), str(path))
