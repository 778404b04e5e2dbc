"""The risk engine over real sockets: ``tokenward serve`` on SQLite, clients bound to loopback
addresses in different /24 prefixes (``127.0.1.2``, ``127.0.2.2``, ...) play different places;
the decisions are read back from the server's JSON log (the security events)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from support.serve import Served, free_port, serve
from support.server import ADMIN_PW

CONSOLE = "tokenward-console"
PW = "a long user password"
CHEAP = {
    "TOKENWARD_PASSWORD_TIME_COST": "1",
    "TOKENWARD_PASSWORD_MEMORY_COST": "1024",
    "TOKENWARD_ADMIN_PASSWORD": ADMIN_PW,
    "TOKENWARD_LOGIN_LIMIT_PER_IP": "1000/minute",
}


def _serve(tmp: Path, extra: dict[str, str]) -> Iterator[Served]:
    port = free_port()
    settings = {**CHEAP, "TOKENWARD_ISSUER": f"http://127.0.0.1:{port}", **extra}
    with serve(settings, cwd=tmp, port=port) as served:
        yield served


@pytest.fixture(scope="module")
def defaults(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """The default policy."""
    yield from _serve(tmp_path_factory.mktemp("risk-default"), {})


@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """Concurrent use ends the session; fast refreshing asks for a new sign-in; a 4 s block;
    spraying flagged after 5 usernames."""
    yield from _serve(
        tmp_path_factory.mktemp("risk-strict"),
        {
            "TOKENWARD_RISK_CONCURRENT_USE": "flag,revoke_session",
            "TOKENWARD_RISK_REFRESH_VELOCITY": "flag,step_up",
            "TOKENWARD_RISK_VELOCITY_MAX": "3",
            "TOKENWARD_RISK_BLOCK_SECONDS": "4",
            "TOKENWARD_RISK_SPRAYING_USERNAMES": "5",
        },
    )


def client(served: Served, address: str) -> httpx.Client:
    return httpx.Client(
        base_url=served.base,
        transport=httpx.HTTPTransport(local_address=address),
        timeout=20,
    )


def add_user(served: Served, name: str) -> None:
    with client(served, "127.0.0.1") as http:
        r = http.post("/login", json={"username": "admin", "password": ADMIN_PW, "scope": "admin"})
        assert r.status_code == 200, r.text
        token = r.json()["access_token"]
        r = http.post(
            "/admin/users",
            json={"username": name, "password": PW},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert r.status_code in (200, 201), r.text


def login(http: httpx.Client, name: str, password: str = PW) -> httpx.Response:
    return http.post("/login", json={"username": name, "password": password})


def refresh(http: httpx.Client, token: str) -> httpx.Response:
    return http.post(
        "/token",
        data={"grant_type": "refresh_token", "refresh_token": token, "client_id": CONSOLE},
    )


def events(served: Served, name: str = "risk_decision") -> list[dict[str, Any]]:
    out = []
    for line in served.log_path.read_text(errors="replace").splitlines():
        if name in line and line.startswith("{"):
            try:
                record = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            if record.get("event") == name:
                out.append(record)
    return out


def wait_for_event(served: Served, pred: Any, name: str = "risk_decision") -> dict[str, Any]:
    deadline = time.monotonic() + 5
    while True:
        found = [e for e in events(served, name) if pred(e)]
        if found:
            return found[-1]
        if time.monotonic() > deadline:
            raise AssertionError(f"no matching {name} event in:\n{served.log_tail()}")
        time.sleep(0.05)  # the log line is written by another process


def test_same_family_from_two_prefixes_ends_the_session_and_the_event_says_why(
    strict: Served,
) -> None:
    add_user(strict, "carol")
    with client(strict, "127.0.1.2") as home, client(strict, "127.0.2.2") as thief:
        r = login(home, "carol")
        assert r.status_code == 200, r.text
        first = r.json()
        r = refresh(home, first["refresh_token"])
        assert r.status_code == 200, r.text
        stolen = r.json()["refresh_token"]
        r = refresh(thief, stolen)
        assert r.status_code == 400
        assert r.json()["error"] == "invalid_grant"
        assert "two places" in r.json()["error_description"]
        # revoke_session denylists the sid: the session's access tokens stop working too
        r = home.get("/userinfo", headers={"Authorization": f"Bearer {first['access_token']}"})
        assert r.status_code == 401
        # carol signs in again and sees why her session ended
        again = login(home, "carol").json()["access_token"]
        r = home.get("/sessions/notices", headers={"Authorization": f"Bearer {again}"})
        assert r.status_code == 200
        assert r.json()[0]["text"].startswith("session ended: used from two places")
    event = wait_for_event(strict, lambda e: e.get("sub") == "carol")
    assert event["stage"] == "refresh"
    assert event["actions"] == ["flag", "revoke_session"]
    assert event["scores"] == {"concurrent_use": 1.0}
    assert "127.0.1.0/24" in event["reason"] and "127.0.2.0/24" in event["reason"]


def test_a_user_moving_between_networks_is_not_logged_out_by_the_defaults(
    defaults: Served,
) -> None:
    add_user(defaults, "dave")
    with client(defaults, "127.0.1.2") as wifi, client(defaults, "127.0.2.2") as mobile:
        r = login(wifi, "dave")
        assert r.status_code == 200, r.text
        token = r.json()["refresh_token"]
        for http in (mobile, wifi, mobile, wifi):
            r = refresh(http, token)
            assert r.status_code == 200, r.text
            token = r.json()["refresh_token"]
        r = wifi.get("/userinfo", headers={"Authorization": f"Bearer {r.json()['access_token']}"})
        assert r.status_code == 200
    # the quick switches were seen and flagged for an operator, and nothing more
    event = wait_for_event(defaults, lambda e: e.get("sub") == "dave")
    assert event["actions"] == ["flag"]
    assert "concurrent_use" in event["scores"]


def test_step_up_revokes_the_refresh_token_but_access_tokens_live_on(strict: Served) -> None:
    add_user(strict, "erin")
    with client(strict, "127.0.6.2") as http:
        r = login(http, "erin")
        assert r.status_code == 200, r.text
        body = r.json()
        token = body["refresh_token"]
        statuses = []
        for _ in range(4):
            r = refresh(http, token)
            statuses.append(r.status_code)
            if r.status_code != 200:
                break
            body = r.json()
            token = body["refresh_token"]
        assert statuses == [200, 200, 200, 400]
        assert r.json()["error"] == "invalid_grant"
        assert "sign in again" in r.json()["error_description"]
        assert "refreshes in" in r.json()["error_description"]
        assert refresh(http, token).status_code == 400  # the family is gone
        r = http.get("/userinfo", headers={"Authorization": f"Bearer {body['access_token']}"})
        assert r.status_code == 200  # not denylisted: lives out its lifetime
    event = wait_for_event(strict, lambda e: e.get("sub") == "erin")
    assert "step_up" in event["actions"]
    assert event["signals"][0]["name"] == "refresh_velocity"


def test_fifty_failed_sign_ins_across_fifty_usernames_block_the_prefix_for_the_configured_time(
    strict: Served,
) -> None:
    add_user(strict, "frank")
    with client(strict, "127.0.3.2") as attacker, client(strict, "127.0.4.2") as other:
        statuses = [login(attacker, f"victim{i}", f"guess {i}").status_code for i in range(50)]
        assert statuses[:20] == [400] * 20  # wrong passwords, until the 20th username
        assert set(statuses[20:]) == {429}  # then the whole prefix is refused
        r = login(attacker, "frank")  # even with the right password
        assert r.status_code == 429
        retry = int(r.headers["Retry-After"])
        assert 1 <= retry <= 5
        assert "blocked" in r.json()["error_description"]
        assert login(other, "frank").status_code == 200  # another prefix still signs in
        time.sleep(retry + 0.5)  # the configured block time passes
        assert login(attacker, "frank").status_code == 200
    event = wait_for_event(strict, lambda e: "credential_stuffing" in e.get("scores", {}))
    assert event["actions"] == ["flag", "block_prefix"]
    assert event["prefix"] == "127.0.3.0/24"


def test_password_spraying_is_seen_by_a_keyed_hash_and_the_password_is_never_logged(
    strict: Served,
) -> None:
    sprayed = "Winter2026!sprayed"
    with client(strict, "127.0.5.2") as http:
        for i in range(5):
            assert login(http, f"spray{i}", sprayed).status_code == 400
    event = wait_for_event(strict, lambda e: "password_spraying" in e.get("scores", {}))
    assert event["actions"] == ["flag"]
    assert "5 usernames" in event["reason"]
    assert sprayed not in strict.log_path.read_text(errors="replace")
