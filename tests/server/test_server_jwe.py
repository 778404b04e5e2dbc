"""``TOKENWARD_JWE``: the server issues encrypted access tokens (nested JWT, RFC 7516) and its
own ``/userinfo`` and ``/introspect`` accept them; a plain JWS is refused once JWE is on."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from joserfc.jwk import ECKey

from support.server import Server, bearer
from tokenward.errors import ConfigurationError
from tokenward.server.settings import load_settings

DIR_KEY = base64.urlsafe_b64encode(bytes(range(32))).decode().rstrip("=")


def _ecdh_private_jwk() -> str:
    key = ECKey.import_key(ec.generate_private_key(ec.SECP256R1()))
    return orjson.dumps(key.as_dict(private=True)).decode()


def _introspect(server: Server, token: str) -> dict[str, Any]:
    r = server.http.post("/introspect", data={"token": token}, headers=server.svc())
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


@pytest.mark.parametrize("mode", ["dir", "ecdh-es"])
def test_encrypted_access_tokens_work_on_the_servers_own_endpoints(
    server_factory: Callable[..., Server], mode: str
) -> None:
    key = DIR_KEY if mode == "dir" else _ecdh_private_jwk()
    server = server_factory(jwe=mode, jwe_key=key)
    tok = server.login()
    at = tok["access_token"]
    assert at.count(".") == 4  # compact JWE
    header = orjson.loads(base64.urlsafe_b64decode(at.split(".")[0] + "=="))
    assert header["cty"] == "JWT" and header["enc"] == "A256GCM" and "zip" not in header
    assert header["alg"] == ("dir" if mode == "dir" else "ECDH-ES+A256KW")

    me = server.http.get("/userinfo", headers=bearer(at))
    assert me.status_code == 200 and me.json()["sub"] == "alice"
    info = _introspect(server, at)
    assert info["active"] is True and info["sub"] == "alice"

    # the refresh grant issues encrypted tokens too; revoking one makes it inactive
    r = server.refresh(tok["refresh_token"])
    assert r.status_code == 200
    at2 = r.json()["access_token"]
    assert at2.count(".") == 4
    assert server.http.post("/revoke", data={"token": at2, "client_id": "app"}).status_code == 200
    assert _introspect(server, at2) == {"active": False}
    assert server.http.get("/userinfo", headers=bearer(at2)).status_code == 401


def test_a_plain_jws_is_refused_when_jwe_is_on(server_factory: Callable[..., Server]) -> None:
    server = server_factory(jwe="dir", jwe_key=DIR_KEY)
    # signed with the server's own key, but not wrapped
    from tokenward.issuer import Issuer

    rt = server.runtime
    plain = Issuer(rt.keyring, issuer=rt.settings.issuer, audience="api", clock=server.clock)
    jws = plain.issue(sub="alice", client_id="app", scope="read").token
    assert jws.count(".") == 2
    assert server.http.get("/userinfo", headers=bearer(jws)).status_code == 401
    assert _introspect(server, jws) == {"active": False}


def test_a_token_for_another_jwe_key_is_refused(server_factory: Callable[..., Server]) -> None:
    other = server_factory(jwe="dir", jwe_key=base64.urlsafe_b64encode(b"k" * 32).decode())
    foreign = other.login()["access_token"]
    server = server_factory(jwe="dir", jwe_key=DIR_KEY)
    assert server.http.get("/userinfo", headers=bearer(foreign)).status_code == 401


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"jwe": "dir"}, "TOKENWARD_JWE_KEY: required when TOKENWARD_JWE=dir"),
        ({"jwe": "dir", "jwe_key": "c2hvcnQ"}, "TOKENWARD_JWE_KEY: a dir key must decode"),
        ({"jwe": "ecdh-es", "jwe_key": "{}"}, "TOKENWARD_JWE_KEY: an ecdh-es key must be"),
        ({"jwe": "A128KW", "jwe_key": DIR_KEY}, "TOKENWARD_JWE:"),
    ],
)
def test_wrong_jwe_settings_stop_start_up_with_one_line(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigurationError) as err:
        load_settings(store_url="memory://", **env)
    text = str(err.value)
    assert text.startswith(message) and "\n" not in text
    assert DIR_KEY not in text  # never echo key material


def test_jwe_off_by_default_and_settable_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert load_settings(store_url="memory://").token_encryption() is None
    monkeypatch.setenv("TOKENWARD_JWE", "dir")
    monkeypatch.setenv("TOKENWARD_JWE_KEY", DIR_KEY)
    enc = load_settings(store_url="memory://").token_encryption()
    assert enc is not None and enc.alg == "dir" and enc.can_decrypt
