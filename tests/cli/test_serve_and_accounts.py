"""CLI commands that touch the store create it on first use (before any ``serve``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
from typer.testing import CliRunner

from tokenward.cli import app


@pytest.fixture(autouse=True)
def _cheap_argon(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TOKENWARD_PASSWORD_MEMORY_COST", "8")
    monkeypatch.setenv("TOKENWARD_PASSWORD_TIME_COST", "1")
    yield
    structlog.reset_defaults()  # `serve` configures logging globally; never leak it


def test_user_and_client_commands_before_first_serve(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/fresh/tw.db"
    runner = CliRunner()
    r = runner.invoke(
        app,
        ["user", "add", "bob", "--password-stdin", "--admin", "--store", url],
        input="s3cret-pw\n",
    )
    assert r.exit_code == 0, r.output
    assert (tmp_path / "fresh" / "tw.db").is_file()
    listed = runner.invoke(app, ["user", "list", "--store", url])
    assert "bob" in listed.output and "admin" in listed.output  # --admin: the admin role
    dup = runner.invoke(
        app, ["user", "add", "bob", "--password-stdin", "--store", url], input="x\n"
    )
    assert dup.exit_code == 2 and "Traceback" not in dup.output
    undefined = runner.invoke(
        app,
        [
            "client",
            "add",
            "svc",
            "--grants",
            "client_credentials",
            "--scopes",
            "read",
            "--store",
            url,
        ],
    )
    assert undefined.exit_code == 2 and "no resource defines the scope 'read'" in undefined.output
    api = runner.invoke(
        app, ["resource", "add", "api", "--name", "API", "--scopes", "read", "--store", url]
    )
    assert api.exit_code == 0, api.output
    clash = runner.invoke(
        app,
        ["resource", "add", "https://b.example", "--name", "B", "--scopes", "read", "--store", url],
    )
    assert clash.exit_code == 2 and "already defined by api" in clash.output
    c = runner.invoke(
        app,
        [
            "client",
            "add",
            "svc",
            "--grants",
            "client_credentials",
            "--resources",
            "api",
            "--scopes",
            "read",
            "--store",
            url,
        ],
    )
    assert c.exit_code == 0 and "client_secret:" in c.output
    bad = runner.invoke(
        app, ["client", "add", "x", "--public", "--grants", "client_credentials", "--store", url]
    )
    assert bad.exit_code == 2
    last = runner.invoke(app, ["user", "disable", "bob", "--store", url])
    assert last.exit_code == 2 and "last active admin" in last.output  # the only admin
    r = runner.invoke(
        app,
        ["user", "add", "carol", "--password-stdin", "--admin", "--store", url],
        input="carol-pw-2\n",
    )
    assert r.exit_code == 0, r.output
    assert runner.invoke(app, ["user", "disable", "bob", "--store", url]).exit_code == 0
    missing = runner.invoke(app, ["session", "revoke", "nope", "--store", url])
    assert missing.exit_code == 2


def test_serve_refuses_a_wrong_setting_with_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOKENWARD_SIGNING_ALG", "none")
    r = CliRunner().invoke(app, ["serve"])
    assert r.exit_code == 2
    assert "TOKENWARD_SIGNING_ALG: unsupported algorithm" in r.output
    assert "Traceback" not in r.output


def test_serve_with_shared_store_needs_kek(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TOKENWARD_KEY_ENCRYPTION_KEY", raising=False)
    r = CliRunner().invoke(app, ["serve", "--store", "redis://127.0.0.1:1/0"])
    assert r.exit_code == 2
    assert "TOKENWARD_KEY_ENCRYPTION_KEY: required with a shared store" in r.output


def test_client_dpop_required_or_optional_from_the_cli(tmp_path: Path) -> None:
    # RFC 9449 §5.2 dpop_bound_access_tokens: `client add|set ... --dpop required|optional`
    url = f"sqlite:///{tmp_path}/tw.db"
    runner = CliRunner()
    r = runner.invoke(
        app,
        ["client", "add", "spa", "--public", "--grants", "password,refresh_token",
         "--dpop", "required", "--store", url],
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "│ required │" in runner.invoke(app, ["client", "list", "--store", url]).output
    r = runner.invoke(app, ["client", "set", "spa", "--dpop", "optional", "--store", url])
    assert r.exit_code == 0 and "optional" in r.output
    listed = runner.invoke(app, ["client", "list", "--store", url]).output
    assert "│ optional │" in listed and "│ required │" not in listed
    bad = runner.invoke(app, ["client", "set", "spa", "--dpop", "always", "--store", url])
    assert bad.exit_code == 2 and "Traceback" not in bad.output
    unknown = runner.invoke(app, ["client", "set", "nope", "--dpop", "required", "--store", url])
    assert unknown.exit_code == 2 and "unknown client" in unknown.output
