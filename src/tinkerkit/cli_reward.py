"""``--reward``: the reward function ``tinkerkit rl`` names on its command line.

``package.module:function`` (importable) or ``path/to/file.py:function``; imported only
when the command runs, so ``tinkerkit --help`` does not import tinker.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tinkerkit.errors import RewardLoadError as RewardLoadError
from tinkerkit.errors import TinkerkitError

REWARD_IMPORT_TIMEOUT_S = 60.0
"""How long importing a reward file may take, seconds (a model load is slow; a hang
is not)."""


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
    loader = spec.loader
    failure = _run_bounded(lambda: loader.exec_module(module), REWARD_IMPORT_TIMEOUT_S)
    if failure is not None:
        sys.modules.pop(module_name, None)
        raise RewardLoadError(f"--reward: the reward file {str(path)!r} {failure}")
    return module


def _run_bounded(run: Callable[[], object], timeout: float) -> str | None:
    """Run ``run`` (a reward file's import) on a daemon thread for at most ``timeout``
    seconds: None if it finished, else what went wrong, said of the file. A
    ``sys.exit(4)`` there exits the thread, not the command."""
    outcome: list[BaseException] = []

    def target() -> None:
        try:
            run()
        except BaseException as exc:  # SystemExit, KeyboardInterrupt raised by the file
            outcome.append(exc)

    worker = threading.Thread(target=target, name="tinkerkit-reward-import", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():  # left behind: a daemon thread does not hold up the exit
        return (
            f"was still being imported after {timeout:g} s; move slow work out of "
            "import time (into the reward function, or a cached helper)"
        )
    if not outcome:
        return None
    exc = outcome[0]
    if isinstance(exc, SystemExit):
        return f"exited with {exc.code} while being imported; a reward file must not exit"
    return f"failed while being imported: {type(exc).__name__}: {exc}"
