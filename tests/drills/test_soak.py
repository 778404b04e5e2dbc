"""The CI-sized soak: ``bench/soak.py --seconds 30`` against ``tokenward serve --workers 2``
(the 10-minute run is ``make soak``): 0 5xx (a few fail-closed 503s tolerated on a busy
machine, see below), no transport errors, worker RSS growth ≤ 5 %
after warm-up, store tables bounded by retention (the sweeper runs every 2 s in the soak)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SOAK = Path(__file__).resolve().parents[2] / "bench" / "soak.py"

# serial: 30 s of load whose 503 count and latency parallel files would distort
pytestmark = [pytest.mark.slow, pytest.mark.serial]


def test_soak_30_seconds() -> None:
    out = subprocess.run(
        [sys.executable, str(SOAK), "--seconds", "30", "--json"],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert out.stdout.strip(), out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"\nsoak 30 s: {result}")
    # 0 5xx but for a few fail-closed 503s: on a 2-core machine shared with other suites the
    # two workers' SQLite writes can exceed the store's 2 s busy timeout (the 10-minute
    # `make soak` on a quiet machine has none); anything else >= 500 is a failure
    unavailable = int(result["status"].get("503", 0))
    assert result["5xx"] - unavailable == 0, result["status"]
    assert unavailable <= result["requests"] // 1000, result["status"]
    assert result["transport_errors"] == 0
    assert result["requests"] > 1000
    assert result["rss_growth_pct"] <= 5.0
    # retention worked: many more sessions were created than the store holds at the end
    assert result["logins"] > result["store_end"]["families"]
    for t in result["store_checked"]:  # bounded: not growing with the run's length
        assert result["store_end"][t] <= 2 * max(result["store_warm"][t], 1), (t, result)
    assert unavailable or (result["ok"] is True and out.returncode == 0), result
