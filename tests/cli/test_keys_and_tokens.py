"""The ``tokenward`` CLI (``keys``, ``token``) through typer's CliRunner, with a frozen clock."""

from __future__ import annotations

import base64
import json
import os
import stat
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tokenward import FrozenClock, KeyRing, Verifier
from tokenward.cli import _common, app
from tokenward.cli._common import parse_duration

ISS = "http://127.0.0.1:8000"
NOW = 1_800_000_000.0


@pytest.fixture(autouse=True)
def frozen(monkeypatch: pytest.MonkeyPatch) -> FrozenClock:
    clock = FrozenClock(NOW)
    monkeypatch.setattr(_common, "CLOCK", clock)
    monkeypatch.delenv("TOKENWARD_KEK", raising=False)
    monkeypatch.delenv("TOKENWARD_KEY_ENCRYPTION_KEY", raising=False)
    return clock


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def keyfile(tmp_path: Path, runner: CliRunner) -> Path:
    path = tmp_path / "keys.json"
    result = runner.invoke(app, ["keys", "generate", "--alg", "ES256", "--out", str(path)])
    assert result.exit_code == 0, result.output
    return path


def _issue(runner: CliRunner, keyfile: Path, *extra: str) -> str:
    result = runner.invoke(
        app, ["token", "issue", "--keys", str(keyfile), "--sub", "alice", "--scope", "read", *extra]
    )
    assert result.exit_code == 0, result.output
    return result.stdout.strip()


# --------------------------------------------------------------------------- keys
def test_generate_writes_0600_and_prints_no_private_material(
    tmp_path: Path, runner: CliRunner
) -> None:
    path = tmp_path / "k.json"
    result = runner.invoke(app, ["keys", "generate", "--alg", "ES256", "--out", str(path)])
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    doc = json.loads(path.read_text())
    assert len(doc["keys"]) == 2 and all("d" in k for k in doc["keys"])
    for k in doc["keys"]:
        assert k["d"] not in result.output
    assert "active kid" in result.output
    # refuses to overwrite without --force
    again = runner.invoke(app, ["keys", "generate", "--out", str(path)])
    assert again.exit_code == 2 and "exists" in again.output
    forced = runner.invoke(app, ["keys", "generate", "--out", str(path), "--force"])
    assert forced.exit_code == 0
    assert json.loads(path.read_text()) != doc


