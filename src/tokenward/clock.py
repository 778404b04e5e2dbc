"""Injected clocks: library code never calls ``time.time()`` directly."""

from __future__ import annotations

import time
from typing import Protocol

__all__ = ["Clock", "FrozenClock", "SystemClock", "system_clock"]


class Clock(Protocol):
    """Anything with ``now() -> float`` (seconds since the epoch, UTC)."""

    def now(self) -> float: ...


class SystemClock:
    """Wall-clock time."""

    __slots__ = ()

    def now(self) -> float:
        return time.time()


class FrozenClock:
    """A clock that moves only when told to; for tests (never ``sleep``)."""

    __slots__ = ("_now",)

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self._now = float(now)

    def now(self) -> float:
        return self._now

    def set(self, now: float) -> None:
        self._now = float(now)

    def advance(self, seconds: float) -> None:
        self._now += seconds


system_clock = SystemClock()
