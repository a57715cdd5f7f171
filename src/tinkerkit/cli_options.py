"""Option value types for the ``tinkerkit`` commands, and the options made from a config
model's fields (``config_options``): values checked when parsed.

A bad value fails before anything is built or written, as one line naming the option,
the value and what to pass instead (``--lr nan`` would otherwise train to NaN and exit 0,
``--rank 100000000`` would run out of memory building the adapter)::

    @click.option("--lr", type=Number(float, above=0.0), default=1e-4)

Imports nothing heavy (click, and pydantic for the configs): ``tinkerkit --help`` stays fast.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from types import UnionType
from typing import TYPE_CHECKING, Any, Literal, Union, get_args, get_origin

import click

# The largest ``--rank`` and ``sample --num-samples``: the backends' request limits.
from tinkerkit.backends.limits import MAX_LATENCY_S, MAX_LORA_RANK, MAX_NUM_SAMPLES
from tinkerkit.train.run_options import RunOptions, names_of

if TYPE_CHECKING:
    from pydantic.fields import FieldInfo

    from tinkerkit.train.run_options import Settings

MAX_NEW_TOKENS = 1 << 17
"""The largest ``--max-tokens`` a sampling command accepts."""


class Number(click.ParamType):
    """An ``int`` or a finite ``float`` within bounds; the error says which values work.

    ``above`` is an exclusive lower bound, ``at_least``/``at_most`` inclusive ones.

    Example:
        >>> Number(float, above=0.0).convert("nan", None, None)
        click.exceptions.BadParameter: nan is not a number above 0; ...
    """

    def __init__(
        self,
        kind: type[int] | type[float],
        *,
        above: float | None = None,
        at_least: float | None = None,
        at_most: float | None = None,
    ) -> None:
        self.kind = kind
        self.above = above
        self.at_least = at_least
        self.at_most = at_most
        self.name = "integer" if kind is int else "number"

    def _wanted(self) -> str:
        parts = []
        if self.above is not None:
            parts.append(f"above {_show(self.above)}")
        if self.at_least is not None:
            parts.append(f"at least {_show(self.at_least)}")
        if self.at_most is not None:
            parts.append(f"at most {_show(self.at_most)}")
        what = "a whole number" if self.kind is int else "a finite number"
        return f"{what} {' and '.join(parts)}" if parts else what

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        try:
            number = self.kind(value)
        except (TypeError, ValueError, OverflowError):
            self.fail(f"{value!r} is not {self._wanted()}", param, ctx)
        if isinstance(number, float) and not math.isfinite(number):
            self.fail(f"{value} is not {self._wanted()}", param, ctx)
        if (
            (self.above is not None and not number > self.above)
            or (self.at_least is not None and not number >= self.at_least)
            or (self.at_most is not None and not number <= self.at_most)
        ):
            self.fail(f"{value} is out of range: pass {self._wanted()}", param, ctx)
        return number

    def __repr__(self) -> str:
        return f"Number({self.kind.__name__}, {self._wanted()})"


class OutputPath(click.ParamType):
    """A path a command will write: a folder (``folder=True``) or a file. Refused before
    anything runs when it is the other kind, or when a part of it is a file.

    Example:
        >>> OutputPath(folder=True).convert("notes.md", None, None)   # an existing file
        click.exceptions.BadParameter: 'notes.md' is a file, not a folder: ...
    """

    def __init__(self, *, folder: bool) -> None:
        self.folder = folder
        self.name = "folder" if folder else "file"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        path = Path(value)
        if self.folder and path.exists() and not path.is_dir():
            self.fail(f"{str(path)!r} is a file, not a folder: give a folder path", param, ctx)
        if not self.folder and path.is_dir():
            self.fail(
                f"{str(path)!r} is a folder: give a file path, e.g. {str(path / 'out.jsonl')!r}",
                param,
                ctx,
            )
        for parent in path.parents:
            if parent.exists():
                if not parent.is_dir():
                    self.fail(
                        f"{str(path)!r} is inside {str(parent)!r}, which is a file, not a "
                        "folder: give another path",
                        param,
                        ctx,
                    )
                break
        return path


class DataSource(click.Path):
    """A data file, or a URL kept as the string it is (``s3://bucket/chats.jsonl``,
    ``sqlite:///x.db?table=chats``): as a ``Path`` it would lose a slash.

    Example:
        >>> DataSource().convert("s3://bucket/chats.jsonl", None, None)
        's3://bucket/chats.jsonl'
    """

    def __init__(self) -> None:
        super().__init__(path_type=Path)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        from tinkerkit.data.sources import is_url

        return value if is_url(value) else super().convert(value, param, ctx)


class Text(click.ParamType):
    """A string option that must be text: a shell passing bytes that are not UTF-8
    gives Python lone surrogates, which no tokenizer or file can take.

    Example:
        >>> Text().convert("caf\\udce9", None, None)
        click.exceptions.BadParameter: contains bytes that are not UTF-8 text ...
    """

    name = "text"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        text = str(value)
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            self.fail(
                "contains bytes that are not UTF-8 text (lone surrogates): pass UTF-8 text",
                param,
                ctx,
            )
        return text


def _show(bound: float) -> str:
    return f"{bound:g}" if isinstance(bound, float) else str(bound)


POSITIVE_INT = Number(int, at_least=1)
POSITIVE_FLOAT = Number(float, above=0.0)
NON_NEGATIVE_FLOAT = Number(float, at_least=0.0)
LATENCY = Number(float, at_least=0.0, at_most=MAX_LATENCY_S)
THREADS = click.option(
    "--threads",
    default=None,
    type=Number(int, at_least=1),
    help="Torch threads of the local backend (default: the cores other processes leave "
    "free, one for small models; or $TINKERKIT_THREADS).",
)


def set_threads(threads: int | None) -> None:
    """``--threads``: the ``TINKERKIT_THREADS`` the local engine reads (unset: its own)."""
    if threads is not None:
        os.environ["TINKERKIT_THREADS"] = str(threads)


SEED = Number(int, at_least=0)
NUM_SAMPLES = Number(int, at_least=1, at_most=MAX_NUM_SAMPLES)
NEW_TOKENS = Number(int, at_least=1, at_most=MAX_NEW_TOKENS)
OUTPUT_FOLDER = OutputPath(folder=True)
OUTPUT_FILE = OutputPath(folder=False)
TEXT = Text()

SHORT_FLAGS = {
    "learning_rate": "--lr",
    "sft_learning_rate": "--sft-lr",
    "reward_learning_rate": "--reward-lr",
    "rl_learning_rate": "--policy-lr",
}
"""The guide's short flags, used instead of ``--field-name``."""

REQUEST_LIMITS = {
    "rank": MAX_LORA_RANK,
    "max_tokens": MAX_NEW_TOKENS,
    "group_size": MAX_NUM_SAMPLES,
}
"""The backends' limits on config fields, checked when parsed too: a request over them
is refused, but ``--rank 100000000`` would run out of memory building the adapter first,
and ``--group-size 2000`` would fail only once sampling starts (one sample request a group)."""


class ConfigOption(click.Option):
    """An option made from a config field: errors name its first flag only, so an
    alias (``--log-path`` for ``--log-dir``) leaves the one-line messages as they were."""

    def get_error_hint(self, ctx: click.Context | None) -> str:
        return f"'{self.opts[0]}'"


def config_options(
    config: type[Settings],
    include: Sequence[str],
    *,
    help: Mapping[str, str] | None = None,
    required: Collection[str] = (),
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Click options for the config model's fields ``include`` (in that order): the
    default (and ``show_default``) is the field's default, the help its attribute
    docstring, the type its checks (``field_type``; a bool field is a flag). The flags are
    ``--field-name`` (or its ``SHORT_FLAGS`` one), then its aliases' (``--log-path``). A
    field without a default, or named in ``required``, is a required option. The
    parameter is the field's name, so the command passes its options on as
    ``config(**fields)``.

    Example:
        >>> @click.command()
        ... @config_options(sft_config.Config, ["epochs", "learning_rate"])
        ... def sft(**fields): ...      # --epochs [default: 3], --lr [default: 0.0001]
    """

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        for name in reversed(include):
            info = config.model_fields[name]
            flags = [SHORT_FLAGS.get(name, _flag(name)), *map(_flag, names_of(info))]
            description = " ".join((info.description or "").replace("``", "").split())
            option: dict[str, Any] = {
                "cls": ConfigOption,
                "help": (help or {}).get(name, description or None),
                "type": field_type(name, info),
            }
            if info.is_required() or name in required:
                option["required"] = True
            elif isinstance(info.default, bool):
                option.update(is_flag=True, default=info.default)
            else:
                option.update(default=info.default, show_default=info.default is not None)
            command = click.option(*flags, name, **option)(command)
        return command

    return decorate


def field_type(name: str, info: FieldInfo) -> click.ParamType | None:
    """A config field's command-line type: its ``Literal`` values as choices, a number
    within its ``Field`` bounds (and ``REQUEST_LIMITS``), a path (a folder a run writes
    for ``*_dir``), else None (text)."""
    annotation = info.annotation
    if get_origin(annotation) is Literal:
        return click.Choice(get_args(annotation))
    kinds = (
        set(get_args(annotation)) if get_origin(annotation) in (Union, UnionType) else {annotation}
    )
    kinds.discard(type(None))
    if Path in kinds and any(get_origin(kind) is Sequence for kind in kinds):
        return DataSource()  # a loop's records (``Records``): a file or a URL
    if Path in kinds:
        return OUTPUT_FOLDER if name.endswith("_dir") else click.Path(path_type=Path)
    if kinds == {int} or kinds == {float}:
        bounds = {
            k: getattr(m, k) for m in info.metadata for k in ("gt", "ge", "le") if hasattr(m, k)
        }
        return Number(
            kinds.pop(),
            above=bounds.get("gt"),
            at_least=bounds.get("ge"),
            at_most=bounds.get("le", REQUEST_LIMITS.get(name)),
        )
    return None


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def run_folder_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """``--overwrite``, ``--keep-last K`` and ``--export-final DIR`` (``--export DIR``),
    the options of every loop's log folder (from ``RunOptions``).

    Example:
        >>> @click.command()
        ... @run_folder_options
        ... def sft(overwrite: bool, keep_last: int, export_final: Path | None) -> None: ...
    """
    return config_options(
        RunOptions,
        ["overwrite", "keep_last", "export_final"],
        help={
            "overwrite": "Start again in a --log-dir that holds a run (its log files are "
            "replaced).",
            "keep_last": "Keep only the newest K checkpoints besides final (0: keep all).",
            "export_final": "Also write the final weights into this new or empty folder as a "
            "PEFT adapter (saved with save_weights_external; checkpoints.jsonl records the "
            "path).",
        },
    )(command)
