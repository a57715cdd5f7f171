"""Base models of the ``local`` backend: the built-in tiny Llama, local HF folders, HF cache.

``tinkerkit/tiny`` is a small Llama (2 layers, hidden 64) over the byte tokenizer,
built in code from a fixed seed, so every process gets the very same base weights
without a download. The Tinker service's model names resolve to it as a stand-in.
A local directory holding an HF model, or a hub id already in the local HF cache
(never downloaded), is loaded with ``transformers`` as it is.

Base models are cached per process and shared, frozen, by every engine built on them.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import torch
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoTokenizer,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
)

from tinkerkit.errors import UnknownModelError
from tinkerkit.models import tokenizer as byte_tok
from tinkerkit.models.registry import SERVICE_MODELS, TINY, ModelSpec

TINY_ARCH = "llama"
# The seed of the built-in base: a pure function of its name, fixed across processes.
TINY_SEED = zlib.crc32(TINY.encode())


@dataclass(frozen=True)
class Source:
    """Where a model name's weights come from: the built-in tiny model or ``path``."""

    name: str
    path: str | None  # None: the built-in tiny model; else a folder or cached hub id

    @property
    def builtin(self) -> bool:
        return self.path is None


def device() -> torch.device:
    """CUDA when there is one, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _to(model: torch.nn.Module, where: torch.device | torch.dtype) -> torch.nn.Module:
    # transformers wraps `PreTrainedModel.to` in a way type checkers misread.
    return torch.nn.Module.to(model, where)


def tiny_config() -> LlamaConfig:
    """The configuration of ``tinkerkit/tiny``.

    Example:
        >>> tiny_config().hidden_size
        64
    """
    tok = byte_tok.byte_tokenizer()
    return LlamaConfig(
        vocab_size=byte_tok.VOCAB_SIZE,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=128,
        max_position_embeddings=2048,
        tie_word_embeddings=False,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )


def build_tiny() -> LlamaForCausalLM:
    """A fresh copy of the built-in base (float32, CPU), identical in every process.

    Example:
        >>> build_tiny().config.vocab_size
        261
    """
    # fork_rng: seeding must not disturb the caller's global random state.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(TINY_SEED)
        model = LlamaForCausalLM(tiny_config())
    return cast(LlamaForCausalLM, _to(model, torch.float32).eval())


def known_models() -> list[str]:
    """The model names the ``local`` backend always knows (besides folders and the HF cache)."""
    return [TINY, *SERVICE_MODELS]


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


def find_source(name: str) -> tuple[Source, Any]:
    """Resolve ``name`` to a source and its config; ``UnknownModelError`` if it is none.

    Example:
        >>> find_source("tinkerkit/tiny")[0].builtin
        True
    """
    if name == TINY or name in SERVICE_MODELS:
        return Source(name, None), tiny_config()
    path = Path(name).expanduser()
    if _is_model_dir(path):
        return Source(name, str(path.resolve())), AutoConfig.from_pretrained(str(path))
    config = _cached_config(name)
    if config is not None:
        return Source(name, name), config
    error = UnknownModelError(name, known_models())
    # Say where we looked, so a typo in a path is told apart from a missing download.
    error.message += (
        f" The local backend also looked for a folder {str(path)!r} with a config.json, "
        f"and for {name!r} in the local Hugging Face cache (it never downloads)."
    )
    raise error


def spec_for(source: Source, config: Any) -> ModelSpec:
    """The ``ModelSpec`` the clients see for a resolved source."""
    if source.builtin:
        stands_in = None if source.name == TINY else source.name
        return ModelSpec(
            name=source.name,
            arch=TINY_ARCH,
            vocab_size=byte_tok.VOCAB_SIZE,
            max_context_length=int(config.max_position_embeddings),
            stands_in_for=stands_in,
        )
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    max_len = getattr(text, "max_position_embeddings", None) or 2048
    return ModelSpec(
        name=source.name,
        arch=str(getattr(config, "model_type", "unknown")),
        vocab_size=int(text.vocab_size),
        max_context_length=int(max_len),
    )


_lock = threading.Lock()
_bases: dict[tuple[str | None, str], PreTrainedModel] = {}
_tokenizers: dict[str | None, Any] = {}


def base_model(source: Source) -> PreTrainedModel:
    """The shared, frozen base model of ``source`` on ``device()`` (cached per process)."""
    dev = device()
    key = (source.path, str(dev))
    with _lock:
        model = _bases.get(key)
        if model is None:
            if source.path is None:
                model = build_tiny()
            else:
                # float32 on CPU; on a GPU keep the checkpoint's own (half) precision.
                dtype = torch.float32 if dev.type == "cpu" else "auto"
                model = AutoModelForCausalLM.from_pretrained(
                    source.path, dtype=dtype, local_files_only=True
                )
            model = cast(PreTrainedModel, _to(model, dev).eval())
            model.requires_grad_(False)
            _bases[key] = model
        return model


def tokenizer(source: Source) -> Any:
    """The tokenizer of ``source``: the byte tokenizer for the built-in model."""
    if source.path is None:
        return byte_tok.byte_tokenizer()
    with _lock:
        tok = _tokenizers.get(source.path)
        if tok is None:
            tok = AutoTokenizer.from_pretrained(source.path, local_files_only=True)
            _tokenizers[source.path] = tok
        return tok


def stop_tokens(source: Source) -> list[int]:
    """End-of-generation token ids: the tokenizer's EOS and the generation config's."""
    if source.path is None:
        return byte_tok.stop_token_ids()
    ids: list[int] = []
    eos = tokenizer(source).eos_token_id
    if eos is not None:
        ids.append(int(eos))
    gen = getattr(base_model(source), "generation_config", None)
    extra = getattr(gen, "eos_token_id", None)
    for token in extra if isinstance(extra, list) else [extra]:
        if token is not None and int(token) not in ids:
            ids.append(int(token))
    return ids


def export_base(name: str, out_dir: Path) -> Path:
    """Write the built-in base ``name`` as a normal HF model folder; returns ``out_dir``.

    The folder (config.json, model.safetensors, tokenizer files) is written next to
    ``out_dir`` and renamed into place, so readers never see half of it.
    ``out_dir`` must not exist, or be empty.

    Example:
        >>> export_base("tinkerkit/tiny", Path("/tmp/tiny-base"))
        PosixPath('/tmp/tiny-base')
    """
    source, _ = find_source(name)
    if not source.builtin:
        raise ValueError(f"{name!r} is not a built-in model; it already has its own files.")
    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise FileExistsError(f"{out_dir} already exists and is not empty; pick another folder.")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        build_tiny().save_pretrained(tmp, safe_serialization=True)
        byte_tok.byte_tokenizer().save_pretrained(tmp)
        if out_dir.exists():
            out_dir.rmdir()
        tmp.rename(out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir
