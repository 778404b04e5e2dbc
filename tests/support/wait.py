"""Polling for a condition another thread or process will make true, and the two margins a
test may put on the wall clock. Neither is a speed claim (speed is measured in ``bench/``, as a
ratio against a peer in the same run); both are far above what a loaded machine needs, so that
only a hang or a missing behaviour fails, never a slow moment."""

from __future__ import annotations

import time
from collections.abc import Callable

#: Seconds of slack over a configured timeout (a store call, a shutdown's grace) that tell a
#: call bounded by that timeout from a hung one.
HANG = 10.0
#: Seconds a test waits for what another thread or process will make true (a revocation
#: reaching a mirror, a recovery) before it fails.
LIVENESS = 15.0


def wait_until(predicate: Callable[[], object], timeout: float = LIVENESS) -> bool:
    """Poll a condition that a background thread will make true (not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.005)
    return bool(predicate())
