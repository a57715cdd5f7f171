"""Where an export's weights come from: a run folder, a ``tinker://`` path, a URL or files.

Tinker 0.38 downloads only ``external_weights`` paths. A run's ``state``
(``tinker://<run>/weights/<name>``) and ``sampler`` (``.../sampler_weights/<name>``)
paths get there through a training client, as the SDK's own ``tinker checkpoint
download`` does: the state is loaded into a new training client
(``create_training_client_from_state``), saved with ``save_weights_external`` under a
temporary name, downloaded, and the temporary copy deleted. The loops save the state
and the sampler weights of a checkpoint under one name, so a sampler path's state is
``tinker://<run>/weights/<name>``; a run folder's ``checkpoints.jsonl`` names both (and
the external copy, where the loop made one with ``export_final``, which is then used as
it is: no training client).

    route = plan("runs/a")                 # final's external copy, or its state
    route.state                            # 'tinker://local-.../weights/final' or None
"""

from __future__ import annotations

import uuid
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tinker import types

from tinkerkit._defaults import rest_client, service_or_default
from tinkerkit.errors import TinkerkitWarning
from tinkerkit.export.errors import ExportError, UnsupportedSourceError
from tinkerkit.export.sources import _tinker_kind
from tinkerkit.protocols import ServiceClientLike
from tinkerkit.train.checkpoints import CHECKPOINTS_FILE, MANIFEST_FILE, CheckpointLog

TEMPORARY_EXPORT_TTL_S = 3600
"""Lifetime of the temporary external copy (the SDK's own choice, the service's minimum):
it is deleted after the download, and expires by itself if the process dies first."""


@dataclass(frozen=True)
class Route:
    """How one source's weights are reached."""

    source: str
    """What was asked for (a run folder, a path, a URL, files)."""
    path: str
    """What is downloaded or read: an ``external_weights`` path, a URL, a local adapter;
    for a ``state`` route, the state path itself (the external copy is made later)."""
    state: str | None = None
    """The state checkpoint exported through a training client, or None (no client)."""
    derived: bool = False
    """``state`` was derived from a sampler path's name, not recorded or given."""


def plan(source: str | Path, checkpoint: str | None = None) -> Route:
    """The route to ``source``'s weights; reads a run folder's ``checkpoints.jsonl``,
    makes no request. ``checkpoint``: a run folder's checkpoint by name (default: its last,
    ``final`` once the run is finished).

    Example:
        >>> plan("tinker://local-1a2b/sampler_weights/final").state
        'tinker://local-1a2b/weights/final'
    """
    text = str(source)
    if "://" not in text:
        folder = Path(text)
        if folder.is_dir() and (
            (folder / CHECKPOINTS_FILE).exists() or (folder / MANIFEST_FILE).exists()
        ):
            return _run_route(folder, checkpoint)
        return Route(text, text)
    if not text.startswith("tinker://"):
        return Route(text, text)
    kind = _tinker_kind(text)
    if kind == "weights":
        return Route(text, text, state=text)
    if kind == "sampler_weights":
        parsed = types.ParsedCheckpointTinkerPath.from_tinker_path(text)
        name = parsed.checkpoint_id.partition("/")[2]
        state = f"tinker://{parsed.training_run_id}/weights/{name}"
        return Route(text, text, state=state, derived=True)
    return Route(text, text)


def _run_route(folder: Path, checkpoint: str | None) -> Route:
    entries = CheckpointLog(folder).entries()
    if checkpoint is not None:
        entries = [e for e in entries if e.name == checkpoint]
    if not entries:
        which = f"no checkpoint named {checkpoint!r}" if checkpoint else "no checkpoint yet"
        raise UnsupportedSourceError(
            f"{folder} holds {which} ({folder / CHECKPOINTS_FILE}); export a run that saved "
            "one (every run saves 'final' when it ends), or pass a tinker:// path."
        )
    entry = entries[-1]
    if entry.external_path is not None:
        return Route(str(folder), entry.external_path)
    return Route(str(folder), entry.state_path, state=entry.state_path)


def cost_of(route: Route) -> str:
    """What exporting through a training client costs, for a prompt on the service."""
    via = "" if route.source == route.state else f" (through {route.state})"
    return (
        f"Exporting {route.source}{via} creates a training client: the service loads the "
        "state into a new training run on its base model (billed like any training client "
        "while it lasts), saves the weights with save_weights_external (a temporary copy, "
        "deleted after the download) and signs download URLs."
    )


def export_state(
    route: Route,
    service: ServiceClientLike | None,
    download_and_convert: Callable[[str], Path],
    confirm: Callable[[str], bool] | None = None,
) -> Path:
    """Export ``route.state`` through a training client: load it, save it externally
    under a temporary name, ``download_and_convert(external_path)``, delete the copy.

    ``confirm(message)`` (when given) is asked first, with what it costs; False cancels
    before any request."""
    assert route.state is not None
    if confirm is not None and not confirm(cost_of(route)):
        raise ExportError(f"export of {route.source} cancelled: nothing was created.")
    service = service_or_default(service)
    try:
        training = service.create_training_client_from_state(route.state).result()
    except Exception as exc:
        if not route.derived:
            raise
        raise UnsupportedSourceError(
            f"{route.source} has no training state beside it: the loops save "
            f"{route.state} with every sampler checkpoint, and loading it failed ({exc}). "
            "Pass the run's folder (its checkpoints.jsonl names the state) or the "
            "tinker://.../weights/<name> path."
        ) from None
    name = f"tinkerkit-export-{uuid.uuid4().hex[:12]}"
    external = training.save_weights_external(name, ttl_seconds=TEMPORARY_EXPORT_TTL_S).result()
    try:
        return download_and_convert(external.path)
    finally:
        try:
            rest_client(service).delete_checkpoint_from_tinker_path(external.path).result()
        except Exception as exc:  # the copy expires by itself; the export is what matters
            warnings.warn(
                f"could not delete the temporary export {external.path} ({exc}); it expires "
                f"in {TEMPORARY_EXPORT_TTL_S} s",
                TinkerkitWarning,
                stacklevel=2,
            )
