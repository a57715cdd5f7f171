"""What one download may take: bytes in all (every file together) and wall-clock time.

A server can send a body without ``Content-Length`` that never ends, or drip a byte a
minute (each read is within the HTTP timeout); without these caps a download could
fill the disk or hang for ever. ``Budget`` is shared by the threads of one download.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from tinkerkit.export.errors import DownloadError

GiB = 1 << 30
DEFAULT_MAX_BYTES = 32 * GiB  # a LoRA checkpoint of the service's largest models fits
DEFAULT_DEADLINE_S = 2 * 3600.0


class Budget:
    """A byte cap and a deadline for one download (all its files, all their retries).

    Example:
        >>> budget = Budget(max_bytes=10, deadline_s=60)
        >>> budget.take("https://x/a", 4); budget.used
        4
    """

    def __init__(
        self,
        max_bytes: int = DEFAULT_MAX_BYTES,
        deadline_s: float = DEFAULT_DEADLINE_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_bytes = max_bytes
        self.deadline_s = deadline_s
        self._clock = clock
        self._end = clock() + deadline_s
        self._lock = threading.Lock()
        self.used = 0

    def take(self, url: str, n: int) -> None:
        """Count ``n`` more bytes stored; ``DownloadError`` once over the cap."""
        with self._lock:
            self.used += n
            used = self.used
        if used > self.max_bytes:
            raise self.too_big(url, f"it sent more than the cap of {self.max_bytes} bytes")

    def give_back(self, n: int) -> None:
        """Uncount ``n`` bytes (a partial file that was thrown away to restart)."""
        with self._lock:
            self.used -= n

    def check_size(self, url: str, total: int, have: int) -> None:
        """Fail at once if a stated size cannot fit in what is left of the cap."""
        with self._lock:
            over = self.used - have + total > self.max_bytes
        if over:
            raise self.too_big(url, f"the server says it is {total} bytes")

    def too_big(self, url: str, what: str) -> DownloadError:
        return DownloadError(
            url,
            f"{what}, over the download cap of {self.max_bytes} bytes; nothing was kept",
            "If the checkpoint really is that big, raise the cap (--max-bytes, or "
            "download(max_bytes=...)).",
        )

    def remaining(self) -> float:
        return self._end - self._clock()

    def check_time(self, url: str, wait: float = 0.0) -> None:
        """``DownloadError`` if the deadline has passed (or would, after waiting ``wait`` s)."""
        if self.remaining() < wait or self.remaining() <= 0:
            raise DownloadError(
                url,
                f"it did not finish within the {self.deadline_s:g} s deadline; nothing was kept",
                "Check the network or the server, or allow longer (--deadline, or "
                "download(deadline_s=...)).",
            )
