"""``Settings``, the pydantic base of every config, and ``RunOptions``, the settings every
training loop's config shares.

A config is made only from valid values: its fields carry their checks
(``Field(ge=1)``), their help (attribute docstrings) and the cookbook's names
(``AliasChoices``), and anything else is one ``ConfigError`` line naming the field. The
``tinkerkit`` commands build their options (defaults, help, checks) from these models;
this module imports pydantic, nothing heavy, so ``tinkerkit --help`` stays fast.

``Config(log_path="runs/a")`` equals ``Config(log_dir="runs/a")``: an alias is no field
(not in ``run.json``, not in the run's identity), and an alias and its field given with
different values is refused. Read the field (``config.log_dir``), not the alias.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar

from pydantic import (
    AliasChoices,
    AliasPath,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

if TYPE_CHECKING:
    from tinkerkit.errors import ConfigError


def _listed(value: Any) -> Any:
    """Records given as any iterable (a generator, a Hugging Face ``Dataset``) as a list."""
    if isinstance(value, str | bytes | Path | Mapping | Sequence) or not isinstance(
        value, Iterable
    ):
        return value
    return list(value)


Records = Annotated[str | Path | Sequence[Any], BeforeValidator(_listed)]
"""A loop's data: a file (JSONL/JSON/CSV) or the records themselves, from any iterable."""


class Settings(BaseModel):
    """A config: typed fields checked when it is made. A field's other names are
    ``validation_alias=AliasChoices(name, *aliases)`` (an ``AliasPath`` reads a key of a
    mapping alias). Copy a config with changes: ``config.model_copy(update={"epochs": 1})``
    (not checked again)."""

    model_config = ConfigDict(
        strict=True,  # 3.0 is no epoch count, True no rank, "1e-4" no learning rate
        allow_inf_nan=False,
        extra="forbid",
        use_attribute_docstrings=True,
        defer_build=True,
    )

    if not TYPE_CHECKING:  # type checkers keep the typed __init__ pydantic declares

        def __init__(self, **values: Any) -> None:
            try:
                super().__init__(**values)
            except ValidationError as exc:
                raise _config_error(type(self), exc) from None

    @model_validator(mode="before")
    @classmethod
    def _one_value_per_field(cls, values: Any) -> Any:
        """Each field from its name or an alias; given both, they must agree. A mapping
        alias (``loss_fn_config``) may hold only the keys its fields read."""
        if not isinstance(values, Mapping):
            return values
        out = dict(values)
        mapping_keys: dict[str, set[str]] = {}  # loss_fn_config -> the keys its fields read
        for name, info in cls.model_fields.items():
            given: dict[str, Any] = {}
            for choice in _choices(info):
                if isinstance(choice, AliasPath):
                    head, key = map(str, choice.path)
                    mapping_keys.setdefault(head, set()).add(key)
                    given[f"{head}[{key!r}]"] = choice.search_dict_for_path(dict(values))
                else:
                    given[choice] = out.pop(choice, PydanticUndefined)
            given = {label: v for label, v in given.items() if v is not PydanticUndefined}
            if given:
                (first, value), *others = given.items()
                for other, other_value in others:
                    if not _same(value, other_value):
                        kind = cls.__name__
                        raise ValueError(
                            f"{kind}.{other} ({other_value!r}) and {kind}.{first} ({value!r}) "
                            f"disagree: {other} is another name for {name}, pass one of them"
                        )
                out[name] = value
        for head, known in mapping_keys.items():
            mapping = out.pop(head, None) or {}
            if not isinstance(mapping, Mapping) or set(mapping) - known:
                raise ValueError(
                    f"{cls.__name__}.{head} must be a mapping of "
                    f"{' and/or '.join(sorted(known))}, got {mapping!r}"
                )
        return out


MAX_STEPS = 1_000_000
"""The most epochs or steps a loop runs: far beyond any fine-tuning run, and a
``--steps 1e23`` typo is refused instead of running forever."""


