"""A tokenizer as a Hugging Face folder, for code that can only ``from_pretrained``.

``tinkerkit serve`` answers ``get_info`` with such a folder as ``tokenizer_id``, so the
SDK's ``get_tokenizer()`` loads the server's very tokenizer without the hub. The
folder's name carries a digest of the tokenizer, so a different tokenizer for the same
id (a new mapping, an installed vocabulary package) never reuses a stale folder.
"""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path
from typing import Any

from tinkerkit.models.tokenizer import tokenizer_directory

_lock = threading.Lock()
_digests: dict[int, tuple[Any, str]] = {}
_saved: dict[str, Path] = {}
"""Folders this process saved, by ``<id>@<digest>``: reused while they exist, so a
tokenizer is written once per process (and the SDK's cache of loaded tokenizers, keyed
by folder, keeps answering) even when ``TINKERKIT_HOME`` changes."""


def digest(tokenizer: Any) -> str:
    """A short content digest of ``tokenizer`` (vocabulary, merges, special tokens, chat
    template); computed once per tokenizer object."""
    with _lock:
        known = _digests.get(id(tokenizer))
        if known is not None and known[0] is tokenizer:
            return known[1]
    backend = getattr(tokenizer, "backend_tokenizer", None)
    parts = [
        backend.to_str() if backend is not None else repr(tokenizer.get_vocab()),
        tokenizer.chat_template or "",
        json.dumps(tokenizer.special_tokens_map, sort_keys=True, default=str),
    ]
    value = hashlib.sha256("\0".join(parts).encode()).hexdigest()[:12]
    with _lock:
        _digests[id(tokenizer)] = (tokenizer, value)  # the object is kept: its id stays unique
    return value


def saved_folder(tokenizer: Any, tokenizer_id: str) -> Path:
    """``tokenizer`` saved under ``TINKERKIT_HOME/tokenizers`` (once), named after
    ``tokenizer_id`` and its digest; a folder this process saved already for the same
    tokenizer is reused wherever it is.

    Example:
        >>> AutoTokenizer.from_pretrained(saved_folder(tok, "Qwen/Qwen3-8B"))
    """
    key = f"{tokenizer_id}@{digest(tokenizer)}"
    with _lock:
        known = _saved.get(key)
    if known is not None and (known / "tokenizer_config.json").is_file():
        return known
    folder = tokenizer_directory(tokenizer, key)
    with _lock:
        _saved[key] = folder
    return folder
