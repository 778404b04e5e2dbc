"""The guard behind a real ``tokenward serve`` as an SSF transmitter: each guard process creates
its own RFC 8936 poll stream with a client_credentials token carrying the ``ssf`` scope; a
logout and a logout-all reach every guard as signed SETs and the token is refused."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from support.serve import Served, free_port, serve
from support.server import ADMIN_PW
from support.wait import wait_until
from tokenward.errors import RevokedToken
from tokenward.guard import SSFPoll, Verifier
from tokenward.jws import b64url_decode, parse_json_object

PW = "a long user password"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    port = free_port()
    settings = {
        "TOKENWARD_ISSUER": f"http://127.0.0.1:{port}",
        "TOKENWARD_PASSWORD_TIME_COST": "1",
        "TOKENWARD_PASSWORD_MEMORY_COST": "1024",
        "TOKENWARD_ADMIN_PASSWORD": ADMIN_PW,
        "TOKENWARD_LOGIN_LIMIT_PER_IP": "1000/minute",
        "TOKENWARD_LOGIN_LIMIT_PER_ACCOUNT": "1000/minute",
        "TOKENWARD_FEED_MAX_WAIT": "5",
    }
    with serve(settings, cwd=tmp_path_factory.mktemp("ssf-guard"), port=port) as s:
        with httpx.Client(base_url=s.base, timeout=20) as http:
            creds = {"username": "admin", "password": ADMIN_PW, "scope": "admin"}
            r = http.post("/login", json=creds)
            admin = {"Authorization": f"Bearer {r.json()['access_token']}"}
            r = http.post(
                "/admin/clients",
                json={"client_id": "orders-guard", "grants": ["client_credentials"],
                      "scopes": ["ssf"], "resources": [s.base]},
                headers=admin,
            )  # fmt: skip
            assert r.status_code in (200, 201), r.text
            s.secret = r.json()["client_secret"]  # type: ignore[attr-defined]
            for name in ("alice", "bob"):
                user = {"username": name, "password": PW}
                r = http.post("/admin/users", json=user, headers=admin)
                assert r.status_code in (200, 201), r.text
        yield s


def login(s: Served, name: str) -> dict[str, Any]:
    r = httpx.post(f"{s.base}/login", json={"username": name, "password": PW})
    assert r.status_code == 200, r.text
    return dict(r.json())


def aud_of(token: str) -> str:
    aud = parse_json_object(b64url_decode(token.split(".")[1]), "payload")["aud"]
    return str(aud if isinstance(aud, str) else aud[0])


def guard(s: Served, audience: str) -> Verifier:
    return Verifier(
        jwks_url=f"{s.base}/.well-known/jwks.json",
        issuer=s.base,
        audience=audience,
        revocation=SSFPoll(
            issuer=s.base,
            token_url=f"{s.base}/token",
            client_id="orders-guard",
            client_secret=s.secret,  # type: ignore[attr-defined]
        ),
    )


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def streams_of(s: Served) -> list[Any]:
    """The guard client's streams, as the transmitter lists them."""
    with httpx.Client(base_url=s.base) as http:
        form = {"grant_type": "client_credentials", "scope": "ssf"}
        auth = ("orders-guard", s.secret)  # type: ignore[attr-defined]
        token = http.post("/token", data=form, auth=auth).json()["access_token"]
        return list(http.get("/ssf/streams", headers=bearer(token)).json())


def refused(v: Verifier, token: str) -> bool:
    try:
        v.verify(token)
    except RevokedToken:
        return True
    return False


def test_a_logout_reaches_every_guard_process_by_ssf_poll(served: Served) -> None:
    alice = login(served, "alice")
    bob = login(served, "bob")
    audience = aud_of(alice["access_token"])
    workers = [guard(served, audience).start() for _ in range(2)]
    try:
        for w in workers:
            assert w.verify(alice["access_token"]).sub
            assert w.status()["revocations"]["ssf"]["stream_id"]
        r = httpx.post(f"{served.base}/logout", headers=bearer(alice["access_token"]))
        assert r.status_code == 200, r.text
        for w in workers:
            assert wait_until(lambda w=w: refused(w, alice["access_token"]))
        assert workers[0].verify(bob["access_token"]).sub  # another user's session is untouched
        r = httpx.post(f"{served.base}/logout-all", headers=bearer(bob["access_token"]))
        assert r.status_code == 200, r.text
        assert wait_until(lambda: refused(workers[1], bob["access_token"]))
        assert len(streams_of(served)) == 2  # one stream per guard process
    finally:
        for w in workers:
            w.close()
    assert streams_of(served) == []  # closing a guard deleted its stream
