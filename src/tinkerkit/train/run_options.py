"""``RunOptions``: the settings every training loop's config shares, and the cookbook
alias rule (``resolve_alias``).

A module of its own that imports nothing heavy: the ``tinkerkit`` commands build their
options (defaults, help) from these dataclasses, and ``tinkerkit --help`` stays fast.

Cookbook names are accepted as keyword-only aliases (``InitVar``): they are resolved into
the field they stand for when the config is made, so ``Config(log_path="runs/a")`` equals
``Config(log_dir="runs/a")``, and the alias is no field: not in ``run.json``, not in the
run's identity, not compared. Read the field (``config.log_dir``), not the alias.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import MISSING, InitVar, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tinkerkit.train.metrics import Callback


@dataclass(kw_only=True)
class RunOptions:
    """Settings every training loop shares (keyword-only in every loop's config)."""

    model: str = "tinkerkit/tiny"
    """Base model name."""
    rank: int = 32
    """LoRA rank."""
    seed: int = 0
    log_dir: str | Path = "runs/run"
    """The run's folder: metrics, checkpoints, run.json."""
    log_path: InitVar[str | Path | None] = None
    """The cookbook's name for ``log_dir``."""
    resume: bool = False
    """Continue the run in ``log_dir`` from its last checkpoint."""
    overwrite: bool = False
    """Start again in a ``log_dir`` that holds a run: its files are replaced once the new
    run's inputs are validated (its checkpoints in the store are left alone)."""
    save_every: int = 0
    """Checkpoint every K steps (0: only at the end)."""
    keep_last: int = 0
    """Keep only the newest K checkpoints besides ``final`` (0: keep all); older ones are
    deleted from the store once a newer one is committed."""
    ttl_seconds: int | None = None
    progress: bool = True
    callbacks: Sequence[Callback] = field(default_factory=tuple)
    wandb_project: str | None = None

    def __post_init__(self, log_path: str | Path | None) -> None:
        resolve_alias(self, "log_dir", "log_path", log_path)


def run_identity_of(config: Any, *names: str, **known: Any) -> dict[str, Any]:
    """What defines a run, checked on resume: the model, rank and seed every loop has,
    the loop's own ``names`` read from ``config``, and ``known`` values (fingerprints).

    Example:
        >>> run_identity_of(config, "epochs", data="3f2a…")["epochs"]
        3
    """
    shared = {"model": config.model, "rank": config.rank, "seed": config.seed}
    return {**shared, **{name: getattr(config, name) for name in names}, **known}


def field_default(config: Any, name: str) -> Any:
    """The declared default of dataclass field ``name`` (``MISSING`` when it has none)."""
    for f in fields(config):
        if f.name == name:
            if f.default is not MISSING:
                return f.default
            if f.default_factory is not MISSING:
                return f.default_factory()
            return MISSING
    raise AttributeError(name)


def resolve_alias(config: Any, name: str, alias: str, value: Any) -> None:
    """Set field ``name`` from its alias ``value`` (given unless None).

    Both given and different is refused (a ``ConfigError`` naming both); a field still at
    its default counts as not given.

    Example:
        >>> resolve_alias(config, "log_dir", "log_path", "runs/a")   # config.log_dir == "runs/a"
    """
    if value is None:
        return
    current = getattr(config, name)
    if _same(current, value):
        return  # both given, the same: the field's value stays
    if not _same(current, field_default(config, name)):
        from tinkerkit.errors import ConfigError  # here: tinkerkit.errors imports tinker

        kind = type(config).__name__
        raise ConfigError(
            f"{kind}.{alias} ({value!r}) and {kind}.{name} ({current!r}) disagree: "
            f"{alias} is another name for {name}, pass one of them"
        )
    setattr(config, name, value)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, Path) or isinstance(b, Path):
        return isinstance(a, str | Path) and isinstance(b, str | Path) and Path(a) == Path(b)
    return bool(a == b)
