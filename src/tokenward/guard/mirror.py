"""The guard's revocation mirror: the core :class:`tokenward.mirror.RevocationMirror` fed by
:class:`HttpFeedSource`, a client of the server's ``GET /revocations`` (HTTP Basic client
credentials).

The source asks first for ``after=0`` (the snapshot of live events), then ``after=<cursor>``
with a long-poll ``wait`` — or, with ``mode="sse"``, holds one ``text/event-stream``
connection that the server keeps open. A reconnect resumes from the cursor; a server whose
cursor went *backwards* (a new, empty store) makes the mirror reload the snapshot from
scratch. Staleness follows the one rule of :mod:`tokenward.mirror`: past ``max_staleness``
(60 s) :meth:`~tokenward.mirror.RevocationMirror.check` raises ``StoreUnavailable`` (503 +
``Retry-After``) when ``fail_closed`` (the default).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal

import httpx
import orjson

from ..clock import Clock, system_clock
from ..errors import ConfigurationError, StoreUnavailable
from ..feed import RevocationEvent, RevocationKind
from ..mirror import DEFAULT_MAX_STALENESS, RevocationSource
from ..mirror import RevocationMirror as CoreMirror

__all__ = ["HttpFeedSource", "RevocationMirror", "event_from_json"]

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


class HttpFeedSource(RevocationSource):
    """``GET /revocations`` of a tokenward server: long-poll pages, or one SSE stream."""

    def __init__(
        self,
        url: str,
        *,
        client_id: str,
        client_secret: str,
        wait: float,
        http_timeout: float = 2.0,
        mode: Literal["longpoll", "sse"] = "longpoll",
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if not url.startswith(("https://", "http://")):
            raise ConfigurationError("revocations_url must be an http(s) URL")
        if not client_id or not client_secret:
            raise ConfigurationError("the revocation feed needs client_id and client_secret")
        if http_timeout <= 0:
            raise ConfigurationError("max_staleness and http_timeout must be positive")
        if mode not in ("longpoll", "sse"):
            raise ConfigurationError("mode must be 'longpoll' or 'sse'")
        self.url = url
        self.wait = float(wait)
        self.http_timeout = float(http_timeout)
        self.mode = mode
        self._auth = httpx.BasicAuth(client_id, client_secret)
        self._transport = transport
        self._client: httpx.AsyncClient | None = None

    async def sync(self, mirror: CoreMirror) -> int:
        if self.mode == "sse" and mirror.synced:
            return await self._follow_sse(mirror)
        return await self.poll_once(mirror, wait=self.wait if mirror.synced else 0.0)

    def _handle_page(self, mirror: CoreMirror, doc: Any) -> int:
        if not isinstance(doc, dict) or not isinstance(doc.get("events"), list):
            raise ValueError("feed answer has no 'events' array")
        events = [event_from_json(e) for e in doc["events"]]
        cursor = doc.get("cursor")
        if type(cursor) is not int or cursor < 0:
            raise ValueError("feed answer has no integer 'cursor'")
        if cursor < mirror.cursor:
            mirror.reset("feed cursor went backwards")
            raise _Resync()
        events.sort(key=lambda e: e.seq)
        mirror.apply(events)
        mirror.cursor = max(mirror.cursor, cursor)
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

    async def poll_once(self, mirror: CoreMirror, *, wait: float | None = None) -> int:
        """``GET /revocations?after=<cursor>&wait=<wait>`` (then at once the next pages while
        the server says ``more``); returns the number of events applied."""
        w = self.wait if wait is None else wait
        total = 0
        while True:
            resp = await self._http().get(
                self.url,
                params={"after": str(mirror.cursor), "wait": f"{w:g}"},
                headers={"Accept": "application/json"},
            )
            _raise_for_status(resp)
            try:
                doc = orjson.loads(resp.content)
                total += self._handle_page(mirror, doc)
            except _Resync:
                w = 0.0
                continue
            if doc.get("more") is True:
                w = 0.0
                continue
            mirror.mark_synced()
            return total

    async def _follow_sse(self, mirror: CoreMirror) -> int:
        """One SSE connection: apply events until the server closes it.

        The server (``tokenward.server.routes.feed``) sends ``event: ready``, then ``event:
        revocation`` frames (``id:`` = ``seq``), keep-alive comments every 15 s, ``event:
        error`` when its store fails and ``event: reconnect`` when it is shutting down (the
        follower then connects again at once, to the next instance, keeping its cursor).
        Every frame or comment counts as contact.
        """
        headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
        if mirror.cursor:
            headers["Last-Event-ID"] = str(mirror.cursor)
        applied = 0
        async with self._http().stream(
            "GET", self.url, params={"after": str(mirror.cursor)}, headers=headers
        ) as resp:
            _raise_for_status(resp)
            event, data = "message", list[str]()
            async for line in resp.aiter_lines():
                if len(line) > _MAX_EVENT_BYTES:
                    raise ValueError("SSE line too long")
                if line == "":
                    if data:
                        try:
                            applied += self._on_sse(mirror, event, "\n".join(data))
                        except _Resync:
                            return applied  # reconnect from cursor 0: the snapshot, the tail
                        except _Reconnect:
                            mirror.mark_synced()  # a clean goodbye is contact, not a failure
                            return applied
                    event, data = "message", list[str]()
                    mirror.mark_synced()
                elif line.startswith(":"):
                    mirror.mark_synced()  # keep-alive comment
                elif line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:"):
                    data.append(line[5:].removeprefix(" "))
        return applied

    def _on_sse(self, mirror: CoreMirror, event: str, payload: str) -> int:
        if event == "ready":
            # ``ready`` carries the server store's cursor: below ours, this mirror followed an
            # older store (a fresh or restored one now) -> drop the state and reload
            head = orjson.loads(payload)
            if type(head) is int and head < mirror.cursor:
                mirror.reset("feed cursor went backwards")
                raise _Resync()
            return 0
        if event == "error":
            raise StoreUnavailable("revocation feed reported an error")
        if event == "reconnect":
            raise _Reconnect()
        return mirror.apply([event_from_json(orjson.loads(payload))])


class RevocationMirror(CoreMirror):
    """The core mirror over a tokenward server's HTTP feed (what ``guard.Verifier`` uses)."""

    source: HttpFeedSource

    def __init__(
        self,
        url: str,
        *,
        client_id: str,
        client_secret: str,
        clock: Clock = system_clock,
        max_staleness: float = DEFAULT_MAX_STALENESS,
        fail_closed: bool = True,
        wait: float | None = None,
        http_timeout: float = 2.0,
        mode: Literal["longpoll", "sse"] = "longpoll",
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if max_staleness <= 0 or http_timeout <= 0:
            raise ConfigurationError("max_staleness and http_timeout must be positive")
        # a long-poll must come back well inside the staleness limit
        w = float(wait) if wait is not None else max(0.0, min(20.0, max_staleness / 3))
        source = HttpFeedSource(
            url,
            client_id=client_id,
            client_secret=client_secret,
            wait=w,
            http_timeout=http_timeout,
            mode=mode,
            transport=transport,
        )
        super().__init__(source, clock=clock, max_staleness=max_staleness, fail_closed=fail_closed)

    @property
    def url(self) -> str:
        return self.source.url

    @property
    def wait(self) -> float:
        return self.source.wait

    @property
    def mode(self) -> str:
        return self.source.mode

    async def poll_once(self, *, wait: float | None = None) -> int:
        return await self.source.poll_once(self, wait=wait)

    async def _follow_sse(self) -> int:
        return await self.source._follow_sse(self)

    def _mark_synced(self) -> None:
        self.mark_synced()


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