class RunOptions(Settings):
    """Settings every training loop shares."""

    identity_fields: ClassVar[tuple[str, ...]] = ()
    """The loop's fields that define a run besides model, rank and seed."""

    model: str = "tinkerkit/tiny"
    """Base model name."""
    rank: int = Field(default=32, ge=1)
    """LoRA rank."""
    seed: int = Field(default=0, ge=0)
    """Random seed (the adapter's initialisation, shuffling, sampling)."""
    log_dir: str | Path = Field(
        default="runs/run", validation_alias=AliasChoices("log_dir", "log_path")
    )
    """The run's folder: metrics, checkpoints, run.json."""
    resume: bool = False
    """Continue the run in ``log_dir`` from its last checkpoint."""
    overwrite: bool = False
    """Start again in a ``log_dir`` that holds a run: its files are replaced once the new
    run's inputs are validated (its checkpoints in the store are left alone)."""
    save_every: int = Field(default=0, ge=0)
    """Checkpoint every K steps (0: only at the end)."""
    keep_last: int = Field(default=0, ge=0)
    """Keep only the newest K checkpoints besides ``final`` (0: keep all); older ones are
    deleted from the store once a newer one is committed."""
    ttl_seconds: int | None = Field(default=None, gt=0)
    export_final: str | Path | None = Field(
        default=None, validation_alias=AliasChoices("export_final", "export")
    )
    """A new or empty folder: once ``final`` is saved, the loop saves its weights
    externally (``save_weights_external``, recorded in ``checkpoints.jsonl`` as
    ``external_path``) and writes them there as a PEFT adapter."""
    progress: bool = True
    callbacks: Sequence[Callable[..., Any]] = ()
    wandb_project: str | None = None

    def run_identity(self, **known: Any) -> dict[str, Any]:
        """What defines the run, checked on resume: model, rank, seed, the loop's
        ``identity_fields``, and ``known`` values (fingerprints of its data).

        Example:
            >>> config.run_identity(data="3f2a…")["epochs"]
            3
        """
        names = ("model", "rank", "seed", *self.identity_fields)
        return {**{name: getattr(self, name) for name in names}, **known}


def log_dir_field(default: str) -> Any:
    """A loop's ``log_dir`` field: ``RunOptions``' with another default."""
    return Field(
        default=default,
        validation_alias=RunOptions.model_fields["log_dir"].validation_alias,
        description=RunOptions.model_fields["log_dir"].description,
    )


def _config_error(config: type, exc: ValidationError) -> ConfigError:
    """Pydantic's first error as one line: the field, what it must be, the value given.

    Example:
        >>> _config_error(Config, exc)
        ConfigError('Config.epochs must be greater than or equal to 1, got 0')
    """
    from tinkerkit.errors import ConfigError  # here: tinkerkit.errors imports tinker

    errors = exc.errors(include_url=False)
    error = errors[0]
    if error["type"] == "value_error":  # a validator's own message, naming its fields
        return ConfigError(str(error["ctx"]["error"]))
    fields: dict[str, Any] = getattr(config, "model_fields", {})
    name = str(error["loc"][0]) if error["loc"] else ""
    where = f"{config.__name__}.{name}" + "".join(
        f"[{part}]" for part in error["loc"][1:] if isinstance(part, int)
    )
    given = _short(repr(error["input"]))
    if error["type"] == "missing":
        return ConfigError(f"{where} is required: pass {name}=...")
    if error["type"] == "extra_forbidden":
        known = [alias for field, info in fields.items() for alias in (field, *names_of(info))]
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"; did you mean {close[0]}?" if close else ""
        return ConfigError(f"{config.__name__} has no setting {name!r}{hint}")
    if sum(1 for e in errors if e["loc"][:1] == error["loc"][:1]) > 1 and name in fields:
        # every member of a union refused it: say what the field takes
        wanted = re.sub(r"\b(?:[a-z_]+\.)+", "", str(fields[name].annotation))
        return ConfigError(f"{where} must be {wanted}, got {given}")
    message = error["msg"]
    if message.startswith("Input should be "):
        return ConfigError(
            f"{where} must be {message.removeprefix('Input should be ')}, got {given}"
        )
    return ConfigError(f"{where}: {message}, got {given}")


def names_of(info: FieldInfo) -> list[str]:
    """The names a field is given by besides its own (``log_path`` for ``log_dir``)."""
    return [choice for choice in _choices(info)[1:] if isinstance(choice, str)]


def _choices(info: FieldInfo) -> list[str | AliasPath]:
    aliases = info.validation_alias
    return list(aliases.choices) if isinstance(aliases, AliasChoices) else []


def _short(text: str, limit: int = 100) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, Path) or isinstance(b, Path):
        return isinstance(a, str | Path) and isinstance(b, str | Path) and Path(a) == Path(b)
    return bool(a == b)
