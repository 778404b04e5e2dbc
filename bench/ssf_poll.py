"""Revocation-to-deny latency of the guard: Shared Signals by poll (RFC 8936) vs the tokenward
feed (the peer), in the same run, against one in-process HTTP server on loopback.

For each mode a guard ``Verifier`` is started; then, ``--revocations`` times: a token of a fresh
session is verified (accepted), the clock starts, the server queues the revocation (a signed
CAEP ``session-revoked`` SET on the poll stream, or a ``sid`` event on the feed) and the bench
calls ``verify`` every millisecond until it raises ``RevokedToken``. Reported: p50/p95/max of
that delay per mode, and each mode's p50 as a ratio of the feed's.

Modes: ``feed`` — the tokenward long-poll feed (the server answers a held ``GET /revocations``
as soon as the event exists); ``ssf-held`` — RFC 8936 with ``returnImmediately: false`` (the
transmitter holds the poll up to 5 s and answers it when a SET is queued); ``ssf-1s`` and
``ssf-250ms`` — ``return_immediately=True`` with ``interval`` 1 s / 0.25 s (a transmitter that
never holds polls): the expected delay is about half the interval.

Run: ``.venv/bin/python bench/ssf_poll.py`` (``--revocations 10`` for a quick run). Prints
Markdown.
"""

from __future__ import annotations

import argparse
import secrets
import socket
import statistics
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson

from tokenward.errors import RevokedToken
from tokenward.guard import SSFPoll, Verifier
from tokenward.issuer import Issuer
from tokenward.jws import JWSSigner
from tokenward.keys import KeyRing
from tokenward.secevent import SESSION_REVOKED, SET_TYPE

ISS = "http://auth.bench"
AUD = "api"
RECEIVER = "https://api.bench/ssf"
HOLD = 5.0


class Server:
    """JWKS (access tokens and SETs), the feed at ``/revocations``, RFC 8936 at ``/poll``."""

    def __init__(self) -> None:
        self.tokens = KeyRing.generate("ES256")
        self.sets = KeyRing.generate("ES256")
        self.events: list[dict[str, Any]] = []
        self.queue: dict[str, str] = {}
        self.cond = threading.Condition()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def revoke(self, sid: str, via: str) -> None:
        now = time.time()
        with self.cond:
            if via == "feed":
                seq = len(self.events) + 1
                self.events.append(
                    {"seq": seq, "kind": "sid", "value": sid, "until": now + 3600, "at": now}
                )
            else:
                claims = {
                    "iss": self.base,
                    "jti": secrets.token_urlsafe(12),
                    "iat": int(now),
                    "aud": RECEIVER,
                    "sub_id": {"format": "complex", "session": {"format": "opaque", "id": sid}},
                    "events": {SESSION_REVOKED: {"event_timestamp": int(now)}},
                }
                self.queue[claims["jti"]] = JWSSigner(self.sets.active, typ=SET_TYPE).sign(claims)
            self.cond.notify_all()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        srv = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a: Any) -> None:
                pass

            def setup(self) -> None:
                super().setup()  # headers and body go out as two writes: no Nagle delay
                self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def _send(self, body: Any) -> None:
                data = orjson.dumps(body)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                try:
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True

            def do_GET(self) -> None:
                url = urlsplit(self.path)
                if url.path == "/jwks.json":
                    self._send(srv.tokens.public_jwks())
                elif url.path == "/set-jwks.json":
                    self._send(srv.sets.public_jwks())
                else:  # /revocations?after=&wait=
                    q = {k: v[0] for k, v in parse_qs(url.query).items()}
                    after, deadline = int(q["after"]), time.monotonic() + float(q.get("wait", 0))
                    with srv.cond:
                        while True:
                            new = [e for e in srv.events if e["seq"] > after]
                            left = deadline - time.monotonic()
                            if new or left <= 0:
                                break
                            srv.cond.wait(left)
                        cursor = len(srv.events)
                    self._send({"events": new, "cursor": cursor, "more": False})

            def do_POST(self) -> None:  # /poll
                req = orjson.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with srv.cond:
                    for jti in req.get("ack", []):
                        srv.queue.pop(jti, None)
                    if not req["returnImmediately"] and not srv.queue:
                        srv.cond.wait(HOLD)
                    sets = dict(list(srv.queue.items())[: req["maxEvents"]])
                self._send({"sets": sets, "moreAvailable": len(srv.queue) > len(sets)})

        return H


def guard(srv: Server, mode: str) -> Verifier:
    common: dict[str, Any] = dict(
        jwks_url=srv.base + "/jwks.json", issuer=ISS, audience=AUD, max_staleness=60.0
    )
    if mode == "feed":
        return Verifier(
            **common,
            revocations_url=srv.base + "/revocations",
            client_id="rs",
            client_secret="secret",
        )
    ssf = SSFPoll(
        srv.base + "/poll",
        issuer=srv.base,
        audience=RECEIVER,
        jwks_url=srv.base + "/set-jwks.json",
        token="bench-token",
        return_immediately=mode != "ssf-held",
        interval={"ssf-held": 1.0, "ssf-1s": 1.0, "ssf-250ms": 0.25}[mode],
    )
    return Verifier(**common, revocation=ssf, feed_wait=HOLD + 1)


def measure(srv: Server, mode: str, n: int) -> list[float]:
    issuer = Issuer(srv.tokens, issuer=ISS, audience=AUD)
    out: list[float] = []
    with guard(srv, mode) as v:
        for i in range(n):
            sid = f"{mode}-{i}"
            token = issuer.issue_access_token(sub="alice", client_id="web", sid=sid)
            v.verify(token)
            # revocations land at evenly spread points of the poll cycle (up to 1.25 intervals)
            time.sleep(0.05 + (i * 0.6180339887 % 1.0) * 1.25)
            started = time.monotonic()
            srv.revoke(sid, "feed" if mode == "feed" else "ssf")
            while True:
                try:
                    v.verify(token)
                except RevokedToken:
                    break
                time.sleep(0.001)
            out.append(time.monotonic() - started)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--revocations", type=int, default=30)
    args = ap.parse_args()
    srv = Server()
    rows: dict[str, list[float]] = {}
    for mode in ("feed", "ssf-held", "ssf-1s", "ssf-250ms"):
        rows[mode] = measure(srv, mode, args.revocations)
    base = statistics.median(rows["feed"])
    print(f"{args.revocations} revocations per mode, one run, loopback\n")
    print("| mode | p50 | p95 | max | p50 / feed p50 |")
    print("|---|---:|---:|---:|---:|")
    for mode, xs in rows.items():
        xs.sort()
        p95 = xs[min(len(xs) - 1, int(0.95 * len(xs)))]
        print(
            f"| {mode} | {statistics.median(xs) * 1000:.1f} ms | {p95 * 1000:.1f} ms "
            f"| {xs[-1] * 1000:.1f} ms | {statistics.median(xs) / base:.2f} |"
        )


if __name__ == "__main__":
    main()