def test_one_kek_name_and_old_tokenward_kek_deprecated(
    tmp_path: Path, runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    kek = bytes(range(32))
    kek_text = base64.urlsafe_b64encode(kek).rstrip(b"=").decode()
    kek_file = tmp_path / "kek"
    kek_file.write_text(kek_text)
    os.chmod(kek_file, 0o600)
    path = tmp_path / "enc.jwe"
    result = runner.invoke(
        app, ["keys", "generate", "--out", str(path), "--kek-file", str(kek_file)]
    )
    assert result.exit_code == 0, result.output
    assert not path.read_bytes().lstrip().startswith(b"{")  # a JWE, not JSON
    assert len(KeyRing.load(path, kek=kek)) == 2
    # without the KEK: a clear message, exit 2
    listed = runner.invoke(app, ["keys", "list", "--keys", str(path)])
    assert listed.exit_code == 2 and "key-encryption key" in listed.output
    monkeypatch.setenv("TOKENWARD_KEY_ENCRYPTION_KEY", kek_text)
    listed = runner.invoke(app, ["keys", "list", "--keys", str(path)])
    assert listed.exit_code == 0, listed.output
    monkeypatch.setenv("TOKENWARD_KEY_ENCRYPTION_KEY", "not-base64url-32-bytes")
    bad = runner.invoke(app, ["keys", "list", "--keys", str(path)])
    assert bad.exit_code == 2 and "TOKENWARD_KEY_ENCRYPTION_KEY" in bad.output
    # the old name still works for one release, with a deprecation warning
    monkeypatch.delenv("TOKENWARD_KEY_ENCRYPTION_KEY")
    monkeypatch.setenv("TOKENWARD_KEK", kek_text)
    with pytest.warns(FutureWarning, match="TOKENWARD_KEY_ENCRYPTION_KEY"):
        listed = runner.invoke(app, ["keys", "list", "--keys", str(path)])
    assert listed.exit_code == 0, listed.output


def test_list_shows_states(runner: CliRunner, keyfile: Path) -> None:
    result = runner.invoke(app, ["keys", "list", "--keys", str(keyfile)], terminal_width=200)
    assert result.exit_code == 0, result.output
    ring = KeyRing.load(keyfile)
    for k in ring:
        assert k.kid in result.output
    assert "active" in result.output and "next" in result.output
    assert "2027-01-15 08:00:00 UTC" in result.output  # created, from the frozen clock


def test_rotate_then_old_tokens_still_verify(
    runner: CliRunner, keyfile: Path, frozen: FrozenClock
) -> None:
    before = KeyRing.load(keyfile)
    old_token = _issue(runner, keyfile)
    result = runner.invoke(app, ["keys", "rotate", "--keys", str(keyfile)])
    assert result.exit_code == 0, result.output
    after = KeyRing.load(keyfile)
    assert after.active.kid != before.active.kid
    assert before.get(before.active.kid).state.value == "active"  # type: ignore[union-attr]
    assert after.get(before.active.kid).state.value == "retired"  # type: ignore[union-attr]
    assert stat.S_IMODE(keyfile.stat().st_mode) == 0o600
    v = Verifier(after.public_jwks(), issuer=ISS, audience="api", clock=frozen)
    assert v.verify(old_token).sub == v.verify(_issue(runner, keyfile)).sub == "alice"


def test_export_public_prints_public_jwks_only(runner: CliRunner, keyfile: Path) -> None:
    result = runner.invoke(app, ["keys", "export-public", "--keys", str(keyfile)])
    assert result.exit_code == 0, result.output
    jwks = json.loads(result.stdout)
    assert len(jwks["keys"]) == 2
    for k in jwks["keys"]:
        assert "d" not in k and k["use"] == "sig" and k["alg"] == "ES256"


def test_bad_algorithm_and_missing_file(tmp_path: Path, runner: CliRunner) -> None:
    result = runner.invoke(app, ["keys", "generate", "--alg", "HS1", "--out", str(tmp_path / "x")])
    assert result.exit_code == 2 and "unsupported algorithm" in result.output
    result = runner.invoke(app, ["keys", "list", "--keys", str(tmp_path / "missing.json")])
    assert result.exit_code == 2 and "cannot read key file" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_world_readable_key_file_refused(runner: CliRunner, keyfile: Path) -> None:
    os.chmod(keyfile, 0o644)
    result = runner.invoke(app, ["keys", "list", "--keys", str(keyfile)])
    assert result.exit_code == 2 and "chmod 600" in result.output


# --------------------------------------------------------------------------- token
def test_issue_prints_a_token_that_verifies(
    runner: CliRunner, keyfile: Path, frozen: FrozenClock
) -> None:
    token = _issue(
        runner, keyfile, "--ttl", "1h", "--aud", "orders", "--client-id", "c1", "--sid", "S1"
    )
    v = Verifier(KeyRing.load(keyfile).public_jwks(), issuer=ISS, audience="orders", clock=frozen)
    claims = v.verify(token)
    assert (claims.sub, claims.scope, claims.client_id, claims.sid) == ("alice", "read", "c1", "S1")
    assert claims.exp - claims.iat == 3600 and claims.iat == NOW


@pytest.mark.parametrize(
    ("text", "seconds"), [("90s", 90), ("15m", 900), ("1h", 3600), ("30d", 2_592_000), ("45", 45)]
)
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("ttl", ["15x", "-5m", "0s", "m", "1.5h", ""])
def test_bad_duration_is_exit_2(runner: CliRunner, keyfile: Path, ttl: str) -> None:
    result = runner.invoke(
        app, ["token", "issue", "--keys", str(keyfile), "--sub", "a", "--ttl", ttl]
    )
    assert result.exit_code == 2
    assert "Traceback" not in result.output


def test_inspect_shows_banner_and_human_times(
    runner: CliRunner, keyfile: Path, frozen: FrozenClock
) -> None:
    token = _issue(runner, keyfile)
    frozen.advance(60)
    result = runner.invoke(app, ["token", "inspect", token], terminal_width=120)
    assert result.exit_code == 0, result.output
    assert "NOT VERIFIED" in result.output
    assert '"typ": "at+jwt"' in result.output and '"sub": "alice"' in result.output
    assert "expires in 14 min" in result.output
    assert "issued 60 s ago" in result.output
    frozen.advance(3600)
    later = runner.invoke(app, ["token", "inspect", "-"], input=token + "\n", terminal_width=120)
    assert later.exit_code == 0 and "expired 46 min ago" in later.output


def test_token_inspect_says_a_refresh_token_is_opaque(runner: CliRunner) -> None:
    result = runner.invoke(app, ["token", "inspect", "twr_" + "A" * 43], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "opaque refresh token" in result.output
    assert "segments" not in result.output


def test_inspect_bad_input_is_exit_2(runner: CliRunner) -> None:
    for bad in ("abc", "a.b", "!!!.e30.x", ""):
        result = runner.invoke(app, ["token", "inspect", bad])
        assert result.exit_code == 2, (bad, result.output)
        assert "Traceback" not in result.output
        assert "error:" in result.output


def test_verify_valid_and_invalid(
    runner: CliRunner, keyfile: Path, tmp_path: Path, frozen: FrozenClock
) -> None:
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps(KeyRing.load(keyfile).public_jwks()))
    token = _issue(runner, keyfile)
    base = ["token", "verify", token, "--jwks", str(jwks), "--issuer", ISS]
    ok = runner.invoke(app, [*base, "--audience", "api"])
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout)["sub"] == "alice"
    wrong_aud = runner.invoke(app, [*base, "--audience", "billing"])
    assert wrong_aud.exit_code == 1 and "aud does not contain" in wrong_aud.output
    frozen.advance(15 * 60 + 31)
    expired = runner.invoke(app, [*base, "--audience", "api"])
    assert expired.exit_code == 1 and "expired at" in expired.output
    lenient = runner.invoke(app, [*base, "--audience", "api", "--leeway", "120"])
    assert lenient.exit_code == 0, lenient.output
    tampered = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    bad_sig = runner.invoke(
        app,
        [
            "token",
            "verify",
            tampered,
            "--jwks",
            str(jwks),
            "--issuer",
            ISS,
            "--audience",
            "api",
            "--leeway",
            "120",
        ],
    )
    assert bad_sig.exit_code == 1 and "invalid" in bad_sig.output


