"""Cost of the request-header timeout: uvicorn's own protocol vs ``HeaderTimeoutProtocol``.

Two uvicorn server processes serve a tiny ASGI app, one with uvicorn's protocol class
(httptools when installed), one with tokenward's subclass (the header-timeout bookkeeping on
every ``data_received``). This process drives ``--requests`` keep-alive ``GET /`` requests over
a raw socket against each, alternating, for ``--rounds`` rounds; printed: requests/s per
server per round and the median of the per-round ratios (ours / uvicorn's).

Run: ``.venv/bin/python bench/header_timeout.py`` (about 20 s).
"""

from __future__ import annotations

import argparse
import socket
import statistics
import subprocess
import sys
import time
from typing import Any

import uvicorn

from tokenward.server.http import _Base, protocol_class


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]}
    )
    await send({"type": "http.response.body", "body": b"ok"})


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve(kind: str) -> tuple[subprocess.Popen[bytes], int]:
    port = _free_port()
    proc = subprocess.Popen([sys.executable, __file__, "--serve", kind, "--port", str(port)])
    while True:
        try:
            socket.create_connection(("127.0.0.1", port)).close()
            return proc, port
        except OSError:
            time.sleep(0.05)


def _drive(port: int, n: int) -> float:
    request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    with socket.create_connection(("127.0.0.1", port)) as sock:
        start = time.perf_counter()
        for _ in range(n):
            sock.sendall(request)
            got = b""
            while not got.endswith(b"ok"):
                got += sock.recv(4096)
        return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--serve", choices=["plain", "ours"])
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    if args.serve:
        http = _Base if args.serve == "plain" else protocol_class(10.0)
        uvicorn.run(app, host="127.0.0.1", port=args.port, http=http, log_level="error")
        return
    (p1, plain), (p2, ours) = _serve("plain"), _serve("ours")
    try:
        _run(plain, ours, args.requests, args.rounds)
    finally:
        for p in (p1, p2):
            p.terminate()
            p.wait()


def _run(plain: int, ours: int, requests: int, rounds: int) -> None:
    _drive(plain, 500)
    _drive(ours, 500)
    ratios = []
    print(f"| round | uvicorn {_Base.__name__} req/s | HeaderTimeoutProtocol req/s | ratio |")
    print("|---|---|---|---|")
    for i in range(rounds):
        a = _drive(plain, requests)
        b = _drive(ours, requests)
        ratios.append(b / a)
        print(f"| {i + 1} | {a:.0f} | {b:.0f} | {b / a:.3f} |")
    print(f"\nmedian ratio (ours / uvicorn): {statistics.median(ratios):.3f}")


if __name__ == "__main__":
    main()
