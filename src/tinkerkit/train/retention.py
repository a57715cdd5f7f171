"""Keep the last K checkpoints of a run (``keep_last``); older ones are deleted.

Called after a checkpoint's line is committed. The ``final`` checkpoint is never
deleted, nor the newest ``keep_last`` others, so a resume (which starts from the last
line) always finds its checkpoint. Older entries leave ``checkpoints.jsonl`` first (an
atomic rewrite), then the store (``RestClient.delete_checkpoint_from_tinker_path``, the
service's own call): a kill between the two leaves an unlisted checkpoint behind, never
a listed one that is gone.

    pruned = prune(CheckpointLog(log_dir), keep_last=2, delete=delete_path)
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

from tinker import NotFoundError

from tinkerkit.errors import TinkerkitWarning
from tinkerkit.train.checkpoints import CheckpointEntry, CheckpointLog


def prune(
    log: CheckpointLog, keep_last: int, delete: Callable[[str], None]
) -> list[CheckpointEntry]:
    """Drop all but the newest ``keep_last`` non-final checkpoints; returns those dropped.

    Example:
        >>> [e.name for e in prune(CheckpointLog(Path("runs/a")), 1, delete_path)]
        ['step-000010']
    """
    if keep_last < 1:
        return []
    entries = log.entries()
    others = [i for i, e in enumerate(entries) if e.name != "final"]
    dropped = set(others[:-keep_last])
    if not dropped:
        return []
    log.rewrite([e for i, e in enumerate(entries) if i not in dropped])
    old = [entries[i] for i in sorted(dropped)]
    for entry in old:
        for path in (entry.state_path, entry.sampler_path):
            try:
                delete(path)
            except NotFoundError:
                pass  # already gone (expired, or deleted by hand): what we wanted
            except Exception as exc:  # housekeeping must not stop a training run
                warnings.warn(
                    f"keep_last: could not delete old checkpoint {path} ({exc}); delete it "
                    "with RestClient.delete_checkpoint_from_tinker_path",
                    TinkerkitWarning,
                    stacklevel=2,
                )
    return old
