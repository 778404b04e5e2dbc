"""The CLI as an operator scripts it: whole ids, JSON output, read-only commands that create
nothing, usable client grants, password and admin safety, the store's keys and the KEK."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from support.server import cheap_hasher
from tokenward.cli import app
from tokenward.server import create_app
from tokenward.server.settings import Settings

KEK = "A" * 43  # 32 zero-ish bytes, base64url: a test key
ADMIN_PW = "operator admin pw"
# the sign-in budgets are not under test here (other tests in this process sign in too)
LIMITS = {"login_limit_per_account": "1000/minute", "login_limit_per_ip": "1000/minute"}


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    for name in ("TOKENWARD_STORE_URL", "TOKENWARD_KEY_ENCRYPTION_KEY", "TOKENWARD_KEK"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    yield
    structlog.reset_defaults()


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def cli(runner: CliRunner, *args: str, input: str | None = None, width: int = 60) -> Any:
    return runner.invoke(app, list(args), input=input, terminal_width=width)


@pytest.fixture
def url(tmp_path: Path, runner: CliRunner) -> str:
    """A SQLite store with an admin, keys and one browser session with device + user agent."""
    url = f"sqlite:///{tmp_path}/store/tw.db"
    r = cli(runner, "user", "add", "root", "--admin", "--password-stdin", "--store", url,
            input=ADMIN_PW + "\n")  # fmt: skip
    assert r.exit_code == 0, r.output
    settings = Settings(store_url=url, issuer="https://auth.test", cookie_secure=True, **LIMITS)
    with TestClient(create_app(settings, password_hasher=cheap_hasher())) as http:
        r = http.post(
            "/login",
            json={"username": "root", "password": ADMIN_PW, "device": "Kitchen tablet"},
            headers={"User-Agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0"},
        )
        assert r.status_code == 200, r.text
    return url


def test_session_list_never_truncates_ids_and_shows_device_and_user_agent(
    runner: CliRunner, url: str
) -> None:
    r = cli(runner, "session", "list", "root", "--store", url, "--json")
    assert r.exit_code == 0, r.output
    sessions = json.loads(r.stdout)
    sid = sessions[0]["session_id"]
    assert sessions[0]["device"] == "Kitchen tablet"
    assert "Firefox/140.0" in sessions[0]["user_agent"]
    table = cli(runner, "session", "list", "root", "--store", url, width=40)
    assert table.exit_code == 0
    assert sid in table.stdout  # whole, on a 40-column terminal
    assert "Kitchen tablet" in table.stdout and "Firefox/140.0" in table.stdout
    # "--": a sid may start with "-"
    revoked = cli(runner, "session", "revoke", "--store", url, "--", sid)
    assert revoked.exit_code == 0, revoked.output


def test_every_list_command_has_json_and_output_options(runner: CliRunner, url: str) -> None:
    commands = [
        ["user", "list"],
        ["client", "list"],
        ["session", "list", "root"],
        ["keys", "list"],
    ]
    for command in commands:
        for flag in (["--json"], ["--output", "json"], ["-o", "json"]):
            r = cli(runner, *command, "--store", url, *flag)
            assert r.exit_code == 0, (command, r.output)
            rows = json.loads(r.stdout)
            assert isinstance(rows, list) and rows, command
        table = cli(runner, *command, "--store", url, "--output", "table")
        assert table.exit_code == 0 and not table.stdout.lstrip().startswith("[")


def test_read_only_commands_never_create_a_store_and_name_the_store_opened(
    runner: CliRunner, tmp_path: Path, url: str
) -> None:
    for command in (["user", "list"], ["client", "list"], ["session", "list", "x"],
                    ["keys", "list"]):  # fmt: skip
        r = cli(runner, *command)  # default store, relative to this empty directory
        assert r.exit_code == 2, (command, r.output)
        assert "no store at" in r.output and "working directory" in r.output
    assert not (tmp_path / "var").exists()
    ok = cli(runner, "user", "list", "--store", url)
    assert f"store: sqlite:///{tmp_path}/store/tw.db" in ok.stderr


def test_store_help_shows_the_default(runner: CliRunner) -> None:
    for command in (["user", "list"], ["client", "add"], ["session", "list"], ["keys", "list"],
                    ["serve"]):  # fmt: skip
        r = cli(runner, *command, "--help", width=200)
        text = re.sub(r"[\s│]+", " ", r.output)  # the help box wraps lines
        assert "sqlite:///var/tokenward.db" in text, command
        assert "working directory" in text, command


def test_help_reads_cleanly_without_type_metavars(runner: CliRunner) -> None:
    for command in (["client", "add"], ["user", "add"], ["session", "list"], ["serve"],
                    ["keys", "rekey"], []):  # fmt: skip
        r = cli(runner, *command, "--help", width=200)
        assert r.exit_code == 0
        assert not re.search(r"<(bool|str|int|float|path)>", r.output), r.output
        assert "{" not in r.output, r.output


def test_client_add_requires_grants_and_refuses_unusable_sets(runner: CliRunner, url: str) -> None:
    missing = cli(runner, "client", "add", "app", "--store", url)
    assert missing.exit_code == 2 and "--grants" in missing.output
    only_refresh = cli(runner, "client", "add", "app", "--grants", "refresh_token", "--store", url)
    assert only_refresh.exit_code == 2
    assert "cannot obtain a first token" in only_refresh.output
    ok = cli(runner, "client", "add", "app", "--public", "--grants", "password,refresh_token",
             "--store", url)  # fmt: skip
    assert ok.exit_code == 0, ok.output


def test_version_option(runner: CliRunner) -> None:
    from tokenward import __version__

    r = cli(runner, "--version")
    assert r.exit_code == 0 and r.stdout.strip() == f"tokenward {__version__}"


def test_user_passwd_password_stdin_sets_the_password_and_ends_sessions(
    runner: CliRunner, url: str
) -> None:
    r = cli(runner, "user", "passwd", "root", "--password-stdin", "--store", url,
            input="a brand new pw\n")  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "revoked 1 session(s)" in r.stdout
    listed = json.loads(cli(runner, "session", "list", "root", "--store", url, "--json").stdout)
    assert listed == []
    missing = cli(runner, "user", "passwd", "nobody", "--password-stdin", "--store", url,
                  input="a brand new pw\n")  # fmt: skip
    assert missing.exit_code == 2 and "nobody" in missing.output


def test_user_remove_deletes_the_user_and_never_the_last_admin(runner: CliRunner, url: str) -> None:
    last = cli(runner, "user", "remove", "root", "--yes", "--store", url)
    assert last.exit_code == 2 and "last active admin" in last.output
    cli(runner, "user", "add", "bob", "--password-stdin", "--store", url, input="bob password 9\n")
    r = cli(runner, "user", "remove", "bob", "--yes", "--store", url)
    assert r.exit_code == 0, r.output
    users = json.loads(cli(runner, "user", "list", "--store", url, "--json").stdout)
    assert [u["username"] for u in users] == ["root"]


@pytest.mark.parametrize(
    ("password", "reason"),
    [("short1", "at least 8"), ("password1", "most common"), ("Qwertyuiop", "most common")],
)
def test_password_policy_is_one_policy_for_cli_and_api(
    runner: CliRunner, url: str, password: str, reason: str
) -> None:
    r = cli(runner, "user", "add", "weak", "--password-stdin", "--store", url,
            input=password + "\n")  # fmt: skip
    assert r.exit_code == 2 and reason in r.output, r.output
    settings = Settings(store_url=url, issuer="https://auth.test", **LIMITS)
    with TestClient(create_app(settings, password_hasher=cheap_hasher())) as http:
        tok = http.post(
            "/token",
            data={"grant_type": "password", "client_id": "tokenward-console",
                  "username": "root", "password": ADMIN_PW, "scope": "admin"},
        ).json()["access_token"]  # fmt: skip
        auth = {"Authorization": f"Bearer {tok}"}
        api = http.post(
            "/admin/users", json={"username": "weak", "password": password}, headers=auth
        )
        assert api.status_code == 400 and api.json()["error"] == "invalid_request"
        if len(password) >= 8:  # the API's schema takes it; the policy refuses it
            assert reason in api.json()["error_description"]


def test_keys_list_rotate_retire_act_on_the_stores_keys(runner: CliRunner, url: str) -> None:
    before = json.loads(cli(runner, "keys", "list", "--store", url, "--json").stdout)
    active = next(k["kid"] for k in before if k["state"] == "active")
    r = cli(runner, "keys", "rotate", "--store", url)
    assert r.exit_code == 0, r.output
    after = {k["kid"]: k["state"] for k in
             json.loads(cli(runner, "keys", "list", "--store", url, "--json").stdout)}  # fmt: skip
    assert after[active] == "retired"
    refused = cli(runner, "keys", "retire", next(k for k, s in after.items() if s == "active"),
                  "--store", url)  # fmt: skip
    assert refused.exit_code == 2 and "only a retired key" in refused.output
    r = cli(runner, "keys", "retire", active, "--store", url)
    assert r.exit_code == 0, r.output
    final = json.loads(cli(runner, "keys", "list", "--store", url, "--json").stdout)
    assert active not in {k["kid"] for k in final}


def test_keys_store_and_keys_file_are_exclusive_and_neither_means_the_settings_store(
    runner: CliRunner, url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    keyfile = tmp_path / "k.json"
    assert cli(runner, "keys", "generate", "--out", str(keyfile)).exit_code == 0
    both = cli(runner, "keys", "list", "--store", url, "--keys", str(keyfile))
    assert both.exit_code == 2 and "not both" in both.output
    from_file = cli(runner, "keys", "list", "--keys", str(keyfile), "--json")
    assert len(json.loads(from_file.stdout)) == 2
    monkeypatch.setenv("TOKENWARD_STORE_URL", url)
    from_settings = cli(runner, "keys", "list", "--json")
    assert from_settings.exit_code == 0, from_settings.output
    assert f"store: sqlite:///{tmp_path}/store/tw.db" in from_settings.stderr


def test_keys_kek_and_rekey_re_encrypt_the_store_under_a_new_kek(
    runner: CliRunner, url: str, tmp_path: Path
) -> None:
    new = tmp_path / "new.kek"
    r = cli(runner, "keys", "kek", "--out", str(new))
    assert r.exit_code == 0 and (new.stat().st_mode & 0o777) == 0o600
    printed = cli(runner, "keys", "kek").stdout.strip()
    assert len(printed) == 43 and printed != new.read_text().strip()
    kids = {k["kid"] for k in json.loads(cli(runner, "keys", "list", "--store", url,
                                             "--json").stdout)}  # fmt: skip
    r = cli(runner, "keys", "rekey", "--store", url, "--new-kek-file", str(new))
    assert r.exit_code == 0, r.output
    kek_file = tmp_path / "store" / "tw.db.kek"
    assert kek_file.read_text().strip() == new.read_text().strip()  # the store's file follows
    again = {k["kid"] for k in json.loads(cli(runner, "keys", "list", "--store", url,
                                              "--json").stdout)}  # fmt: skip
    assert again == kids
    # a server starts on the re-keyed store with the new key file
    settings = Settings(store_url=url, issuer="https://auth.test", **LIMITS)
    with TestClient(create_app(settings, password_hasher=cheap_hasher())) as http:
        assert http.get("/.well-known/jwks.json").status_code == 200


def test_serve_on_a_store_with_users_but_no_admin_says_how_to_create_one(
    runner: CliRunner, tmp_path: Path
) -> None:
    import asyncio

    from tokenward.cli.serve import preflight
    from tokenward.server.settings import load_settings

    url = f"sqlite:///{tmp_path}/noadmin/tw.db"
    r = cli(runner, "user", "add", "alice", "--password-stdin", "--store", url,
            input="alice password 1\n")  # fmt: skip
    assert r.exit_code == 0, r.output
    notes = asyncio.run(preflight(load_settings(store_url=url)))
    assert len(notes) == 1 and "no active admin" in notes[0]
    assert "tokenward user add NAME --admin --password-stdin" in notes[0]
    cli(runner, "user", "add", "root", "--admin", "--password-stdin", "--store", url,
        input=ADMIN_PW + "\n")  # fmt: skip
    assert asyncio.run(preflight(load_settings(store_url=url))) == []


def test_one_time_admin_password_not_shown_is_shown_again_on_the_next_start() -> None:
    import asyncio

    from tokenward.server.runtime import admin_password_shown, bootstrap
    from tokenward.server.users import UserService
    from tokenward.store.memory import MemoryStore

    settings = Settings(store_url="memory://", issuer="https://auth.test", key_encryption_key=KEK)

    async def go() -> None:
        store = MemoryStore()
        async with store:
            kw: dict[str, Any] = {"generate_admin": True, "hasher": cheap_hasher()}
            first = await bootstrap(settings, store, **kw)
            assert first.admin_password is not None
            # that start failed before the server was up: nobody saw the password
            second = await bootstrap(settings, store, **kw)
            assert second.admin_password is not None
            assert second.admin_password != first.admin_password
            users = UserService(store, hasher=cheap_hasher())
            assert (await users.authenticate("admin", second.admin_password)).is_admin
            await admin_password_shown(store)  # this start was up and printed it
            third = await bootstrap(settings, store, **kw)
            assert third.admin_password is None
            await users.authenticate("admin", second.admin_password)  # unchanged

    asyncio.run(go())
