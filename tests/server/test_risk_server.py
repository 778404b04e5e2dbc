"""The risk engine inside the server, in process (a frozen clock, the memory store; the caller's
address set by ``X-Forwarded-For`` from the test client, a trusted proxy): what a decision ends,
and what the engine keeps and for how long."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

from support.server import ALICE_PW, PEER, Server, bearer
from tokenward.server.risk import RiskEngine

FULL_UA = (
    "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0 "
    "(build 4f8e2c-secret-looking-suffix)"
)


def at(address: str, **headers: str) -> dict[str, str]:
    return {"X-Forwarded-For": address, **headers}


def strings(obj: Any, seen: set[int] | None = None) -> Iterator[str]:
    """Every string (and bytes, decoded) reachable from ``obj``'s data: the tables, their
    entries, the dataclasses in them. Functions (the clock, the prefix helper) are skipped."""
    seen = set() if seen is None else seen
    if id(obj) in seen or callable(obj):
        return
    seen.add(id(obj))
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, bytes | bytearray):
        yield obj.decode("latin-1")
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from strings(k, seen)
            yield from strings(v, seen)
    elif isinstance(obj, list | tuple | set | frozenset | deque):
        for v in obj:
            yield from strings(v, seen)
    else:
        for name in getattr(type(obj), "__slots__", ()):
            yield from strings(getattr(obj, name, None), seen)
        for v in getattr(obj, "__dict__", {}).values():
            yield from strings(v, seen)


def test_no_signal_stores_a_password_a_token_or_a_full_user_agent_longer_than_needed(
    server_factory: Callable[..., Server],
) -> None:
    server = server_factory(trusted_proxies=PEER, risk_spraying_usernames=2)
    http, risk = server.http, server.runtime.risk
    assert isinstance(risk, RiskEngine)
    sprayed = "Spring2026!sprayed-password"
    browser = {"User-Agent": FULL_UA}

    def token(form: dict[str, str], address: str) -> Any:
        form = {"client_id": "app", **form}
        return http.post("/token", data=form, headers=at(address, **browser))

    for name in ("victim1", "victim2", "alice"):  # failed sign-ins: stuffing and spraying input
        r = token({"grant_type": "password", "username": name, "password": sprayed}, "203.0.113.5")
        assert r.status_code == 400, r.text
    r = token({"grant_type": "password", "username": "alice", "password": ALICE_PW}, "192.0.2.7")
    assert r.status_code == 200, r.text
    first = r.json()
    r = token({"grant_type": "refresh_token", "refresh_token": first["refresh_token"]}, "192.0.2.7")
    assert r.status_code == 200, r.text
    body = r.json()
    r = http.get("/userinfo", headers={**bearer(body["access_token"]), **at("203.0.113.9")})
    assert r.status_code == 200  # concurrent_use, flagged by default
    kept = list(strings(risk))
    assert kept, "the walk found nothing: it would prove nothing"
    assert any(s == "Firefox" for s in kept)  # the family of the user-agent is kept ...
    forbidden = [sprayed, ALICE_PW, FULL_UA, "Gecko/", "4f8e2c", "victim1", "alice"]
    forbidden += [
        first["access_token"],
        first["refresh_token"],
        body["access_token"],
        body["refresh_token"],
    ]
    for secret in forbidden:  # ... never the rest of it, a password, a token or a username
        assert not [s for s in kept if secret in s], secret
    assert risk.sizes()["families"] == 1 and risk.sizes()["passwords"] == 1
    # past the retention (and the windows) the periodic purge leaves nothing
    server.clock.advance(risk.policy.retention + 1)
    risk.purge()
    assert set(risk.sizes().values()) == {0}


def test_revoke_subject_ends_every_session_and_every_browser_sign_in_of_the_user(
    server_factory: Callable[..., Server],
) -> None:
    server = server_factory(trusted_proxies=PEER, risk_concurrent_use="flag,revoke_subject")
    rt = server.runtime

    async def browser_sign_in() -> str:
        session, _ = await rt.signins.start("alice", ip="192.0.2.7", user_agent=None)
        return session.sid

    signin = server.run(browser_sign_in)
    laptop, phone = server.login(), server.login()
    r = server.http.post(
        "/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": laptop["refresh_token"],
            "client_id": "app",
        },
        headers=at("192.0.2.7"),
    )
    assert r.status_code == 200, r.text
    access = r.json()["access_token"]
    r = server.http.get("/userinfo", headers={**bearer(access), **at("203.0.113.9")})
    assert r.status_code == 401
    assert r.json()["error_description"].startswith("session ended: used from two places")
    r = server.refresh(phone["refresh_token"])  # the user's other session ended too
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"
    assert server.run(rt.signins.get, signin) is None
