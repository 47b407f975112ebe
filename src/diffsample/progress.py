"""The one-line progress bar the commands draw on stderr (``[#####.....] <text> <seconds>s``)."""

from __future__ import annotations

import sys
import time

__all__ = ["ProgressBar"]


class ProgressBar:
    """Redraws one stderr line: a bar of ``width`` cells filled ``done / total``, a caller's text, the seconds since
    creation. Disabled, it draws nothing (callers keep their counters either way)."""

    def __init__(self, enabled: bool, width: int = 30) -> None:
        self.enabled, self.width, self.t0 = enabled, width, time.perf_counter()

    def draw(self, done: float, total: float, text: str) -> None:
        if not self.enabled:
            return
        filled = int(self.width * done / total)
        print(
            f"\r[{'#' * filled}{'.' * (self.width - filled)}] {text} {time.perf_counter() - self.t0:.1f}s",
            end="",
            file=sys.stderr,
            flush=True,
        )

    def close(self) -> None:
        """End the line (when enabled)."""
        if self.enabled:
            print(file=sys.stderr)
