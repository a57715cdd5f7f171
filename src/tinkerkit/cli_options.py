"""Option value types for the ``tinkerkit`` commands: numbers checked when parsed.

A bad value fails before anything is built or written, as one line naming the option,
the value and what to pass instead (``--lr nan`` would otherwise train to NaN and exit 0,
``--rank 100000000`` would run out of memory building the adapter)::

    @click.option("--lr", type=Number(float, above=0.0), default=1e-4)

Imports nothing heavy: ``tinkerkit --help`` stays fast.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import itertools
import math
import re
import sys
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import click

# The largest ``--rank`` and ``sample --num-samples``: the backends' request limits.
from tinkerkit.backends.limits import MAX_LORA_RANK, MAX_NUM_SAMPLES

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
NON_NEGATIVE_INT = Number(int, at_least=0)
POSITIVE_FLOAT = Number(float, above=0.0)
NON_NEGATIVE_FLOAT = Number(float, at_least=0.0)
FRACTION = Number(float, at_least=0.0, at_most=0.99)
RANK = Number(int, at_least=1, at_most=MAX_LORA_RANK)
NUM_SAMPLES = Number(int, at_least=1, at_most=MAX_NUM_SAMPLES)
NEW_TOKENS = Number(int, at_least=1, at_most=MAX_NEW_TOKENS)
OUTPUT_FOLDER = OutputPath(folder=True)
OUTPUT_FILE = OutputPath(folder=False)
TEXT = Text()


CHOICES = {
    "lr_schedule": click.Choice(["constant", "linear", "cosine"]),
    "train_on": click.Choice(["last", "all_assistant"]),
    "objective": click.Choice(["dpo", "bradley_terry"]),
    "loss": click.Choice(["importance_sampling", "ppo", "reinforce"]),
}
"""The choices of the configs' ``Literal`` fields (a test checks they match them)."""

FIELD_TYPES: dict[str, click.ParamType] = {
    "rank": RANK,
    "seed": click.INT,
    "epochs": POSITIVE_INT,
    "batch_size": POSITIVE_INT,
    "group_size": POSITIVE_INT,
    "steps": POSITIVE_INT,
    "refresh_every": POSITIVE_INT,
    "max_length": POSITIVE_INT,
    "learning_rate": POSITIVE_FLOAT,
    "beta": POSITIVE_FLOAT,
    "reward_timeout": POSITIVE_FLOAT,
    "temperature": NON_NEGATIVE_FLOAT,
    "kl_coef": NON_NEGATIVE_FLOAT,
    "warmup_steps": NON_NEGATIVE_INT,
    "save_every": NON_NEGATIVE_INT,
    "keep_last": NON_NEGATIVE_INT,
    "eval_every": NON_NEGATIVE_INT,
    "eval_split": FRACTION,
    "max_tokens": NEW_TOKENS,
    "log_dir": OUTPUT_FOLDER,
    "data": click.Path(path_type=Path),
    "eval_data": click.Path(path_type=Path),
    # RLHFConfig's own fields
    "sft_data": click.Path(path_type=Path),
    "preference_data": click.Path(path_type=Path),
    "prompts": click.Path(path_type=Path),
    "rl_steps": POSITIVE_INT,
    "sft_learning_rate": POSITIVE_FLOAT,
    "reward_learning_rate": POSITIVE_FLOAT,
    "rl_learning_rate": POSITIVE_FLOAT,
    **CHOICES,
}
"""Each config field's command-line type: values checked when parsed."""

FIELD_FLAGS: dict[str, tuple[str, ...]] = {
    "learning_rate": ("--lr",),
    "log_dir": ("--log-dir", "--log-path"),
    "init_state": ("--init-state", "--load-checkpoint-path"),
    "kl_coef": ("--kl-coef", "--kl-penalty-coef"),
    "loss": ("--loss", "--loss-fn"),
    "sft_learning_rate": ("--sft-lr",),
    "reward_learning_rate": ("--reward-lr",),
    "rl_learning_rate": ("--policy-lr",),
}
"""Flags other than ``--field-name``: the short ``--lr``, and the cookbook's names as
aliases (the first flag is the one error messages name)."""


