"""``/metrics``: grace-window replays are counted, and every store operation is timed."""

from __future__ import annotations

import re

from support.server import Server


def _metric(text: str, name: str, labels: str = "") -> float:
    pattern = re.escape(name) + (r"\{" + re.escape(labels) + r"\}" if labels else "") + r" (\S+)"
    m = re.search(r"^" + pattern + r"$", text, re.M)
    return float(m.group(1)) if m else 0.0


def _refresh(server: Server, token: str) -> dict[str, str]:
    r = server.refresh(token)
    assert r.status_code == 200, r.text
    body: dict[str, str] = r.json()
    return body


def test_grace_replay_is_counted_apart_from_rotations(server: Server) -> None:
    before = server.http.get("/metrics").text
    tok = server.login()
    first = _refresh(server, tok["refresh_token"])
    again = _refresh(server, tok["refresh_token"])  # the parent, inside the grace window
    assert again["refresh_token"] == first["refresh_token"]
    after = server.http.get("/metrics").text
    replays = _metric(after, "tokenward_grace_replays_total")
    rotations = _metric(after, "tokenward_refreshes_total")
    assert replays - _metric(before, "tokenward_grace_replays_total") == 1
    assert rotations - _metric(before, "tokenward_refreshes_total") == 1


def test_store_operations_are_timed_by_operation(server: Server) -> None:
    tok = server.login()
    _refresh(server, tok["refresh_token"])
    assert server.http.get("/healthz").status_code == 200
    text = server.http.get("/metrics").text
    name = "tokenward_store_operation_seconds_count"
    assert _metric(text, name, 'op="rotate"') >= 1
    assert _metric(text, name, 'op="create_family"') >= 1
    assert _metric(text, name, 'op="ping"') >= 1
    assert 'op="wait_revocations"' not in text  # a blocking wait is not a latency
