"""Outbound deliveries: one component for every signed JWT the server POSTs to another party
(OpenID Connect Back-Channel Logout tokens; Security Event Tokens pushed to Shared Signals
receivers, RFC 8935).

* **Persisted**: each delivery is a store record (kind ``outbox``), so a restart or another
  instance picks it up; a delivery is claimed by compare-and-set before it is sent, so two
  instances do not send it at the same moment.
* **Retried with backoff** (1, 2, 4 … 300 s) up to :data:`MAX_ATTEMPTS` (or the delivery's
  own ``max_attempts``); **at-least-once**: a receiver may see a delivery twice (logout tokens
  and SETs carry a ``jti`` to deduplicate). A delivery made with ``final_on_client_error``
  stops at a 4xx answer other than 408/429 (RFC 8935 §2.3: the receiver rejected it; sending
  it again cannot help).
* **Headers**: a delivery may carry extra request headers (a receiver's ``Authorization``),
  stored with it and never logged.
* **Bounded**: at most :data:`MAX_PENDING` waiting deliveries (a new one beyond is dropped and
  reported), each kept at most a day.
* **Outbound URL policy**: ``https`` only; a target that resolves to a loopback, private,
  link-local or otherwise non-public address is refused, unless
  ``TOKENWARD_OUTBOUND_ALLOW_PRIVATE=1`` (tests, private deployments), which allows those and
  plain ``http`` to them. Short timeouts, no redirects followed, at most
  :data:`MAX_RESPONSE` bytes of a response read.
* The outcome of every attempt is a security event (``outbound_delivered``,
  ``outbound_failed``, ``outbound_dropped``).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import secrets
import socket
from collections.abc import Callable, Mapping
from typing import Any, cast
from urllib.parse import urlsplit

import httpx

from ..clock import Clock
from ..events import emit
from ..store.base import GrantRecord, Store

__all__ = ["MAX_ATTEMPTS", "MAX_PENDING", "OutboundRefused", "Outbox", "check_target"]

KIND = "outbox"
OWNER = "pending"
MAX_ATTEMPTS = 8
MAX_PENDING = 1000
MAX_RESPONSE = 4096
KEEP = 86_400.0
_LEASE = 30.0
_RECOUNT = 30.0
TIMEOUT = httpx.Timeout(5.0, connect=3.0)


class OutboundRefused(Exception):
    """The target URL is not allowed by the outbound policy."""


def _private(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return not ip.is_global or ip.is_multicast


def check_target(url: str, *, allow_private: bool, resolve: bool = True) -> None:
    """Raise :class:`OutboundRefused` when ``url`` may not be called."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise OutboundRefused("not a valid URL") from None
    host = parts.hostname or ""
    if parts.scheme not in ("https", "http") or not host or parts.username or parts.password:
        raise OutboundRefused("only absolute https URLs")
    try:
        literal: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    addresses = [literal] if literal is not None else []
    if literal is None and (host == "localhost" or host.endswith(".localhost")):
        addresses = [ipaddress.ip_address("127.0.0.1")]
    elif literal is None and resolve:
        try:
            infos = socket.getaddrinfo(host, port or 443, proto=socket.IPPROTO_TCP)
        except OSError:
            raise OutboundRefused(f"cannot resolve {host}") from None
        addresses = [ipaddress.ip_address(i[4][0]) for i in infos]
    private = any(_private(a) for a in addresses)
    if private and not allow_private:
        raise OutboundRefused(f"{host} is a loopback or private address")
    if parts.scheme == "http" and not (allow_private and private):
        raise OutboundRefused("plain http is allowed only to private targets in test mode")


