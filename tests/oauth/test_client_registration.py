"""`tokenward client add … --redirect-uris … [--first-party] [--post-logout-redirect-uris …]
[--backchannel-logout-uri URI]` and the same through the admin API."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
from typer.testing import CliRunner

from support.server import ADMIN_PW, Server
from tokenward.cli import app
from tokenward.store import Client
from tokenward.store.sql import SQLStore


@pytest.fixture(autouse=True)
def _cheap_argon(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TOKENWARD_PASSWORD_MEMORY_COST", "8")
    monkeypatch.setenv("TOKENWARD_PASSWORD_TIME_COST", "1")
    yield
    structlog.reset_defaults()


def test_cli_client_add_with_redirect_uris_first_party_and_logout_uris(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path}/tw.db"
    runner = CliRunner()
    r = runner.invoke(
        app,
        [
            "client", "add", "spa", "--public",
            "--grants", "authorization_code,refresh_token",
            "--redirect-uris", "https://spa.example/cb,http://127.0.0.1/cb",
            "--first-party",
            "--post-logout-redirect-uris", "https://spa.example/bye",
            "--backchannel-logout-uri", "https://spa.example/bcl",
            "--store", url,
        ],
    )  # fmt: skip
    assert r.exit_code == 0, r.output

    async def read() -> Client | None:
        async with SQLStore(url) as st:
            return await st.get_client("spa")

    c = asyncio.run(read())
    assert c is not None and c.first_party and c.public
    assert c.redirect_uris == ("https://spa.example/cb", "http://127.0.0.1/cb")
    assert c.post_logout_redirect_uris == ("https://spa.example/bye",)
    assert c.backchannel_logout_uri == "https://spa.example/bcl"
    listed = runner.invoke(app, ["client", "list", "--store", url])
    assert "first-party" in listed.output


def test_cli_refuses_a_fragment_or_http_redirect_with_exit_2(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/tw.db"
    runner = CliRunner()
    for uri in ("https://spa.example/cb#x", "http://spa.example/cb"):
        r = runner.invoke(
            app,
            [
                "client", "add", "spa", "--public", "--grants", "authorization_code",
                "--redirect-uris", uri, "--store", url,
            ],
        )  # fmt: skip
        assert r.exit_code == 2, r.output
        assert "Traceback" not in r.output and "redirect URI" in r.output
    r = runner.invoke(
        app, ["client", "add", "spa", "--public", "--grants", "authorization_code", "--store", url]
    )
    assert r.exit_code == 2 and "--redirect-uris" in r.output


def test_admin_api_registers_and_lists_the_oauth_fields(server: Server) -> None:
    tok = server.login(username="root", password=ADMIN_PW, scope="admin")
    admin = {"Authorization": f"Bearer {tok['access_token']}"}
    body = {
        "client_id": "web",
        "public": True,
        "grants": ["authorization_code", "refresh_token"],
        "redirect_uris": ["https://web.example/cb"],
        "first_party": True,
        "post_logout_redirect_uris": ["https://web.example/bye"],
        "backchannel_logout_uri": "https://web.example/bcl",
    }
    r = server.http.post("/admin/clients", headers=admin, json=body)
    assert r.status_code == 201, r.text
    out = r.json()
    assert out["redirect_uris"] == ["https://web.example/cb"] and out["first_party"] is True
    listed = {c["client_id"]: c for c in server.http.get("/admin/clients", headers=admin).json()}
    assert listed["web"]["backchannel_logout_uri"] == "https://web.example/bcl"
    assert listed["web"]["post_logout_redirect_uris"] == ["https://web.example/bye"]
    bad = server.http.post(
        "/admin/clients",
        headers=admin,
        json={**body, "client_id": "bad", "redirect_uris": ["http://evil.example/cb"]},
    )
    assert bad.status_code == 400 and bad.json()["error"] == "invalid_request"