class ConfigOption(click.Option):
    """An option made from a config field: errors name its first flag only, so an
    alias (``--log-path`` for ``--log-dir``) leaves the one-line messages as they were."""

    def get_error_hint(self, ctx: click.Context | None) -> str:
        return f"'{self.opts[0]}'"


def config_options(
    config: type,
    include: Sequence[str],
    *,
    types: Mapping[str, Any] | None = None,
    flags: Mapping[str, Sequence[str]] | None = None,
    help: Mapping[str, str] | None = None,
    required: Collection[str] = (),
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Click options for the dataclass ``config``'s fields ``include`` (in that order):
    the default (and ``show_default``) is the field's default, the help its attribute
    docstring, the type from ``FIELD_TYPES`` (a bool field is a flag); a field without
    a default, or named in ``required``, is a required option. The parameter is the
    field's name, so the command passes its options on as ``config(**fields)``.

    Example:
        >>> @click.command()
        ... @config_options(sft_config.Config, ["epochs", "learning_rate"])
        ... def sft(**fields): ...      # --epochs [default: 3], --lr [default: 0.0001]
    """
    by_name = {f.name: f for f in dataclasses.fields(config)}
    docs = field_docs(config)

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        for name in reversed(include):
            default = config_default(by_name[name])
            decls = [*(flags or {}).get(name, FIELD_FLAGS.get(name, (_flag(name),))), name]
            option: dict[str, Any] = {"cls": ConfigOption, "help": (help or {}).get(name)}
            if option["help"] is None:
                option["help"] = docs.get(name)
            if default is dataclasses.MISSING or name in required:
                option["required"] = True
            elif isinstance(default, bool):
                option.update(is_flag=True, default=default)
            else:
                option.update(default=default, show_default=default is not None)
            kind = (types or {}).get(name, FIELD_TYPES.get(name))
            if kind is not None and not option.get("is_flag"):
                option["type"] = kind
            command = click.option(*decls, **option)(command)
        return command

    return decorate


def config_default(f: dataclasses.Field[Any]) -> Any:
    """A dataclass field's default (``MISSING`` when it has none)."""
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


@functools.cache
def field_docs(config: type) -> dict[str, str]:
    """The attribute docstrings of a dataclass's fields (its bases' too), read from the
    source with ``ast``: a string right after ``name: type = ...``. ``rst`` backticks
    are dropped and lines joined."""
    docs: dict[str, str] = {}
    for cls in reversed(config.__mro__):
        module = sys.modules.get(cls.__module__)
        path = getattr(module, "__file__", None)
        if not dataclasses.is_dataclass(cls) or not path or not path.endswith(".py"):
            continue
        try:
            tree = ast.parse(Path(path).read_text(encoding="utf-8"))
        except (OSError, SyntaxError):
            continue
        body = next(
            (n.body for n in tree.body if isinstance(n, ast.ClassDef) and n.name == cls.__name__),
            [],
        )
        for stmt, after in itertools.pairwise(body):
            if (
                isinstance(stmt, ast.AnnAssign)
                and isinstance(stmt.target, ast.Name)
                and isinstance(after, ast.Expr)
                and isinstance(after.value, ast.Constant)
                and isinstance(after.value.value, str)
            ):
                text = " ".join(after.value.value.replace("``", "").split())
                docs[stmt.target.id] = re.sub(r"\s+", " ", text)
    return docs


def run_folder_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """``--overwrite`` and ``--keep-last K``, the options of every loop's log folder
    (from ``RunOptions``).

    Example:
        >>> @click.command()
        ... @run_folder_options
        ... def sft(overwrite: bool, keep_last: int) -> None: ...
    """
    from tinkerkit.train.run_options import RunOptions

    return config_options(
        RunOptions,
        ["overwrite", "keep_last"],
        help={
            "overwrite": "Start again in a --log-dir that holds a run (its log files are "
            "replaced).",
            "keep_last": "Keep only the newest K checkpoints besides final (0: keep all).",
        },
    )(command)
