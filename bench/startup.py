"""Start-up time of ``tokenward serve``: process start to the first 200 from ``/healthz``.

Two cases on SQLite: the first start in a fresh directory (creates the schema, the keys, the
key-encryption-key file and the admin) and a restart on that existing store (the target is
≤ 2 s). The peer, in the same run, is a minimal ASGI app (one ``200`` for every request) under
the same uvicorn, started the same way: what any Python ASGI server costs before our code runs.
Rounds are interleaved (peer, fresh, restart, ...); the median and the range are reported with
the load average, because a wall-clock figure on a busy machine means little on its own.

Run: ``.venv/bin/python bench/startup.py [--rounds 5]``. Prints Markdown.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from support.serve import clean_env, free_port, launch  # noqa: E402

PEER = """
import sys, uvicorn
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
"""


def _wait(proc: subprocess.Popen[bytes], base: str, start: float) -> float:
    while True:
        if proc.poll() is not None:
            raise RuntimeError("the peer exited")
        try:
            if httpx.get(f"{base}/healthz", timeout=0.5).status_code == 200:
                return time.monotonic() - start
        except httpx.HTTPError:
            pass
        if time.monotonic() - start > 60:
            raise RuntimeError("no answer within 60 s")
        time.sleep(0.01)


def peer() -> float:
    port = free_port()
    start = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-c", PEER, str(port)],
        env=clean_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        return _wait(proc, f"http://127.0.0.1:{port}", start)
    finally:
        proc.terminate()
        proc.wait(10)


def serve_once(cwd: Path) -> float:
    start = time.monotonic()
    served = launch({"TOKENWARD_ADMIN_PASSWORD": "bench-startup-password"}, cwd=cwd)
    try:
        served.wait_ready(60)
        return time.monotonic() - start
    finally:
        served.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    rows: dict[str, list[float]] = {"peer": [], "fresh": [], "restart": []}
    loads: list[float] = []
    for _ in range(args.rounds):
        with tempfile.TemporaryDirectory(prefix="tw-startup-") as tmp:
            rows["peer"].append(peer())
            rows["fresh"].append(serve_once(Path(tmp)))
            rows["restart"].append(serve_once(Path(tmp)))
        loads.append(os.getloadavg()[0])
    base = statistics.median(rows["peer"])
    print(f"{args.rounds} rounds on {os.cpu_count()} CPUs, load average "
          f"{min(loads):.1f}–{max(loads):.1f}\n")  # fmt: skip
    print("| start | median s | min–max s | vs peer |")
    print("|---|---:|---:|---:|")
    names = {"peer": "minimal ASGI app (peer)", "fresh": "tokenward serve, fresh directory",
             "restart": "tokenward serve, existing store"}  # fmt: skip
    for key, values in rows.items():
        med = statistics.median(values)
        print(f"| {names[key]} | {med:.2f} | {min(values):.2f}–{max(values):.2f} "
              f"| {med / base:.2f}× |")  # fmt: skip


if __name__ == "__main__":
    main()
