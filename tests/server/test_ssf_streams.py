"""The Shared Signals transmitter in-process (frozen clock, memory store): stream input
validation (400 naming the problem, never a 500), subjects, status, verification, the
RFC 8935 push details (headers, a 4xx rejection is final), and the rule that a 2xx is only
answered once the request's SETs are stored."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from support.server import ISSUER, Server, bearer
from tokenward.server.outbox import KIND
from tokenward.server.ssf import (
    ACCOUNT_DISABLED,
    CREDENTIAL_CHANGE,
    SESSION_REVOKED,
    SESSIONS_REVOKED,
    verify_set,
)
from tokenward.server.ssf_transmitter import signals_for

PUSH = "urn:ietf:rfc:8935"
POLL = "urn:ietf:rfc:8936"
VERIFICATION = "https://schemas.openid.net/secevent/ssf/event-type/verification"


def ssf_token(server: Server) -> str:
    async def allow() -> None:
        await server.runtime.clients.set_permissions(
            "svc", scopes=["read", "write", "revocations", "ssf"]
        )

    server.run(allow)
    r = server.http.post(
        "/token", data={"grant_type": "client_credentials", "scope": "ssf"}, headers=server.svc()
    )
    assert r.status_code == 200, r.text
    return str(r.json()["access_token"])


def create(server: Server, token: str, body: dict[str, Any]) -> dict[str, Any]:
    r = server.http.post("/ssf/streams", json=body, headers=bearer(token))
    assert r.status_code == 201, r.text
    out: dict[str, Any] = r.json()
    return out


def poll(server: Server, token: str, stream_id: str, **body: Any) -> dict[str, Any]:
    r = server.http.post(
        f"/ssf/poll/{stream_id}", json={"returnImmediately": True, **body}, headers=bearer(token)
    )
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


def events(server: Server, token: str, stream_id: str) -> list[dict[str, Any]]:
    sets = poll(server, token, stream_id)["sets"]
    poll(server, token, stream_id, ack=list(sets))
    jwks = server.runtime.keyring.public_jwks()
    return [verify_set(jwks, s) for s in sets.values()]


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ([], "JSON object"),
        ({"delivery": {"method": POLL}, "colour": "red"}, "unknown stream property 'colour'"),
        ({}, "delivery is required"),
        ({"delivery": "poll"}, "delivery must be an object"),
        ({"delivery": {"method": "smoke"}}, "delivery.method"),
        ({"delivery": {"method": PUSH}}, "delivery.endpoint_url"),
        ({"delivery": {"method": PUSH, "endpoint_url": 7}}, "delivery.endpoint_url"),
        ({"delivery": {"method": PUSH, "endpoint_url": "x" * 3000}}, "delivery.endpoint_url"),
        ({"delivery": {"method": POLL, "endpoint_url": "https://a.example"}}, None),
        ({"delivery": {"method": POLL, "authorization_header": "x"}}, "push delivery only"),
        ({"delivery": {"method": POLL, "x": 1}}, "delivery: unknown property 'x'"),
        ({"delivery": {"method": POLL}, "events_requested": "all"}, "events_requested"),
        ({"delivery": {"method": POLL}, "events_requested": [1]}, "events_requested"),
        ({"delivery": {"method": POLL}, "events_requested": ["not a uri"]}, "event-type URI"),
        ({"delivery": {"method": POLL}, "description": "a\nb"}, "control characters"),
        ({"delivery": {"method": POLL}, "stream_id": "mine"}, "assigned by the transmitter"),
    ],
)
def test_ssf_8_1_1_1_bad_stream_input_is_a_400_naming_the_problem(
    server: Server, body: Any, says: str | None
) -> None:
    r = server.http.post("/ssf/streams", json=body, headers=bearer(ssf_token(server)))
    if says is None:  # a poll stream's endpoint is the transmitter's: a given one is ignored
        assert r.status_code == 201
        assert r.json()["delivery"]["endpoint_url"].startswith(f"{ISSUER}/ssf/poll/")
        return
    assert r.status_code == 400, r.text
    assert r.json()["error"] == "invalid_request"
    assert says in r.json()["error_description"]


def test_not_json_and_wrong_content_type_are_400(server: Server) -> None:
    token = ssf_token(server)
    h = {**bearer(token), "Content-Type": "application/json"}
    r = server.http.post("/ssf/streams", content=b"{nope", headers=h)
    assert r.status_code == 400 and "not valid JSON" in r.json()["error_description"]
    r = server.http.post("/ssf/streams", data={"a": "b"}, headers=bearer(token))
    assert r.status_code == 400 and "application/json" in r.json()["error_description"]


def test_a_user_token_even_with_the_scope_cannot_manage_streams(server: Server) -> None:
    user = server.login()["access_token"]  # a user session token (no ssf scope)
    r = server.http.get("/ssf/streams", headers=bearer(user))
    assert r.status_code == 403 and 'scope="ssf"' in r.headers["www-authenticate"]


def test_ssf_8_1_3_subjects_narrow_a_stream(server: Server) -> None:
    token = ssf_token(server)
    sid = create(
        server, token, {"delivery": {"method": POLL}, "events_requested": [ACCOUNT_DISABLED]}
    )["stream_id"]
    add, remove = "/ssf/subjects/add", "/ssf/subjects/remove"
    alice = {"format": "iss_sub", "iss": ISSUER, "sub": "alice"}
    # ALL by default; removing alice excludes her
    r = server.http.post(remove, json={"stream_id": sid, "subject": alice}, headers=bearer(token))
    assert r.status_code == 204
    _disable(server, "alice")
    assert events(server, token, sid) == []
    # back in: her events flow again
    r = server.http.post(add, json={"stream_id": sid, "subject": alice}, headers=bearer(token))
    assert r.status_code == 200
    _disable(server, "alice")
    assert [e["sub_id"]["sub"] for e in events(server, token, sid)] == ["alice"]
    # NONE: only the subjects added afterwards (an opaque id is a username or a session)
    server.run(server.runtime.users.create, "bob", "bob's good password")
    everyone = {"format": "all"}
    r = server.http.post(
        remove, json={"stream_id": sid, "subject": everyone}, headers=bearer(token)
    )
    assert r.status_code == 204
    opaque_bob = {"format": "opaque", "id": "bob"}
    r = server.http.post(add, json={"stream_id": sid, "subject": opaque_bob}, headers=bearer(token))
    assert r.status_code == 200
    _disable(server, "alice")
    _disable(server, "bob")
    assert [e["sub_id"]["sub"] for e in events(server, token, sid)] == ["bob"]


@pytest.mark.parametrize(
    ("subject", "says"),
    [
        ("alice", "must be an object"),
        ({"format": "email", "email": "a@b.example"}, "format 'email' is not supported"),
        ({"format": "iss_sub", "iss": "https://elsewhere.example", "sub": "a"}, "this issuer"),
        ({"format": "iss_sub", "iss": ISSUER}, "subject.sub"),
        ({"format": "opaque", "id": ""}, "subject.id"),
        ({"format": "complex"}, "exactly one of user or session"),
        ({"format": "complex", "session": {"format": "email"}}, "opaque"),
    ],
)
def test_a_bad_subject_is_a_400(server: Server, subject: Any, says: str) -> None:
    token = ssf_token(server)
    sid = create(server, token, {"delivery": {"method": POLL}})["stream_id"]
    r = server.http.post(
        "/ssf/subjects/add", json={"stream_id": sid, "subject": subject}, headers=bearer(token)
    )
    assert r.status_code == 400 and says in r.json()["error_description"], r.text


def _disable(server: Server, name: str) -> None:
    """Disable the user and enable it again (the stream asks for account-disabled only)."""
    admin = server.login(username="root", password="admin password 1", scope="admin")
    r = server.http.post(f"/admin/users/{name}/disable", headers=bearer(admin["access_token"]))
    assert r.status_code == 200, r.text
    r = server.http.post(f"/admin/users/{name}/enable", headers=bearer(admin["access_token"]))
    assert r.status_code == 200


def test_ssf_8_1_2_paused_holds_disabled_drops(server: Server) -> None:
    token = ssf_token(server)
    sid = create(
        server, token, {"delivery": {"method": POLL}, "events_requested": [ACCOUNT_DISABLED]}
    )["stream_id"]

    def status(value: str) -> dict[str, Any]:
        r = server.http.post(
            "/ssf/status",
            json={"stream_id": sid, "status": value, "reason": "maintenance"},
            headers=bearer(token),
        )
        assert r.status_code == 200, r.text
        out: dict[str, Any] = r.json()
        return out

    assert status("paused") == {"stream_id": sid, "status": "paused", "reason": "maintenance"}
    _disable(server, "alice")
    assert poll(server, token, sid)["sets"] == {}  # held, not delivered
    status("enabled")
    assert len(poll(server, token, sid)["sets"]) == 1  # delivered once enabled again
    status("disabled")  # drops what it holds, and what comes while disabled
    _disable(server, "alice")
    status("enabled")
    assert poll(server, token, sid)["sets"] == {}
    r = server.http.get("/ssf/status", params={"stream_id": sid}, headers=bearer(token))
    assert r.json()["status"] == "enabled"
    r = server.http.post(
        "/ssf/status", json={"stream_id": sid, "status": "off"}, headers=bearer(token)
    )
    assert r.status_code == 400 and "status must be one of" in r.json()["error_description"]


def test_ssf_8_1_4_2_verification_event_then_429_within_the_interval(server: Server) -> None:
    token = ssf_token(server)
    sid = create(server, token, {"delivery": {"method": POLL}})["stream_id"]
    r = server.http.post(
        "/ssf/verify", json={"stream_id": sid, "state": "abc"}, headers=bearer(token)
    )
    assert r.status_code == 204
    (claims,) = events(server, token, sid)
    assert claims["events"] == {VERIFICATION: {"state": "abc"}}
    assert claims["sub_id"] == {"format": "opaque", "id": sid} and claims["aud"] == "svc"
    r = server.http.post("/ssf/verify", json={"stream_id": sid}, headers=bearer(token))
    assert r.status_code == 429 and int(r.headers["retry-after"]) > 0
    server.clock.advance(11)
    r = server.http.post("/ssf/verify", json={"stream_id": sid}, headers=bearer(token))
    assert r.status_code == 204


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"ack": "x"}, "ack"),
        ({"ack": [1]}, "ack"),
        ({"setErrs": []}, "setErrs"),
        ({"maxEvents": -1}, "maxEvents"),
        ({"maxEvents": True}, "maxEvents"),
        ({"returnImmediately": "yes"}, "returnImmediately"),
        ({"more": 1}, "unknown poll parameter 'more'"),
    ],
)
def test_rfc8936_bad_poll_requests_are_400(server: Server, body: Any, says: str) -> None:
    token = ssf_token(server)
    sid = create(server, token, {"delivery": {"method": POLL}})["stream_id"]
    r = server.http.post(f"/ssf/poll/{sid}", json=body, headers=bearer(token))
    assert r.status_code == 400 and says in r.json()["error_description"], r.text


def test_rfc8936_set_errors_leave_the_queue(server: Server) -> None:
    token = ssf_token(server)
    sid = create(
        server, token, {"delivery": {"method": POLL}, "events_requested": [ACCOUNT_DISABLED]}
    )["stream_id"]
    _disable(server, "alice")
    (jti,) = poll(server, token, sid)["sets"]
    errs = {jti: {"err": "invalid_key", "description": "cannot verify"}}
    assert poll(server, token, sid, setErrs=errs)["sets"] == {}


@pytest.fixture
def pushed(server_factory: Callable[..., Server]) -> tuple[Server, list[httpx.Request]]:
    server = server_factory(outbound_allow_private=True)
    seen: list[httpx.Request] = []
    answers = iter([400, 202])

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(next(answers, 202))

    server.runtime.outbox._transport = httpx.MockTransport(handler)

    async def stop_the_delivery_loop() -> None:  # the test drives deliver_due itself
        for task in server.runtime._tasks:
            if task.get_name() == "tokenward-outbox":
                task.cancel()

    server.run(stop_the_delivery_loop)
    return server, seen


def test_rfc8935_push_headers_and_a_rejection_is_not_retried(
    pushed: tuple[Server, list[httpx.Request]],
) -> None:
    server, seen = pushed
    token = ssf_token(server)
    create(
        server,
        token,
        {
            "delivery": {
                "method": PUSH,
                "endpoint_url": "http://127.0.0.1:9/events",
                "authorization_header": "Bearer receiver-secret",
            },
            "events_requested": [CREDENTIAL_CHANGE, ACCOUNT_DISABLED],
        },
    )
    _disable(server, "alice")  # the receiver answers 400: dropped, not retried
    server.run(server.runtime.outbox.deliver_due)
    assert len(seen) == 1
    server.clock.advance(600)
    server.run(server.runtime.outbox.deliver_due)
    assert len(seen) == 1
    assert server.run(server.runtime.outbox.pending) == []
    r = server.http.post("/admin/users/alice/password", json={"password": "another good pw"},
                         headers=bearer(server.login(username="root", password="admin password 1",
                                                     scope="admin")["access_token"]))  # fmt: skip
    assert r.status_code == 200
    server.run(server.runtime.outbox.deliver_due)
    request = seen[-1]
    assert request.headers["content-type"] == "application/secevent+jwt"
    assert request.headers["authorization"] == "Bearer receiver-secret"
    claims = verify_set(server.runtime.keyring.public_jwks(), request.content.decode())
    assert list(claims["events"]) == [CREDENTIAL_CHANGE]


def test_deleting_a_push_stream_cancels_its_pending_pushes(
    pushed: tuple[Server, list[httpx.Request]],
) -> None:
    server, _ = pushed
    token = ssf_token(server)
    stream = create(
        server,
        token,
        {
            "delivery": {"method": PUSH, "endpoint_url": "http://127.0.0.1:9/events"},
            "events_requested": [ACCOUNT_DISABLED],
        },
    )
    _disable(server, "alice")
    assert len(server.run(server.runtime.outbox.pending)) == 1
    r = server.http.delete(
        "/ssf/streams", params={"stream_id": stream["stream_id"]}, headers=bearer(token)
    )
    assert r.status_code == 204
    assert server.run(server.runtime.outbox.pending) == []


def test_a_2xx_is_sent_only_after_its_sets_are_stored(server: Server) -> None:
    token = ssf_token(server)
    create(server, token, {"delivery": {"method": POLL}, "events_requested": [SESSION_REVOKED]})

    async def broken(_: Any) -> int:
        raise OSError("store down")

    server.runtime.ssf.publish = broken  # type: ignore[method-assign]
    r = server.http.post("/logout", headers=bearer(server.login()["access_token"]))
    assert r.status_code == 503 and r.json()["error"] == "temporarily_unavailable"
    assert r.headers["retry-after"] == "1"


def test_requests_without_security_events_touch_no_stream(server: Server) -> None:
    """The transmitter adds no store I/O to requests that emit none of its events."""
    calls: list[Any] = []
    original = server.runtime.ssf.publish

    async def counting(batch: Any) -> int:
        calls.append(batch)
        return await original(batch)

    server.runtime.ssf.publish = counting  # type: ignore[method-assign]
    pair = server.login()
    assert server.refresh(pair["refresh_token"]).status_code == 200
    assert server.http.get("/userinfo", headers=bearer(pair["access_token"])).status_code == 200
    assert calls == []
    server.http.post("/logout", headers=bearer(pair["access_token"]))
    assert len(calls) == 1


def test_signals_for_maps_each_security_event() -> None:
    assert [s.event_type for s in signals_for("revoked", {"kind": "sub", "value": "a"})] == [
        SESSION_REVOKED,
        SESSIONS_REVOKED,
    ]
    assert signals_for("revoked", {"kind": "jti", "value": "x"}) == []
    assert signals_for("refreshed", {"sid": "s", "sub": "a"}) == []
    flag_only = {"sid": "s", "sub": "a", "actions": ["flag"], "scores": {"x": 1.0}}
    assert signals_for("risk_decision", flag_only) == []
    (notify,) = signals_for("risk_decision", {**flag_only, "actions": ["notify"], "sid": None})
    assert notify.event == {"principal": "USER", "current_level": "HIGH", "risk_reason": ""}
    (reset,) = signals_for("password_changed", {"sub": "a", "reason": "admin_reset"})
    assert reset.event["initiating_entity"] == "admin"


def test_pending_pushes_are_outbox_records(pushed: tuple[Server, list[httpx.Request]]) -> None:
    server, _ = pushed
    token = ssf_token(server)
    create(
        server,
        token,
        {
            "delivery": {"method": PUSH, "endpoint_url": "http://127.0.0.1:9/events"},
            "events_requested": [ACCOUNT_DISABLED],
        },
    )
    _disable(server, "alice")
    (rec,) = server.run(server.runtime.outbox.pending)
    assert rec.kind == KIND and rec.data["kind"] == "ssf_push"


def test_a_waiting_poll_counts_against_the_feed_stream_caps(
    server_factory: Callable[..., Server],
) -> None:
    server = server_factory(feed_max_streams_per_client=1)
    token = ssf_token(server)
    sid = create(server, token, {"delivery": {"method": POLL}})["stream_id"]
    server.runtime.feed_streams.acquire("svc")  # svc already waits somewhere
    r = server.http.post(f"/ssf/poll/{sid}", json={}, headers=bearer(token))
    assert r.status_code == 429 and int(r.headers["retry-after"]) > 0
    # one that does not wait takes no slot
    assert poll(server, token, sid) == {"sets": {}, "moreAvailable": False}


def test_ssf_8_1_1_a_poll_stream_nobody_polls_for_a_day_is_deleted(server: Server) -> None:
    token = ssf_token(server)
    body = {"delivery": {"method": POLL}, "events_requested": [ACCOUNT_DISABLED]}
    gone = create(server, token, body)
    kept = create(server, token, body)
    assert gone["inactivity_timeout"] == 86400
    for _ in range(4):  # the receiver of `kept` polls every 8 hours
        server.clock.advance(8 * 3600)
        token = ssf_token(server)
        poll(server, token, kept["stream_id"])
    _disable(server, "alice")  # publishing notices the stream nobody polled for 32 hours
    url = "/ssf/streams"
    r = server.http.get(url, params={"stream_id": gone["stream_id"]}, headers=bearer(token))
    assert r.status_code == 404
    assert len(poll(server, token, kept["stream_id"])["sets"]) == 1
