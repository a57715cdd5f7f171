"""Progress bars that suit where the output goes.

- a notebook: a widget bar (``tqdm.notebook``) when ipywidgets is installed
  (``tinkerkit[notebook]``), else tqdm's text bar, which the notebook redraws in place;
- a terminal: tqdm's text bar on stderr;
- a file or a pipe (CI logs, ``tinkerkit sft ... 2> log``, ``nohup``): plain lines, one
  every ``interval`` seconds and one at the end, instead of tqdm's ``\\r``-joined updates
  that a file keeps as one ever-growing line.

``progress_bar`` returns an object with tqdm's ``update``, ``set_postfix`` and ``close``.
"""

from __future__ import annotations

import sys
import time
from typing import Any, Protocol, TextIO


class ProgressBar(Protocol):
    total: Any  # settable: a download learns its size as it goes

    def update(self, n: int = 1) -> Any: ...

    def set_postfix(self, **values: Any) -> Any: ...

    def close(self) -> Any: ...


def in_notebook() -> bool:
    """True inside a Jupyter kernel (a notebook cell's output is rendered, not a stream)."""
    shell_module = sys.modules.get("IPython")
    if shell_module is None:
        return False
    shell = shell_module.get_ipython()
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


def _has_widgets() -> bool:
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        return False
    return True


def progress_bar(
    total: int | None,
    *,
    desc: str,
    unit: str = "it",
    initial: int = 0,
    file: TextIO | None = None,
    interval: float = 10.0,
    **tqdm_options: Any,
) -> ProgressBar:
    """A bar for ``total`` units (None: unknown) that suits ``file`` (default stderr).

    ``interval``: seconds between lines when ``file`` is not a terminal.

    Example:
        >>> bar = progress_bar(100, desc="training", unit="step")
        >>> bar.update(1); bar.set_postfix(loss="1.2345"); bar.close()
    """
    stream = file if file is not None else sys.stderr
    if in_notebook():
        if _has_widgets():
            from tqdm.notebook import tqdm as notebook_tqdm

            return notebook_tqdm(total=total, desc=desc, unit=unit, initial=initial, **tqdm_options)
    elif not _isatty(stream):
        return LineProgress(
            total, desc=desc, unit=unit, initial=initial, file=stream, interval=interval
        )
    from tqdm.std import tqdm

    return tqdm(total=total, desc=desc, unit=unit, initial=initial, file=stream, **tqdm_options)


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


class LineProgress:
    """Progress as whole lines: ``training: 40/100 step (40%) 3.1 step/s loss=1.2345``.

    The first update prints at once, later ones at most every ``interval`` seconds, and
    ``close`` prints the last count if it was not printed yet.

    Example:
        >>> bar = LineProgress(3, desc="training", unit="step", interval=0)
        >>> bar.update(1)
        training: 1/3 step (33%) ...
    """

    def __init__(
        self,
        total: int | None,
        *,
        desc: str,
        unit: str = "it",
        initial: int = 0,
        file: TextIO | None = None,
        interval: float = 10.0,
    ) -> None:
        self.total = total
        self.desc = desc
        self.unit = unit
        self.n = initial
        self.file = file if file is not None else sys.stderr
        self.interval = interval
        self._initial = initial
        self._started = time.monotonic()
        self._printed_at: float | None = None
        self._printed_n: int | None = None
        self._postfix = ""
        self._closed = False

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if self._printed_at is None or now - self._printed_at >= self.interval:
            self._print(now)

    def set_postfix(self, **values: Any) -> None:
        self._postfix = " ".join(f"{key}={value}" for key, value in values.items())

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._printed_n != self.n and self.n != self._initial:
            self._print(time.monotonic())

    def _print(self, now: float) -> None:
        count = f"{self.n}/{self.total}" if self.total else f"{self.n}"
        parts = [f"{self.desc}: {count} {self.unit}"]
        if self.total:
            parts.append(f"({100 * self.n / self.total:.0f}%)")
        elapsed = now - self._started
        done = self.n - self._initial
        if elapsed > 0 and done > 0:
            parts.append(f"{done / elapsed:.1f} {self.unit}/s")
        if self._postfix:
            parts.append(self._postfix)
        print(" ".join(parts), file=self.file, flush=True)
        self._printed_at = now
        self._printed_n = self.n