class Outbox:
    def __init__(
        self,
        store: Store,
        *,
        clock: Clock,
        allow_private: bool,
        transport: httpx.AsyncBaseTransport | None = None,
        resolve: bool = True,
    ) -> None:
        self.store = store
        self.clock = clock
        self.allow_private = allow_private
        self._transport = transport
        self._resolve = resolve
        self.wake = asyncio.Event()
        # one client for every delivery: making one loads the CA bundle (~0.1 s), and its
        # pool keeps connections to a receiver open between deliveries
        self._http: httpx.AsyncClient | None = None
        self._counted: tuple[int, float] | None = None  # (waiting deliveries, counted at)
        self._http_transport: httpx.AsyncBaseTransport | None = None

    async def enqueue(
        self,
        url: str,
        body: bytes,
        content_type: str,
        *,
        kind: str,
        headers: Mapping[str, str] | None = None,
        max_attempts: int = MAX_ATTEMPTS,
        final_on_client_error: bool = False,
        ref: str | None = None,
    ) -> bool:
        """Queue one delivery (durably: it is in the store when this returns ``True``);
        ``False`` (and an event) when the queue is full or the URL is refused by the policy."""
        now = self.clock.now()
        try:
            check_target(url, allow_private=self.allow_private, resolve=False)
        except OutboundRefused as exc:
            emit("outbound_dropped", kind=kind, url=url, reason=str(exc))
            return False
        count = await self._count(now)
        if count >= MAX_PENDING:
            emit("outbound_dropped", kind=kind, url=url, reason="queue full")
            return False
        data: dict[str, Any] = {
            "url": url,
            "body": body.decode("ascii"),
            "content_type": content_type,
            "kind": kind,
            "attempts": 0,
            "next_at": now,
        }
        if headers:
            data["headers"] = dict(headers)
        if max_attempts != MAX_ATTEMPTS:
            data["max_attempts"] = max_attempts
        if final_on_client_error:
            data["final_4xx"] = True
        if ref is not None:
            data["ref"] = ref
        key = f"{now:017.6f}-{secrets.token_hex(8)}"  # key order = enqueue order
        await self.store.create_record(GrantRecord(KIND, key, OWNER, data, now + KEEP), now=now)
        if self._counted is not None:
            self._counted = (self._counted[0] + 1, self._counted[1])
        self.wake.set()
        return True

    async def _count(self, now: float) -> int:
        """How many deliveries wait: counted in the store when unknown, older than
        :data:`_RECOUNT` seconds or near the bound, else this instance's running count (the
        delivery loop recounts every pass), so a busy queue is not read whole per enqueue."""
        known = self._counted
        if known is None or known[0] >= MAX_PENDING - 1 or now - known[1] > _RECOUNT:
            known = (len(await self.store.list_records(KIND, OWNER, now=now)), now)
            self._counted = known
        return known[0]

    async def pending(self) -> list[GrantRecord]:
        return await self.store.list_records(KIND, OWNER, now=self.clock.now())

    async def cancel(self, kind: str, ref: str) -> int:
        """Forget the waiting deliveries of ``kind`` queued with ``ref`` (a deleted stream's)."""
        n = 0
        for rec in await self.pending():
            if rec.data.get("kind") == kind and rec.data.get("ref") == ref:
                n += int(await self.store.delete_record(KIND, rec.key))
        self._counted = None
        return n

    async def deliver_due(self) -> int:
        """Send every delivery that is due; the number delivered."""
        now = self.clock.now()
        done = 0
        pending = await self.store.list_records(KIND, OWNER, now=now)
        self._counted = (len(pending), now)  # an over-count as deliveries finish: safe
        for rec in pending:
            if float(rec.data["next_at"]) > now:
                continue
            rec.data["next_at"] = now + _LEASE  # claim it (compare-and-set)
            if not await self.store.update_record(rec, now=now):
                continue
            rec.version += 1
            ok, why = await self._send(rec.data)
            if ok:
                await self.store.delete_record(KIND, rec.key)
                emit("outbound_delivered", kind=rec.data["kind"], url=rec.data["url"])
                done += 1
                continue
            rec.data["attempts"] = attempts = int(rec.data["attempts"]) + 1
            limit = int(rec.data.get("max_attempts", MAX_ATTEMPTS))
            if attempts >= limit or why.startswith("rejected"):
                await self.store.delete_record(KIND, rec.key)
                emit(
                    "outbound_failed",
                    kind=rec.data["kind"],
                    url=rec.data["url"],
                    reason=why,
                    attempts=attempts,
                    final=True,
                )
                continue
            rec.data["next_at"] = self.clock.now() + min(2 ** (attempts - 1), 300)
            await self.store.update_record(rec, now=self.clock.now())
            emit(
                "outbound_failed",
                kind=rec.data["kind"],
                url=rec.data["url"],
                reason=why,
                attempts=attempts,
            )
        return done

    async def _send(self, data: dict[str, object]) -> tuple[bool, str]:
        url = str(data["url"])
        try:
            await asyncio.to_thread(
                check_target, url, allow_private=self.allow_private, resolve=self._resolve
            )
        except OutboundRefused as exc:
            return False, str(exc)
        try:
            async with (
                self._client().stream(
                    "POST",
                    url,
                    content=str(data["body"]).encode(),
                    headers={
                        **cast("dict[str, str]", data.get("headers") or {}),
                        "Content-Type": str(data["content_type"]),
                    },
                ) as resp,
            ):
                seen = 0
                async for chunk in resp.aiter_bytes():
                    seen += len(chunk)
                    if seen > MAX_RESPONSE:
                        break
                code = resp.status_code
                if 200 <= code < 300:
                    return True, "ok"
                if data.get("final_4xx") and 400 <= code < 500 and code not in (408, 429):
                    return False, f"rejected: HTTP {code}"
                return False, f"HTTP {resp.status_code}"
        except httpx.HTTPError as exc:
            return False, type(exc).__name__

    def _client(self) -> httpx.AsyncClient:
        if self._http is None or self._http_transport is not self._transport:
            self._http = httpx.AsyncClient(
                timeout=TIMEOUT, follow_redirects=False, transport=self._transport
            )
            self._http_transport = self._transport
        return self._http

    async def aclose(self) -> None:
        """Close the delivery client's connections."""
        http, self._http = self._http, None
        if http is not None:
            await http.aclose()

    async def run(self, interval: Callable[[], float] = lambda: 1.0) -> None:
        """The delivery loop (a task of the server)."""
        try:
            await self._loop(interval)
        finally:
            with contextlib.suppress(Exception):
                await self.aclose()

    async def _loop(self, interval: Callable[[], float]) -> None:
        while True:
            # cleared before the pass: a delivery queued during it wakes the next one at once
            self.wake.clear()
            try:
                await self.deliver_due()
            except Exception as exc:
                emit("outbound_failed", reason=type(exc).__name__)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), timeout=interval())