def test_verify_hs256_with_private_key_file(tmp_path: Path, runner: CliRunner) -> None:
    path = tmp_path / "hs.json"
    assert (
        runner.invoke(app, ["keys", "generate", "--alg", "HS256", "--out", str(path)]).exit_code
        == 0
    )
    exported = runner.invoke(app, ["keys", "export-public", "--keys", str(path)])
    assert json.loads(exported.stdout) == {"keys": []}  # a secret is never published
    token = _issue(runner, path)
    result = runner.invoke(
        app, ["token", "verify", token, "--jwks", str(path), "--issuer", ISS, "--audience", "api"]
    )
    assert result.exit_code == 0, result.output


def test_verify_bad_jwks_is_exit_2(runner: CliRunner, keyfile: Path, tmp_path: Path) -> None:
    token = _issue(runner, keyfile)
    junk = tmp_path / "junk.json"
    junk.write_text('{"nokeys": 1}')
    for source in (str(junk), str(tmp_path / "missing.json"), "http://127.0.0.1:9/jwks.json"):
        result = runner.invoke(
            app, ["token", "verify", token, "--jwks", source, "--issuer", ISS, "--audience", "api"]
        )
        assert result.exit_code == 2, (source, result.output)
        assert "Traceback" not in result.output


@pytest.fixture
def jwks_server(keyfile: Path) -> Iterator[str]:
    body = json.dumps(KeyRing.load(keyfile).public_jwks()).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/.well-known/jwks.json"
    finally:
        server.shutdown()
        server.server_close()


def test_verify_with_jwks_url(runner: CliRunner, keyfile: Path, jwks_server: str) -> None:
    token = _issue(runner, keyfile)
    result = runner.invoke(
        app, ["token", "verify", token, "--jwks", jwks_server, "--issuer", ISS, "--audience", "api"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["iss"] == ISS


def test_help_lists_sub_apps(runner: CliRunner) -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "keys" in result.output and "token" in result.output
