"""Read and check an ``adapter_config.json`` before its numbers reach a merge.

``r = 0`` divides by zero, ``r = "abc"`` fails deep inside ``int()``, and a NaN
``lora_alpha`` merges into a model of NaNs without any error. Each field the export
uses is checked here, and a bad one is an ``AdapterFormatError`` naming the file and
the field.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from tinkerkit.export.errors import AdapterFormatError

MAX_RANK = 65_536


def read_adapter_config(path: Path, *, label: str | None = None) -> dict[str, Any]:
    """The checked config at ``path``: ``r`` a positive int, ``lora_alpha`` a finite number > 0.

    Errors call the file ``label`` (default: its path).

    Example:
        >>> read_adapter_config(Path("weights/adapter_config.json"))["r"]
        8
    """
    shown = label or str(path)
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise AdapterFormatError(
            f"{shown}:{exc.lineno}: not valid JSON ({exc.msg}); it is not a LoRA adapter config."
        ) from None
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise AdapterFormatError(f"{shown}: not a readable JSON config ({reason}).") from None
    if not isinstance(config, dict):
        raise AdapterFormatError(f"{shown}: expected a JSON object, got {type(config).__name__}.")
    for key in ("r", "lora_alpha"):
        if key not in config:
            raise AdapterFormatError(f"{shown} lacks {key!r}; it is not a LoRA adapter config.")
    rank = config["r"]
    if not _is_int(rank) or not 1 <= rank <= MAX_RANK:
        raise _bad(shown, "r", rank, f"a whole number from 1 to {MAX_RANK}")
    alpha = config["lora_alpha"]
    if not _is_number(alpha) or not math.isfinite(alpha) or alpha <= 0:
        raise _bad(shown, "lora_alpha", alpha, "a finite number above 0")
    if not isinstance(config.get("use_rslora", False), bool):
        raise _bad(shown, "use_rslora", config["use_rslora"], "true or false")
    base = config.get("base_model_name_or_path")
    if base is not None and not isinstance(base, str):
        raise _bad(shown, "base_model_name_or_path", base, "a model name or folder (a string)")
    if config.get("rank_pattern") or config.get("alpha_pattern"):
        raise AdapterFormatError(
            f"{shown} has a rank_pattern/alpha_pattern; per-module ranks are not supported."
        )
    return config


def _bad(where: str, field: str, value: object, wanted: str) -> AdapterFormatError:
    shown = repr(value) if not isinstance(value, (dict, list)) else type(value).__name__
    return AdapterFormatError(f"{where}: {field} = {shown[:80]} is invalid; it must be {wanted}.")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
