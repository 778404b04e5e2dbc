"""``GET /revocations`` answers the store's real cursor, so a follower that is ahead of the
store (its mirror came from an older store; this one is fresh or restored) sees a lower cursor
and reloads instead of waiting forever for sequence numbers this store will reuse."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from support.server import Server, bearer
from tokenward.guard.mirror import RevocationMirror


def _feed(server: Server, query: str) -> dict[str, object]:
    r = server.http.get(f"/revocations?{query}", headers=server.svc())
    assert r.status_code == 200, r.text
    body: dict[str, object] = r.json()
    return body


def test_follower_ahead_of_a_fresh_store_sees_a_lower_cursor(server: Server) -> None:
    body = _feed(server, "after=50")
    assert body == {"events": [], "cursor": 0, "more": False}


def test_follower_ahead_is_answered_at_once_even_when_long_polling(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    waits: list[float] = []
    feed = server.runtime.feed
    real = feed.wait_revocations

    async def spy(*args: Any, **kwargs: Any) -> Any:
        waits.append(kwargs["timeout"])
        return await real(*args, **kwargs)

    monkeypatch.setattr(feed, "wait_revocations", spy)
    body = _feed(server, "after=50&wait=20")
    assert body["cursor"] == 0
    assert waits == []  # the wait is skipped, not served
    # a follower at the store's cursor does wait (what the spy would have seen)
    assert _feed(server, "after=0&wait=0.05")["events"] == []
    assert waits == [0.05]


def test_cursor_is_the_stores_after_events(server: Server) -> None:
    tok = server.login()
    assert server.http.post("/logout", headers=bearer(tok["access_token"])).status_code == 200
    snap = _feed(server, "after=0")
    events = snap["events"]
    assert isinstance(events, list) and len(events) == 1
    head = events[0]["seq"]
    assert snap["cursor"] == head
    assert _feed(server, f"after={head}")["cursor"] == head  # caught up: same cursor
    ahead = _feed(server, f"after={head + 100}")
    assert ahead["events"] == [] and ahead["cursor"] == head  # ahead: the lower, real one


def test_guard_mirror_ahead_of_the_store_reloads_its_snapshot(server: Server) -> None:
    """What the lower cursor is for: tokenward.guard's mirror drops its state and reloads."""
    tok = server.login()
    assert server.http.post("/logout", headers=bearer(tok["access_token"])).status_code == 200
    head = _feed(server, "after=0")["cursor"]
    assert isinstance(head, int) and head >= 1

    async def follow() -> tuple[int, int]:
        mirror = RevocationMirror(
            "http://testserver/revocations",
            client_id="svc",
            client_secret=server.svc_secret,
            clock=server.clock,
            transport=httpx.ASGITransport(app=server.http.app),
        )
        mirror.cursor = head + 1000  # followed an older store that had gone further
        try:
            applied = await mirror.poll_once(wait=5.0)
        finally:
            await mirror.aclose()
        return applied, mirror.cursor

    applied, cursor = server.run(follow)
    assert (applied, cursor) == (1, head)  # reset, then the snapshot's one event
