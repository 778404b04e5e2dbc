"""A steady mix of logins, refreshes and revocations against a live server, from threads, with
the bookkeeping the drills check afterwards: which revocations were acknowledged (200), which
refresh token each client holds, and which request was in flight when the server went away."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx

from support.live import PASSWORD, Serve

__all__ = ["Load", "Session"]


@dataclass
class Session:
    """One client's session: the refresh token it holds and every one it ever held."""

    user: str
    client_id: str
    rt: str
    at: str
    sid: str
    history: list[str] = field(default_factory=list)
    in_flight: bool = False  # the last refresh got no answer (the server died under it)
    dead: bool = False  # revoked on purpose

    def __post_init__(self) -> None:
        self.history.append(self.rt)


@dataclass
class Ack:
    kind: str  # "refresh" (the session) or "access" (one jti)
    token: str
    at: str  # an access token of the session / the revoked access token itself


class Load:
    """``refreshers`` threads rotate their sessions; one thread logs in and revokes."""

    def __init__(self, serve: Serve, *, refreshers: int = 4, sessions_each: int = 3) -> None:
        self.serve = serve
        self.refreshers = refreshers
        self.sessions_each = sessions_each
        self.sessions: list[Session] = []
        self.acks: list[Ack] = []
        self.statuses: Counter[int] = Counter()
        self.transport_errors = 0
        self.latencies: list[float] = []
        # unexpected answers (checked by the drills): anything but 200 and the fail-closed 503
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    # -- one request ------------------------------------------------------------------------
    def post(self, http: httpx.Client, path: str, **kw: Any) -> httpx.Response:
        t0 = time.perf_counter()
        r = http.post(path, **kw)
        with self._lock:
            self.latencies.append(time.perf_counter() - t0)
            self.statuses[r.status_code] += 1
        return r

    def login(self, http: httpx.Client, user: str, client_id: str) -> Session:
        r = self.post(http, "/login", json={"username": user, "password": PASSWORD,
                                            "client_id": client_id, "scope": "read"})  # fmt: skip
        assert r.status_code == 200, r.text
        b = r.json()
        return Session(user, client_id, b["refresh_token"], b["access_token"], b["session_id"])

    def refresh(self, http: httpx.Client, s: Session) -> httpx.Response:
        r = self.post(http, "/token", data={"grant_type": "refresh_token", "client_id": s.client_id,
                                            "refresh_token": s.rt})  # fmt: skip
        if r.status_code == 200:
            b = r.json()
            s.rt, s.at = b["refresh_token"], b["access_token"]
            if s.history[-1] != s.rt:
                s.history.append(s.rt)
        return r

    # -- the mix ------------------------------------------------------------------------------
    def start(self) -> Load:
        with httpx.Client(base_url=self.serve.base, timeout=10) as http:
            for i in range(self.refreshers * self.sessions_each):
                client = "web" if i % 2 else "mobile"
                self.sessions.append(self.login(http, f"u{i % 10}", client))
        for k in range(self.refreshers):
            mine = self.sessions[k * self.sessions_each : (k + 1) * self.sessions_each]
            self._threads.append(threading.Thread(target=self._refresher, args=(mine,)))
        self._threads.append(threading.Thread(target=self._revoker, args=(random.Random(7),)))
        for t in self._threads:
            t.start()
        return self

    def _refresher(self, mine: list[Session]) -> None:
        with httpx.Client(base_url=self.serve.base, timeout=10) as http:
            while not self._stop.is_set():
                for s in mine:
                    s.in_flight = True
                    try:
                        r = self.refresh(http, s)
                    except httpx.TransportError:
                        with self._lock:
                            self.transport_errors += 1
                        return  # the server is gone: s.in_flight stays True
                    s.in_flight = False
                    if r.status_code == 503:
                        time.sleep(0.05)
                    elif r.status_code != 200:
                        with self._lock:
                            self.errors.append(f"refresh {s.sid}: {r.status_code} {r.text[:200]}")

    def _revoker(self, rnd: random.Random) -> None:
        with httpx.Client(base_url=self.serve.base, timeout=10) as http:
            while not self._stop.is_set():
                try:
                    user = f"u{rnd.randrange(10)}"
                    body = {"username": user, "password": PASSWORD, "client_id": "web"}
                    r = self.post(http, "/login", json={**body, "scope": "read"})
                    if r.status_code == 503:  # fail closed while the store is down: try again
                        time.sleep(0.05)
                        continue
                    if r.status_code != 200:
                        with self._lock:
                            self.errors.append(f"login: {r.status_code} {r.text[:200]}")
                        continue
                    b = r.json()
                    s = Session(user, "web", b["refresh_token"], b["access_token"], b["session_id"])
                    if rnd.random() < 0.5:
                        r = self.post(http, "/revoke", data={"token": s.rt, "client_id": "web"})
                        kind = "refresh"
                    else:
                        r = self.post(http, "/revoke", data={"token": s.at, "client_id": "web"})
                        kind = "access"
                except httpx.TransportError:
                    with self._lock:
                        self.transport_errors += 1
                    return
                if r.status_code not in (200, 503):
                    with self._lock:
                        self.errors.append(f"revoke: {r.status_code} {r.text[:200]}")
                if r.status_code == 200:
                    with self._lock:
                        self.acks.append(Ack(kind, s.rt if kind == "refresh" else s.at, s.at))

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(30)
        assert not any(t.is_alive() for t in self._threads), "a load thread hung"
