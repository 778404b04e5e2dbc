"""A CI-sized run of the coverage-guided JWS fuzz target (``fuzz/jws_target.py``; the long run
is ``make fuzz``): 5000 inputs seeded from ``tests/vectors``, nothing but our error tree."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from support.env import require_module

TARGET = Path(__file__).resolve().parents[2] / "fuzz" / "jws_target.py"
RUNS = 5000


def test_atheris_ci_run() -> None:
    require_module("atheris")
    out = subprocess.run(
        [sys.executable, str(TARGET), f"-atheris_runs={RUNS}"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    seeds = re.search(r"fuzz-seeds (\d+)", out.stderr)
    assert seeds is not None and int(seeds.group(1)) > 400, "seeded from the vectors"
    m = re.search(r"fuzz-summary inputs=(\d+) accepted=(\d+) rejected=(\d+) other=0", out.stderr)
    assert m is not None, out.stderr[-2000:]
    assert int(m.group(1)) == RUNS
    assert int(m.group(3)) > 0
