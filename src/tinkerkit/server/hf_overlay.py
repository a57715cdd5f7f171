"""A private Hugging Face hub cache in which the offline tokenizers answer to their hub ids.

Real Tinker code asks the hub for tokenizers by id — the cookbook's
``get_tokenizer("Qwen/Qwen3-8B")``, the SDK's ``SamplingClient.get_tokenizer()`` (Llama 3
models as ``thinkingmachineslabinc/meta-llama-3-instruct-tokenizer``). Offline those
calls fail, and a hub tokenizer would not match the offline backend's anyway. For
``tinkerkit run`` this module writes, in a temporary folder, a hub cache that
``huggingface_hub`` reads with ``HF_HUB_OFFLINE=1``::

    <root>/hub/models--Qwen--Qwen3-8B/refs/main                 <revision>
    <root>/hub/models--Qwen--Qwen3-8B/snapshots/<revision>/
        tokenizer.json, tokenizer_config.json, ... -> <root>/tokenizers/<n>/...
        config.json              a stand-in (AutoTokenizer reads one; only the tokenizer is real)
        preprocessor_config.json a vision model's image processor (``Processor.config()``)
    <root>/hub/models--org--other -> <your hub cache>/models--org--other
    <root>/tokenizers/<n>/       each distinct backend tokenizer, saved once

Every model name the backend knows gets the backend's own tokenizer for that name, so
the ids the command computes are the ids the server accepts; a vision model also gets the
image processor the server counts image tokens with, so ``AutoImageProcessor`` (the
cookbook's ``get_image_processor``) makes the ``expected_tokens`` the server accepts.
Where the backend's tokenizer *is* a hub tokenizer already in your cache (it names that
id), or a local folder (``--model NAME=PATH``), the overlay links those files instead of
copies (a cached vision repo without a processor gets its files linked into a snapshot of
the overlay's own, beside the processor). The rest of your cache is linked in read-only,
so datasets and models you have cached stay visible; nothing is ever written into your
own cache.

Example:
    >>> overlay = build_overlay(Path(tmp), "mock")
    >>> env = {**os.environ, **overlay.env()}   # for the child process only
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger("tinkerkit.server")

# The tokenizer the SDK and the cookbook load for every "meta-llama/Llama-3*" model.
LLAMA3_TOKENIZER = "thinkingmachineslabinc/meta-llama-3-instruct-tokenizer"
_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
_TRUE = {"1", "ON", "YES", "TRUE"}
_TOKENIZER_FILES = ("tokenizer_config.json", "tokenizer.json")
_PROCESSOR_FILE = "preprocessor_config.json"
_STAND_IN_NOTE = (
    "Written by tinkerkit run: only the tokenizer files of this snapshot are real; the "
    "model behind this name is the offline backend's stand-in."
)


@dataclass(frozen=True)
class HubOverlay:
    """A hub cache folder and where each of its repos' files come from."""

    cache: Path
    """Point ``HF_HUB_CACHE`` here (with ``HF_HUB_OFFLINE=1``)."""
    sources: dict[str, str] = field(default_factory=dict)
    """hub id → ``"backend"`` (a saved backend tokenizer), ``"your cache"`` or a folder."""

    def env(self) -> dict[str, str]:
        """The variables that make a child process read this cache, offline."""
        return {"HF_HUB_CACHE": str(self.cache), "HF_HUB_OFFLINE": "1"}


def repo_folder(repo_id: str) -> str:
    """The cache folder name of a model repo, as huggingface_hub names it.

    Example:
        >>> repo_folder("Qwen/Qwen3-8B")
        'models--Qwen--Qwen3-8B'
    """
    return "models--" + repo_id.replace("/", "--")


def is_repo_id(text: str) -> bool:
    """``org/name`` as the hub allows it (no ``--`` or ``..``, which its cache cannot name)."""
    return bool(_REPO_ID.match(text)) and "--" not in text and ".." not in text


def hub_ids(model_name: str) -> list[str]:
    """The hub ids code asks for when it wants ``model_name``'s tokenizer.

    The SDK (``_load_tokenizer_from_model_info``) and the cookbook (``_get_hf_tokenizer``)
    drop a ``:suffix``, map Llama 3 to one shared tokenizer repo, and the SDK cuts
    ``org/model/variant`` to ``org/model``.

    Example:
        >>> hub_ids("meta-llama/Llama-3.2-1B")
        ['meta-llama/Llama-3.2-1B', 'thinkingmachineslabinc/meta-llama-3-instruct-tokenizer']
    """
    base = model_name.split(":", 1)[0]
    ids = [base] if base.count("/") == 1 else []
    if base.count("/") == 2:
        ids.append(base.rsplit("/", 1)[0])
    if base.startswith("meta-llama/Llama-3"):
        ids.append(LLAMA3_TOKENIZER)
    return [i for i in dict.fromkeys(ids) if is_repo_id(i)]


def user_hub_cache(env: Mapping[str, str]) -> Path:
    """The hub cache ``huggingface_hub`` would use with ``env`` (its own precedence)."""
    for name in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if env.get(name):
            return Path(os.path.expandvars(os.path.expanduser(env[name])))
    home = env.get("HF_HOME") or os.path.join(
        env.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"),
        "huggingface",
    )
    return Path(os.path.expandvars(os.path.expanduser(home))) / "hub"


