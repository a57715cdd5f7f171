"""``--reward``: the reward function ``tinkerkit rl`` names on its command line.

``package.module:function`` (importable) or ``path/to/file.py:function``; imported only
when the command runs, so ``tinkerkit --help`` does not import tinker.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Any

from tinkerkit.errors import RewardLoadError as RewardLoadError
from tinkerkit.errors import TinkerkitError


class RLSettingError(TinkerkitError):
    """An option value the RL loop refuses (the message names the setting)."""


def load_reward(spec: str) -> Any:
    """The callable named by ``module:function`` or ``path/to/file.py:function``.

    Example:
        >>> load_reward("tinkerkit.recipes.math:math_reward")
        <function math_reward at ...>
    """
    where, sep, name = spec.rpartition(":")
    if not sep or not where or not name:
        raise RewardLoadError(
            f"--reward {spec!r} must look like module:function or path/to/file.py:function"
        )
    if where.endswith(".py") or "/" in where or "\\" in where:
        module = _module_from_file(Path(where))
    else:
        try:
            module = importlib.import_module(where)
        except ImportError as exc:
            raise RewardLoadError(
                f"--reward: cannot import module {where!r} ({exc}); give an importable "
                "module or a path/to/file.py"
            ) from None
    if not hasattr(module, name):
        raise RewardLoadError(f"--reward: {where} has no attribute {name!r}")
    reward = getattr(module, name)
    if not callable(reward):
        raise RewardLoadError(
            f"--reward: {where}:{name} is a {type(reward).__name__}, not a function; it must "
            "be reward(prompt, completion, **fields) -> float"
        )
    return reward


def _module_from_file(path: Path) -> Any:
    if not path.is_file():
        raise RewardLoadError(f"--reward: no such file {str(path)!r}")
    module_name = f"tinkerkit_reward_{path.stem}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise RewardLoadError(f"--reward: cannot load {str(path)!r} as Python")
    module = importlib.util.module_from_spec(spec)
    # Registered before running it, so dataclasses/pickling inside the file work.
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[module_name]
        raise RewardLoadError(
            f"--reward: importing {str(path)!r} failed: {type(exc).__name__}: {exc}"
        ) from None
    return module
