"""``GET /revocations``: the revocation feed for remote verifiers (``tokenward.guard``).

``?after=0`` is a snapshot of every live event; ``?after=CURSOR`` the tail. With
``wait=SECONDS`` the request long-polls until an event arrives (or the wait ends); with
``Accept: text/event-stream`` it streams Server-Sent Events (``id:`` = ``seq``, so a
reconnecting ``EventSource`` resumes through ``Last-Event-ID``), with keep-alive comments.

When the process is told to stop (SIGTERM/SIGINT), a stream sends ``event: reconnect`` and
closes, and a long-poll answers at once with no events and the caller's own cursor: the
follower reconnects (to another instance) and the server exits without waiting for them.

Callers authenticate as a confidential client (HTTP Basic) or with a bearer token carrying the
``revocations`` (or ``admin``) scope.

Every waiting request (SSE stream, or long-poll with ``wait``) of this process waits on the
runtime's :class:`~tokenward.store.fanout.FeedFanout` (one store follower for all of them) and
holds one of the stream slots (``feed_max_streams`` in all, ``feed_max_streams_per_client``
per client): beyond them 429 (``invalid_request``) + ``Retry-After``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from functools import partial
from typing import Any

import orjson
from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from ...errors import InsufficientScope
from ...feed import RevocationEvent
from ..auth import authenticate_client
from ..deps import bearer_claims, get_runtime
from ..errors import JSON, OAuthError
from ..openapi import BASIC_AUTH, BEARER_AUTH

__all__ = ["RECONNECT", "router"]

router = APIRouter(tags=["revocation feed"])

_KEEPALIVE = 15.0
#: The last SSE message before a server that is shutting down closes the stream.
RECONNECT = b"event: reconnect\ndata: shutting down\n\n"
_FEED_SCOPES = frozenset({"revocations", "admin"})


async def _authenticate(request: Request) -> str:
    """The caller's client id (the key of the per-client stream cap)."""
    header = request.headers.get("authorization", "")
    if header[:6].lower() == "basic ":
        return (await authenticate_client(request, {}, allow_public=False)).client_id
    claims = await bearer_claims(request)
    if not (claims.scopes & _FEED_SCOPES):
        request.state.required_scope = "revocations"
        raise InsufficientScope("the 'revocations' scope is required")
    return claims.client_id or claims.sub


class _SlotStream(StreamingResponse):
    """An SSE response that gives its stream slot back however it ends (finished,
    disconnected, cancelled, or never started)."""

    def __init__(self, content: AsyncIterator[bytes], release: Callable[[], None]) -> None:
        super().__init__(
            content,
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )
        self._release = release

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._release()


def _page(events: list[RevocationEvent], cursor: int, limit: int) -> dict[str, Any]:
    """One answer. Without events the cursor is the store's: lower than the caller's ``after``
    when the store is younger than the caller's mirror (a fresh or restored store), which
    tells the follower to drop its mirror and reload from 0."""
    return {
        "events": [e.to_dict() for e in events],
        "cursor": events[-1].seq if events else cursor,
        "more": len(events) >= limit,
    }


@router.get(
    "/revocations",
    summary="Revocation feed: snapshot + tail, long-poll or SSE",
    openapi_extra={"security": [{BASIC_AUTH: []}, {BEARER_AUTH: []}]},
    responses={
        200: {
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "properties": {
                            "events": {"type": "array", "items": {"type": "object"}},
                            "cursor": {"type": "integer"},
                            "more": {"type": "boolean"},
                        },
                    }
                },
                "text/event-stream": {},
            }
        },
        401: {"model": OAuthError},
        403: {"model": OAuthError},
        503: {"model": OAuthError},
    },
)
async def revocations(
    request: Request,
    after: int = Query(0, ge=0, le=2**62),
    wait: float = Query(0.0, ge=0, le=300),
    limit: int = Query(1000, ge=1, le=1000),
) -> Any:
    client = await _authenticate(request)
    rt = get_runtime(request)
    store = rt.store
    last_id = request.headers.get("last-event-id", "")
    if last_id.isdigit() and len(last_id) < 19:
        after = max(after, int(last_id))
    if "text/event-stream" in request.headers.get("accept", ""):
        rt.feed_streams.acquire(client)  # 429 beyond the caps, before any store read
        try:
            # the first reads happen before the stream starts: a store that fails here is
            # an ordinary 503, not a torn chunked response
            head = await store.revocation_cursor()
            first = await store.revocations_after(after, now=rt.clock.now(), limit=limit)
        except BaseException:
            rt.feed_streams.release(client)
            raise
        return _SlotStream(
            _sse(request, after, head, first), partial(rt.feed_streams.release, client)
        )
    # the store's own cursor, read before the events: every event up to it is either in the
    # answer or already expired, so a follower that jumps to it misses nothing
    if wait > 0:
        rt.feed_streams.acquire(client)
    try:
        cursor = await store.revocation_cursor()
        events = await store.revocations_after(after, now=rt.clock.now(), limit=limit)
        if not events and wait > 0 and cursor >= after:
            waited = await rt.until_stopping(
                rt.feed.wait_revocations(
                    after, now=rt.clock.now, timeout=min(wait, rt.settings.feed_max_wait)
                )
            )
            if waited is None:  # shutting down: nothing new, same cursor; the caller polls again
                return JSON(_page([], after, limit), headers={"Cache-Control": "no-store"})
            events = waited[:limit]
    finally:
        if wait > 0:
            rt.feed_streams.release(client)
    return JSON(_page(events, cursor, limit), headers={"Cache-Control": "no-store"})


async def _sse(
    request: Request, after: int, head: int, events: list[RevocationEvent]
) -> AsyncIterator[bytes]:
    rt = get_runtime(request)
    # ``ready`` carries the store's cursor; below ``after`` the caller's mirror is ahead of
    # this store (a fresh one), so the tail is followed from the store's cursor, not ``after``
    cursor = after if events else head
    yield f"event: ready\ndata: {head}\n\n".encode()
    while True:
        for e in events:
            cursor = e.seq
            yield b"id: %d\nevent: revocation\ndata: %s\n\n" % (e.seq, orjson.dumps(e.to_dict()))
        if await request.is_disconnected():
            return
        try:
            waited = await rt.until_stopping(
                rt.feed.wait_revocations(cursor, now=rt.clock.now, timeout=_KEEPALIVE)
            )
        except asyncio.CancelledError:
            raise
        except Exception:
            yield b"event: error\ndata: store unavailable\n\n"
            return
        if waited is None:  # shutting down: tell the follower to reconnect (elsewhere)
            yield RECONNECT
            return
        events = waited
        if not events:
            yield b": keep-alive\n\n"
