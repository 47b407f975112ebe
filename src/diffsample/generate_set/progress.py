"""Progress of a whole generate-set job on stderr: samples done, rate, time left; then a summary line."""

from __future__ import annotations

import sys
import time
from typing import TextIO

__all__ = ["JobProgress"]


class JobProgress:
    """Counts samples as shards finish; ``already`` samples were done by an earlier run (not in the rate)."""

    def __init__(self, total: int, already: int, *, enabled: bool = True, stream: TextIO | None = None) -> None:
        self.total = total
        self.done = already
        self.already = already
        self.enabled = enabled
        self.stream = sys.stderr if stream is None else stream
        self.started = time.perf_counter()

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    @property
    def rate(self) -> float:
        """Samples per second computed by this run."""
        return (self.done - self.already) / max(self.elapsed, 1e-9)

    def shard_done(self, samples: int) -> None:
        self.done += samples
        if self.enabled:
            left = (self.total - self.done) / self.rate if self.rate > 0 else float("nan")
            self.stream.write(
                f"generate-set: {self.done}/{self.total} samples ({100 * self.done / self.total:.0f}%), "
                f"{self.rate:.0f} samples/s, {left:.0f} s left\n"
            )
            self.stream.flush()

    def note(self, text: str) -> None:
        if self.enabled:
            self.stream.write(f"generate-set: {text}\n")
            self.stream.flush()
