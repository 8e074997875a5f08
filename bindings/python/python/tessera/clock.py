"""A clock for tests: time moves only when told to."""

from __future__ import annotations

import threading

__all__ = ["ManualClock"]


class ManualClock:
    """A callable returning Unix seconds, for ``Engine(clock=...)``.

    Starts at ``start`` (default 2027-01-15) and moves only through :meth:`advance` or
    :meth:`set`. Thread-safe.
    """

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self._now = float(start)
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> float:
        """Move forward by ``seconds`` (>= 0); returns the new time."""
        if seconds < 0:
            raise ValueError("a clock only moves forward")
        with self._lock:
            self._now += seconds
            return self._now

    def set(self, now: float) -> None:
        """Jump to ``now`` (not earlier than the current time)."""
        with self._lock:
            if now < self._now:
                raise ValueError("a clock only moves forward")
            self._now = float(now)

    def __repr__(self) -> str:
        return f"ManualClock({self():.3f})"
