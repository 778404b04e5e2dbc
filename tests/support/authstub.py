"""A tiny authorization-server stand-in on 127.0.0.1: JWKS and the revocation feed (long-poll
JSON and SSE), for the guard tests that need to control every answer."""

from __future__ import annotations

import base64
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson

from tokenward.store.base import RevocationEvent, RevocationKind

ISS = "http://auth.test"
AUD = "api"
CLIENT = ("rs-client", "rs-secret")


class AuthStub:
    """JWKS at ``/jwks.json``; feed at ``/revocations`` (long-poll JSON and SSE)."""

    def __init__(self) -> None:
        self.jwks: dict[str, Any] = {"keys": []}
        self.jwks_headers: dict[str, str] = {"Cache-Control": "max-age=300"}
        self.jwks_status = 200
        self.jwks_hits = 0
        self.jwks_etag: str | None = None
        self.feed_status = 200
        self.feed_cursor_override: int | None = None
        self.page_limit = 1000
        self.feed_requests: list[dict[str, str]] = []
        self.events: list[RevocationEvent] = []
        self.cond = threading.Condition()
        self.closing = False
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def add_event(self, kind: str, value: str, *, at: float, until: float) -> RevocationEvent:
        with self.cond:
            e = RevocationEvent(len(self.events) + 1, RevocationKind(kind), value, until, at)
            self.events.append(e)
            self.cond.notify_all()
        return e

    def close(self) -> None:
        with self.cond:
            self.closing = True
            self.cond.notify_all()
        self.server.shutdown()
        self.server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        stub = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a: Any) -> None:
                pass

            def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                try:
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True

            def do_GET(self) -> None:
                url = urlsplit(self.path)
                q = {k: v[0] for k, v in parse_qs(url.query).items()}
                if url.path == "/jwks.json":
                    stub.jwks_hits += 1
                    if stub.jwks_etag and self.headers.get("If-None-Match") == stub.jwks_etag:
                        self._send(304, b"", dict(stub.jwks_headers, ETag=stub.jwks_etag))
                        return
                    headers = {"Content-Type": "application/json", **stub.jwks_headers}
                    if stub.jwks_etag:
                        headers["ETag"] = stub.jwks_etag
                    self._send(stub.jwks_status, orjson.dumps(stub.jwks), headers)
                elif url.path == "/revocations":
                    self._feed(q)
                else:
                    self._send(404, b"{}", {})

            def _feed(self, q: dict[str, str]) -> None:
                stub.feed_requests.append(q)
                want = "Basic " + base64.b64encode(f"{CLIENT[0]}:{CLIENT[1]}".encode()).decode()
                if self.headers.get("Authorization") != want:
                    self._send(401, b'{"error":"invalid_client"}', {})
                    return
                if stub.feed_status != 200:
                    self._send(stub.feed_status, b"{}", {})
                    return
                after = int(q.get("after", "0"))
                if "text/event-stream" in (self.headers.get("Accept") or ""):
                    self._sse(after)
                    return
                wait = float(q.get("wait", "0"))
                deadline = time.monotonic() + wait
                with stub.cond:
                    while True:
                        new = [e for e in stub.events if e.seq > after]
                        left = deadline - time.monotonic()
                        if new or left <= 0 or stub.closing:
                            break
                        stub.cond.wait(left)
                    cursor = len(stub.events)
                if stub.feed_cursor_override is not None:
                    cursor = stub.feed_cursor_override
                page, more = new[: stub.page_limit], len(new) > stub.page_limit
                if more:
                    cursor = page[-1].seq
                body = {"events": [e.to_dict() for e in page], "cursor": cursor, "more": more}
                self._send(200, orjson.dumps(body), {"Content-Type": "application/json"})

            def _sse(self, after: int) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Connection", "close")
                self.end_headers()
                sent = after
                try:
                    self.wfile.write(f"event: ready\ndata: {after}\n\n".encode())
                    while not stub.closing:
                        with stub.cond:
                            new = [e for e in stub.events if e.seq > sent]
                            if not new:
                                stub.cond.wait(0.2)
                                new = [e for e in stub.events if e.seq > sent]
                        if not new:
                            self.wfile.write(b": ping\n\n")
                        for e in new:
                            data = orjson.dumps(e.to_dict()).decode()
                            frame = f"id: {e.seq}\nevent: revocation\ndata: {data}\n\n"
                            self.wfile.write(frame.encode())
                            sent = e.seq
                        self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    pass
                self.close_connection = True

        return H
