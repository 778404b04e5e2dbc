"""The revocation mirror: a local copy of the server's revocation feed, kept live.

A background task on the guard's loop follows ``GET /revocations`` (HTTP Basic client
credentials): first ``after=0`` (the snapshot of live events), then ``after=<cursor>`` with a
long-poll ``wait`` — or, with ``mode="sse"``, one ``text/event-stream`` connection that the
server keeps open. Events go into a :class:`tokenward.revocation.Denylist`, so the hot path is
the core's O(1) set lookups. A reconnect resumes from the cursor; a server whose cursor went
*backwards* (a new, empty store) makes the mirror reload the snapshot from scratch.

**Staleness.** ``last_sync`` is the time of the last answer from the feed (a long-poll reply,
an SSE event or heartbeat). While ``now - last_sync <= max_staleness`` the mirror's view is
trusted. Past it — or before the first snapshot arrived — :meth:`RevocationMirror.check`
raises :class:`tokenward.errors.StoreUnavailable` (HTTP 503 + ``Retry-After``) when
``fail_closed`` (the default): the token may well be valid, we just cannot tell whether it was
revoked, so the client is told to retry rather than to re-authenticate. With
``fail_closed=False`` verification continues on the last known mirror and a warning is
logged once per staleness period.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping
from typing import Any, Literal

import httpx
import orjson
import structlog

from ..claims import AccessTokenClaims
from ..clock import Clock, system_clock
from ..errors import ConfigurationError, StoreUnavailable, TokenwardError
from ..feed import RevocationEvent, RevocationKind
from ..revocation import Denylist

__all__ = ["RevocationMirror", "event_from_json"]

log = structlog.get_logger("tokenward.guard.mirror")

_MAX_EVENT_BYTES = 64 * 1024


def _time(d: Mapping[str, Any], name: str) -> float:
    v = d.get(name)
    if not isinstance(v, int | float) or isinstance(v, bool) or not math.isfinite(v):
        raise ValueError(f"bad {name}")
    return float(v)


def event_from_json(d: Any) -> RevocationEvent:
    """One feed event; raises ``ValueError`` on anything malformed."""
    if not isinstance(d, Mapping):
        raise ValueError("event is not an object")
    seq, value, kind = d.get("seq"), d.get("value"), d.get("kind")
    if type(seq) is not int or seq <= 0:
        raise ValueError("bad seq")
    if type(value) is not str or not value:
        raise ValueError("bad value")
    if type(kind) is not str:
        raise ValueError("bad kind")
    return RevocationEvent(
        seq=seq,
        kind=RevocationKind(kind),
        value=value,
        until=_time(d, "until"),
        at=_time(d, "at"),
    )


class RevocationMirror:
    """Follows a tokenward revocation feed; ``check(claims)`` is the verifier's revocation hook."""

    def __init__(
        self,
        url: str,
        *,
        client_id: str,
        client_secret: str,
        clock: Clock = system_clock,
        max_staleness: float = 60.0,
        fail_closed: bool = True,
        wait: float | None = None,
        http_timeout: float = 2.0,
        mode: Literal["longpoll", "sse"] = "longpoll",
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if not url.startswith(("https://", "http://")):
            raise ConfigurationError("revocations_url must be an http(s) URL")
        if not client_id or not client_secret:
            raise ConfigurationError("the revocation feed needs client_id and client_secret")
        if max_staleness <= 0 or http_timeout <= 0:
            raise ConfigurationError("max_staleness and http_timeout must be positive")
        if mode not in ("longpoll", "sse"):
            raise ConfigurationError("mode must be 'longpoll' or 'sse'")
        self.url = url
        self.clock = clock
        self.max_staleness = float(max_staleness)
        self.fail_closed = bool(fail_closed)
        # a long-poll must come back well inside the staleness limit
        self.wait = float(wait) if wait is not None else max(0.0, min(20.0, max_staleness / 3))
        self.http_timeout = float(http_timeout)
        self.mode = mode
        self._auth = httpx.BasicAuth(client_id, client_secret)
        self._transport = transport
        self._client: httpx.AsyncClient | None = None
        # staleness is judged here (503, configurable), so the Denylist itself never is
        self.denylist = Denylist(clock=clock, max_staleness=None)
        self._synced_once = False
        self._warned_at = -math.inf
        #: the feed cursor (highest ``seq`` applied); clock time of the last feed answer.
        self.cursor = 0
        self.last_sync = -math.inf
        self.events_applied = 0
        self.last_lag: float | None = None  # now - event.at for the newest event applied
        self.failures = 0
        self.last_error: str | None = None

    # -- the hot path ---------------------------------------------------------------------
    @property
    def synced(self) -> bool:
        return self._synced_once

    @property
    def stale(self) -> bool:
        return self.clock.now() - self.last_sync > self.max_staleness

    def check(self, claims: AccessTokenClaims) -> None:
        """Raise ``RevokedToken`` (revoked) or ``StoreUnavailable`` (mirror too stale)."""
        if self.clock.now() - self.last_sync > self.max_staleness:
            self._on_stale()
        self.denylist.check(claims)

    def _on_stale(self) -> None:
        if self.fail_closed:
            if not self._synced_once:
                raise StoreUnavailable("revocation list not loaded yet", retry_after=1)
            raise StoreUnavailable(
                f"revocation list not refreshed for more than {self.max_staleness:g} s",
                retry_after=max(1, int(self.max_staleness / 4)),
            )
        now = self.clock.now()
        if now - self._warned_at > self.max_staleness:
            self._warned_at = now
            log.warning("revocation_mirror_stale", url=self.url, fail_closed=False)

    # -- applying the feed ----------------------------------------------------------------
    def apply(self, events: list[RevocationEvent]) -> None:
        """Apply events in order (those at or below the cursor are ignored)."""
        fresh = [e for e in events if e.seq > self.cursor]
        if not fresh:
            return
        self.denylist.apply(fresh)
        self.cursor = fresh[-1].seq
        self.events_applied += len(fresh)
        self.last_lag = self.clock.now() - fresh[-1].at

    def _mark_synced(self) -> None:
        self.last_sync = self.clock.now()
        self.denylist.mark_synced(self.last_sync)
        self._synced_once = True
        self.last_error = None

    def _reset(self) -> None:
        log.warning("revocation_feed_reset", url=self.url, cursor=self.cursor)
        self.denylist.clear()
        self.cursor = 0

    def _handle_page(self, doc: Any) -> int:
        if not isinstance(doc, dict) or not isinstance(doc.get("events"), list):
            raise ValueError("feed answer has no 'events' array")
        events = [event_from_json(e) for e in doc["events"]]
        cursor = doc.get("cursor")
        if type(cursor) is not int or cursor < 0:
            raise ValueError("feed answer has no integer 'cursor'")
        if cursor < self.cursor:
            self._reset()
            raise _Resync()
        events.sort(key=lambda e: e.seq)
        self.apply(events)
        self.cursor = max(self.cursor, cursor)
        return len(events)

    # -- HTTP -----------------------------------------------------------------------------
    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                auth=self._auth,
                transport=self._transport,
                timeout=httpx.Timeout(self.http_timeout, read=self.wait + self.http_timeout),
                follow_redirects=False,
            )
        return self._client

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def poll_once(self, *, wait: float | None = None) -> int:
        """``GET /revocations?after=<cursor>&wait=<wait>`` (then at once the next pages while
        the server says ``more``); returns the number of events applied."""
        w = self.wait if wait is None else wait
        total = 0
        while True:
            resp = await self._http().get(
                self.url,
                params={"after": str(self.cursor), "wait": f"{w:g}"},
                headers={"Accept": "application/json"},
            )
            _raise_for_status(resp)
            try:
                doc = orjson.loads(resp.content)
                total += self._handle_page(doc)
            except _Resync:
                w = 0.0
                continue
            if doc.get("more") is True:
                w = 0.0
                continue
            self._mark_synced()
            return total

    async def _follow_sse(self) -> None:
        """One SSE connection: apply events until the server closes it.

        The server (``tokenward.server.feed``) sends ``event: ready``, then ``event:
        revocation`` frames (``id:`` = ``seq``), keep-alive comments every 15 s, ``event:
        error`` when its store fails and ``event: reconnect`` when it is shutting down (the
        follower then connects again at once, to the next instance, keeping its cursor).
        Every frame or comment counts as contact.
        """
        headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
        if self.cursor:
            headers["Last-Event-ID"] = str(self.cursor)
        async with self._http().stream(
            "GET", self.url, params={"after": str(self.cursor)}, headers=headers
        ) as resp:
            _raise_for_status(resp)
            event, data = "message", list[str]()
            async for line in resp.aiter_lines():
                if len(line) > _MAX_EVENT_BYTES:
                    raise ValueError("SSE line too long")
                if line == "":
                    if data:
                        try:
                            self._on_sse(event, "\n".join(data))
                        except _Resync:
                            return  # reconnect from cursor 0: the snapshot, then the tail
                        except _Reconnect:
                            self._mark_synced()  # a clean goodbye is contact, not a failure
                            return
                    event, data = "message", list[str]()
                    self._mark_synced()
                elif line.startswith(":"):
                    self._mark_synced()  # keep-alive comment
                elif line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:"):
                    data.append(line[5:].removeprefix(" "))

    def _on_sse(self, event: str, payload: str) -> None:
        if event == "ready":
            # ``ready`` carries the server store's cursor: below ours, this mirror followed an
            # older store (a fresh or restored one now) -> drop the state and reload
            head = orjson.loads(payload)
            if type(head) is int and head < self.cursor:
                self._reset()
                raise _Resync()
            return
        if event == "error":
            raise StoreUnavailable("revocation feed reported an error")
        if event == "reconnect":
            raise _Reconnect()
        self.apply([event_from_json(orjson.loads(payload))])

    async def sync(self) -> bool:
        """One step of the follower (snapshot, long-poll or one SSE connection).

        Returns ``False`` (after logging and recording :attr:`last_error`) when it failed.
        """
        try:
            if self.mode == "sse" and self._synced_once:
                await self._follow_sse()
            else:
                await self.poll_once(wait=self.wait if self._synced_once else 0.0)
        except (httpx.HTTPError, TokenwardError, ValueError) as exc:
            self.failures += 1
            self.last_error = _describe(exc)
            log.warning("revocation_feed_error", url=self.url, error=self.last_error)
            return False
        return True

    async def run(self) -> None:
        """The background task: snapshot, then follow the tail; retry with backoff."""
        backoff = 0.1
        cap = max(0.5, min(5.0, self.max_staleness / 4))
        try:
            while True:
                if await self.sync():
                    backoff = 0.1
                    continue
                await asyncio.sleep(backoff)
                backoff = min(cap, backoff * 2)
        finally:
            await self.aclose()


class _Resync(Exception):
    pass


class _Reconnect(Exception):
    pass


def _raise_for_status(resp: httpx.Response) -> None:
    if resp.status_code == 200:
        return
    if resp.status_code in (401, 403):
        raise ConfigurationError(
            f"revocation feed refused the client credentials (HTTP {resp.status_code})"
        )
    raise StoreUnavailable(f"revocation feed answered HTTP {resp.status_code}")


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TokenwardError):
        return exc.description
    if isinstance(exc, ValueError):
        return f"malformed feed answer: {exc}"
    return type(exc).__name__