def hub_offline(env: Mapping[str, str], timeout: float = 2.0) -> bool:
    """True if ``HF_HUB_OFFLINE``/``TRANSFORMERS_OFFLINE`` is set or the hub does not answer."""
    if any(
        str(env.get(v, "")).upper() in _TRUE for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    ):
        return True
    import httpx

    endpoint = (env.get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/")
    try:
        # Any answer at all means reachable; httpx honours the proxy variables.
        httpx.head(endpoint, timeout=timeout)
    except httpx.HTTPError:
        return True
    return False


def _cached_snapshot(user_cache: Path, repo_id: str) -> Path | None:
    """The snapshot of ``repo_id``'s ``main`` in the user's cache, if it holds a tokenizer."""
    repo = user_cache / repo_folder(repo_id)
    try:
        revision = (repo / "refs" / "main").read_text().strip()
    except OSError:
        return None
    snapshot = repo / "snapshots" / revision
    if any((snapshot / f).is_file() for f in _TOKENIZER_FILES):
        return snapshot
    return None


def _local_folder(tokenizer: Any) -> Path | None:
    """The folder the tokenizer was loaded from, if it is one (``--model NAME=PATH``)."""
    name = str(getattr(tokenizer, "name_or_path", "") or "")
    if not name:
        return None
    path = Path(name).expanduser()
    if path.is_dir() and any((path / f).is_file() for f in _TOKENIZER_FILES):
        return path.resolve()
    return None


def _processor_config(spec: Any) -> dict[str, Any] | None:
    """The ``preprocessor_config.json`` of a vision model's spec (the processor the server
    counts image tokens with); None for a text-only model."""
    vision = getattr(spec, "vision", None)
    if vision is None:
        return None
    config: dict[str, Any] = vision.processor.config()
    return config


def _content_key(tokenizer: Any) -> tuple[object, ...]:
    """Tokenizers that save to the same files: the same vocabulary object (models of one
    family share it), chat template and special tokens. Saving one 151k-token vocabulary
    writes ~19 MB, so each is saved once and linked from every model that uses it."""
    special = getattr(tokenizer, "special_tokens_map", None)
    return (
        id(getattr(tokenizer, "backend_tokenizer", tokenizer)),
        type(tokenizer).__name__,
        str(getattr(tokenizer, "chat_template", None)),
        json.dumps(special, sort_keys=True, default=str),
    )


class _Builder:
    def __init__(self, root: Path, user_cache: Path | None) -> None:
        self.root = root
        self.cache = root / "hub"
        self.cache.mkdir(parents=True, exist_ok=True)
        self.user_cache = user_cache
        self.sources: dict[str, str] = {}
        self._saved: dict[tuple[object, ...], Path] = {}  # content key → saved folder

    def add(self, repo_id: str, tokenizer: Any, spec: Any) -> None:
        if repo_id in self.sources:
            return
        claimed = str(getattr(tokenizer, "name_or_path", "") or "")
        if self.user_cache is not None and claimed == repo_id:
            snapshot = _cached_snapshot(self.user_cache, repo_id)
            if snapshot is not None:
                if _processor_config(spec) is None or (snapshot / _PROCESSOR_FILE).is_file():
                    # The backend uses this very hub tokenizer: your cached repo, as it is.
                    os.symlink(
                        self.user_cache / repo_folder(repo_id), self.cache / repo_folder(repo_id)
                    )
                else:
                    # A vision model cached without its image processor: your files,
                    # linked, plus the processor the server reads images with.
                    self._snapshot(repo_id, snapshot, spec)
                self.sources[repo_id] = "your cache"
                return
        folder = _local_folder(tokenizer)
        source = str(folder) if folder is not None else "backend"
        if folder is None:
            folder = self._save(tokenizer)
            if folder is None:
                return
        self._snapshot(repo_id, folder, spec)
        self.sources[repo_id] = source

    def _save(self, tokenizer: Any) -> Path | None:
        key = _content_key(tokenizer)
        if key not in self._saved:
            folder = self.root / "tokenizers" / str(len(self._saved))
            try:
                tokenizer.save_pretrained(str(folder))
            except Exception as exc:  # a tokenizer without HF files: nothing to offer
                logger.debug("hub overlay: cannot save tokenizer %r: %s", tokenizer, exc)
                return None
            self._saved[key] = folder
        return self._saved[key]

    def _snapshot(self, repo_id: str, folder: Path, spec: Any) -> None:
        revision = hashlib.sha1(f"tinkerkit-run\0{repo_id}\0{folder}".encode()).hexdigest()
        repo = self.cache / repo_folder(repo_id)
        snapshot = repo / "snapshots" / revision
        snapshot.mkdir(parents=True)
        for file in sorted(folder.iterdir()):
            if file.is_file():
                os.symlink(file, snapshot / file.name)
        if not (snapshot / "config.json").exists():
            import transformers

            config = {
                "tinkerkit": _STAND_IN_NOTE,
                "vocab_size": getattr(spec, "vocab_size", None),
                "max_position_embeddings": getattr(spec, "max_context_length", None),
                # Without it transformers 5 suspects an old Mistral regex and warns.
                "transformers_version": transformers.__version__,
            }
            (snapshot / "config.json").write_text(json.dumps(config, indent=2))
        processor = _processor_config(spec)
        if processor is not None and not (snapshot / _PROCESSOR_FILE).exists():
            (snapshot / _PROCESSOR_FILE).write_text(json.dumps(processor, indent=2))
        (repo / "refs").mkdir()
        (repo / "refs" / "main").write_text(revision)

    def link_user_cache(self) -> None:
        """Everything else in the user's cache, linked (read-only use) under its own name."""
        if self.user_cache is None or not self.user_cache.is_dir():
            return
        for entry in sorted(self.user_cache.iterdir()):
            target = self.cache / entry.name
            if entry.name.startswith(".") or target.exists() or target.is_symlink():
                continue
            os.symlink(entry, target)


def build_overlay(
    root: Path,
    backend: str,
    *,
    names: Iterable[str] | None = None,
    also: Iterable[str] = (),
    user_cache: Path | None = None,
) -> HubOverlay:
    """Write the hub cache for ``names`` (None: every name ``backend`` knows) under ``root``.

    Each name's tokenizer comes from the backend (``engine_factory(backend).tokenizer``),
    so a real-vocabulary stand-in is picked up as soon as the backend has one. ``also``
    adds names (``--model`` mappings). A name the backend cannot resolve is skipped.
    Names are served before the aliases other names imply (``org/model`` of
    ``org/model/variant``, the shared Llama 3 tokenizer); the first model to claim an
    alias keeps it.
    """
    from tinkerkit.backends.registry import engine_factory

    factory = engine_factory(backend)
    builder = _Builder(root, user_cache)
    aliases: list[tuple[str, Any, Any]] = []
    wanted = factory.known_models() if names is None else list(names)
    for name in dict.fromkeys([*wanted, *also]):
        try:
            spec = factory.resolve(name)
            tokenizer = factory.tokenizer(spec)
        except Exception as exc:  # not every name resolves offline; skip it, say why
            logger.debug("hub overlay: skipping %s: %s", name, exc)
            continue
        ids = hub_ids(name)
        own = str(getattr(tokenizer, "name_or_path", "") or "")
        if is_repo_id(own) and not Path(own).exists():
            ids.append(own)
        for i, repo_id in enumerate(ids):
            if i == 0 and repo_id == name.split(":", 1)[0]:
                builder.add(repo_id, tokenizer, spec)
            else:
                aliases.append((repo_id, tokenizer, spec))
    for repo_id, tokenizer, spec in aliases:
        builder.add(repo_id, tokenizer, spec)
    builder.link_user_cache()
    return HubOverlay(builder.cache, dict(builder.sources))


class OverlayBuild:
    """``build_overlay`` in a child process, started now, collected with ``result()``.

    A process of its own, so that resolving every model's tokenizer neither delays the
    server starting meanwhile nor spends the backend's once-per-process notices (such
    as the byte-tokenizer fallback warning) on models the command never uses.
    """

    def __init__(
        self,
        root: Path,
        backend: str,
        *,
        names: Iterable[str] | None,
        also: Iterable[str],
        user_cache: Path | None,
        env: Mapping[str, str],
    ) -> None:
        import subprocess
        import sys

        request = {
            "root": str(root),
            "backend": backend,
            "names": None if names is None else list(names),
            "also": list(also),
            "user_cache": None if user_cache is None else str(user_cache),
        }
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "tinkerkit.server.hf_overlay", json.dumps(request)],
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )

    def result(self) -> HubOverlay:
        """The overlay once built; ``RuntimeError`` with the builder's error otherwise."""
        out, err = self._proc.communicate()
        if self._proc.returncode != 0:
            tail = err.decode(errors="replace").strip().splitlines()[-5:]
            raise RuntimeError("could not build the private hub cache: " + " | ".join(tail))
        answer = json.loads(out.decode().strip().splitlines()[-1])
        return HubOverlay(Path(answer["cache"]), dict(answer["sources"]))

    def cancel(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
            self._proc.communicate()


def _main(argv: list[str]) -> None:
    request = json.loads(argv[0])
    # Which names fell back to what is the server's to say, for the model actually used.
    logging.getLogger("tinkerkit").setLevel(logging.ERROR)
    cache = request["user_cache"]
    overlay = build_overlay(
        Path(request["root"]),
        request["backend"],
        names=request["names"],
        also=request["also"],
        user_cache=None if cache is None else Path(cache),
    )
    print(json.dumps({"cache": str(overlay.cache), "sources": overlay.sources}))


if __name__ == "__main__":
    import sys

    _main(sys.argv[1:])


__all__ = [
    "LLAMA3_TOKENIZER",
    "HubOverlay",
    "OverlayBuild",
    "build_overlay",
    "hub_ids",
    "hub_offline",
    "repo_folder",
    "user_hub_cache",
]
