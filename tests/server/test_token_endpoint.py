"""RFC 6749 token endpoint rules as named HTTP tests, plus RFC 9700 rotation."""

from __future__ import annotations

import base64

import orjson

from support.server import ALICE_PW, Server, basic, bearer

NO_STORE = ("no-store", "no-cache")


def _cache_headers(r: object) -> tuple[str, str]:
    h = r.headers  # type: ignore[attr-defined]
    return h.get("cache-control"), h.get("pragma")


def test_rfc6749_3_2_token_endpoint_is_post_only(server: Server) -> None:
    r = server.http.get("/token")
    assert r.status_code == 405
    assert r.json()["error"] == "invalid_request"


def test_rfc6749_3_2_duplicated_parameter_is_invalid_request(server: Server) -> None:
    body = f"grant_type=password&username=alice&username=root&password={ALICE_PW}&client_id=app"
    r = server.http.post(
        "/token",
        content=body,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 400
    assert r.json()["error"] == "invalid_request"
    assert "username" in r.json()["error_description"]


def test_rfc6749_3_2_empty_parameter_counts_as_absent(server: Server) -> None:
    r = server.http.post("/token", data={"grant_type": "", "client_id": "app"})
    assert r.status_code == 400
    assert r.json() == {"error": "invalid_request", "error_description": "grant_type is required"}


def test_rfc6749_3_2_unknown_parameters_are_ignored(server: Server) -> None:
    r = server.password(foo="bar", audience="x")
    assert r.status_code == 200, r.text


def test_rfc6749_2_3_two_client_auth_methods_is_invalid_request(server: Server) -> None:
    r = server.http.post(
        "/token",
        data={
            "grant_type": "client_credentials",
            "client_id": "svc",
            "client_secret": server.svc_secret,
        },
        headers=server.svc(),
    )
    assert r.status_code == 400
    assert r.json()["error"] == "invalid_request"


def test_rfc6749_2_3_1_client_secret_basic(server: Server) -> None:
    r = server.http.post(
        "/token",
        data={"grant_type": "client_credentials", "scope": "read"},
        headers=server.svc(),
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["token_type"] == "Bearer" and body["scope"] == "read"
    assert "refresh_token" not in body  # RFC 6749 §4.4.3


def test_rfc6749_2_3_1_client_secret_post(server: Server) -> None:
    r = server.http.post(
        "/token",
        data={
            "grant_type": "client_credentials",
            "client_id": "svc",
            "client_secret": server.svc_secret,
        },
    )
    assert r.status_code == 200, r.text


def test_rfc6749_2_3_1_basic_credentials_are_form_urlencoded(server: Server) -> None:
    async def make() -> str:
        _, secret = await server.runtime.clients.create(
            "a b&c", grants=("client_credentials",), scopes=("read",), resources=("api",)
        )
        assert secret is not None
        return secret

    secret = server.run(make)
    raw = base64.b64encode(f"a+b%26c:{secret}".encode()).decode()
    r = server.http.post(
        "/token",
        data={"grant_type": "client_credentials"},
        headers={"Authorization": f"Basic {raw}"},
    )
    assert r.status_code == 200, r.text


def test_rfc6749_5_2_failed_basic_auth_is_401_with_www_authenticate(server: Server) -> None:
    r = server.http.post(
        "/token", data={"grant_type": "client_credentials"}, headers=basic("svc", "wrong")
    )
    assert r.status_code == 401
    assert r.json()["error"] == "invalid_client"
    assert r.headers["www-authenticate"].startswith("Basic")
    assert _cache_headers(r) == NO_STORE


def test_rfc6749_5_2_unknown_client_is_invalid_client(server: Server) -> None:
    r = server.http.post(
        "/token",
        data={
            "grant_type": "password",
            "client_id": "nope",
            "username": "alice",
            "password": ALICE_PW,
        },
    )
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"


def test_rfc6749_2_1_confidential_client_must_authenticate(server: Server) -> None:
    r = server.password(client_id="svc")  # no secret
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"


def test_rfc6749_5_1_token_response_has_no_store_headers(server: Server) -> None:
    r = server.password()
    assert r.status_code == 200
    assert _cache_headers(r) == NO_STORE
    body = r.json()
    assert set(body) >= {"access_token", "token_type", "expires_in", "refresh_token"}
    assert body["expires_in"] == 900


def test_rfc6749_5_2_unsupported_grant_type(server: Server) -> None:
    r = server.http.post("/token", data={"grant_type": "implicit", "client_id": "app"})
    assert r.status_code == 400 and r.json()["error"] == "unsupported_grant_type"


def test_rfc6749_5_2_unauthorized_client_for_grant(server: Server) -> None:
    r = server.http.post("/token", data={"grant_type": "client_credentials", "client_id": "app"})
    assert r.status_code == 400 and r.json()["error"] == "unauthorized_client"


def test_rfc6749_5_2_invalid_scope(server: Server) -> None:
    r = server.http.post(
        "/token",
        data={"grant_type": "client_credentials", "scope": "read admin", "resource": "api"},
        headers=server.svc(),
    )
    assert r.status_code == 400 and r.json()["error"] == "invalid_scope"


def test_admin_scope_needs_an_admin_user(server: Server) -> None:
    assert server.password(scope="admin").json()["error"] == "invalid_scope"
    ok = server.password("root", "admin password 1", scope="admin")
    assert ok.status_code == 200 and ok.json()["scope"] == "admin"


def test_rfc6749_5_2_invalid_grant_for_wrong_password_and_unknown_user(server: Server) -> None:
    a = server.password(password="wrong")
    b = server.password(username="mallory", password="wrong")
    assert a.status_code == b.status_code == 400
    assert (
        a.json()
        == b.json()
        == {"error": "invalid_grant", "error_description": "invalid username or password"}
    )


def test_rfc6749_6_refresh_rotates_and_keeps_scope(server: Server) -> None:
    tok = server.login(scope="read write", client_id="svc", client_secret=server.svc_secret)
    r = server.refresh(tok["refresh_token"], "svc", client_secret=server.svc_secret)
    assert r.status_code == 200, r.text
    new = r.json()
    assert new["refresh_token"] != tok["refresh_token"] and new["scope"] == "read write"
    assert _cache_headers(r) == NO_STORE


def test_rfc6749_6_refresh_token_is_bound_to_its_client(server: Server) -> None:
    tok = server.login()
    r = server.refresh(tok["refresh_token"], client_id="other")
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"


def test_rfc6749_6_scope_may_narrow_never_widen(server: Server) -> None:
    tok = server.login(scope="read write", client_id="svc", client_secret=server.svc_secret)
    wide = server.refresh(
        tok["refresh_token"],
        "svc",
        client_secret=server.svc_secret,
        scope="read write revocations",
    )
    assert wide.status_code == 400 and wide.json()["error"] == "invalid_scope"
    narrow = server.refresh(
        tok["refresh_token"], "svc", client_secret=server.svc_secret, scope="read"
    )
    assert narrow.status_code == 200 and narrow.json()["scope"] == "read"


def test_rfc9700_4_14_2_reuse_revokes_the_whole_family(server: Server) -> None:
    tok = server.login()
    rt1, at1 = tok["refresh_token"], tok["access_token"]
    r2 = server.refresh(rt1).json()  # type: ignore[attr-defined]
    server.clock.advance(11)  # past the 10 s grace window
    reuse = server.refresh(rt1)
    assert reuse.status_code == 400 and reuse.json()["error"] == "invalid_grant"  # type: ignore[attr-defined]
    again = server.refresh(r2["refresh_token"])
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"  # type: ignore[attr-defined]
    for at in (at1, r2["access_token"]):
        assert server.http.get("/userinfo", headers=bearer(at)).status_code == 401


def test_grace_window_replay_returns_the_same_successor(server: Server) -> None:
    tok = server.login()
    a = server.refresh(tok["refresh_token"]).json()  # type: ignore[attr-defined]
    server.clock.advance(3)
    b = server.refresh(tok["refresh_token"])
    assert b.status_code == 200  # type: ignore[attr-defined]
    assert b.json()["refresh_token"] == a["refresh_token"]  # type: ignore[attr-defined]


def test_rfc8725_3_11_access_token_as_refresh_token_is_invalid_grant(server: Server) -> None:
    tok = server.login()
    r = server.refresh(tok["access_token"])
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"  # type: ignore[attr-defined]


def test_rfc9068_access_token_profile(server: Server) -> None:
    tok = server.login()
    h, p, _ = tok["access_token"].split(".")
    header = orjson.loads(base64.urlsafe_b64decode(h + "=" * (-len(h) % 4)))
    claims = orjson.loads(base64.urlsafe_b64decode(p + "=" * (-len(p) % 4)))
    assert header["typ"] == "at+jwt" and header["alg"] == "ES256" and header["kid"]
    assert {"iss", "sub", "aud", "exp", "iat", "jti", "client_id", "sid"} <= set(claims)
    assert claims["iss"] == "https://auth.tokenward.test" and claims["sub"] == "alice"


def test_wrong_content_type_is_invalid_request(server: Server) -> None:
    r = server.http.post("/token", json={"grant_type": "password"})
    assert r.status_code == 400 and r.json()["error"] == "invalid_request"


def test_malformed_body_is_invalid_request(server: Server) -> None:
    r = server.http.post(
        "/token",
        content=b"grant_type=\xff\xfe",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 400 and r.json()["error"] == "invalid_request"


def test_huge_header_is_4xx(server: Server) -> None:
    r = server.http.post(
        "/token",
        data={"grant_type": "password"},
        headers={"Authorization": "Bearer " + "A" * 1_000_000},
    )
    assert r.status_code == 431 and r.json()["error"] == "invalid_request"


def test_huge_body_is_4xx(server: Server) -> None:
    r = server.http.post("/token", data={"grant_type": "password", "x": "A" * 200_000})
    assert r.status_code == 413 and r.json()["error"] == "invalid_request"


def test_huge_basic_credentials_are_rejected(server: Server) -> None:
    r = server.http.post(
        "/token",
        data={"grant_type": "client_credentials"},
        headers={"Authorization": "Basic " + "QUFB" * 3000},
    )
    assert r.status_code == 401


def test_rfc6749_4_3_2_password_grant_brute_force_is_throttled(server: Server) -> None:
    for _ in range(5):
        assert server.password(password="wrong").status_code == 400
    r = server.password()  # even the right password is refused now
    assert r.status_code == 429
    assert int(r.headers["retry-after"]) >= 1
    assert r.json() == {
        "error": "invalid_request",
        "error_description": "too many sign-in attempts",
    }
    # another account from the same address is not locked by alice's budget
    assert server.password("root", "admin password 1").status_code == 200


def test_password_throttle_per_ip(server_factory: object) -> None:
    server = server_factory(login_limit_per_ip="3/minute")  # type: ignore[operator]
    for name in ("u1", "u2", "u3"):
        assert server.password(username=name, password="x").status_code == 400
    assert server.password().status_code == 429


def test_store_down_token_is_503_and_issues_nothing(server: Server) -> None:
    server.store.set_available(False)
    r = server.password()
    assert r.status_code == 503
    assert "access_token" not in r.text
    assert r.headers["retry-after"]


def test_unexpected_error_is_server_error_without_traceback(server: Server) -> None:
    async def boom(*a: object, **k: object) -> None:
        raise RuntimeError("secret internal detail")

    server.runtime.users.authenticate = boom  # type: ignore[method-assign]
    r = server.password()
    assert r.status_code == 500
    assert r.json() == {"error": "server_error", "error_description": "internal error"}
    assert "secret internal detail" not in r.text and "Traceback" not in r.text


def test_metrics_count_issued_and_reuse(server: Server) -> None:
    tok = server.login()
    server.refresh(tok["refresh_token"])
    server.clock.advance(11)
    server.refresh(tok["refresh_token"])
    text = server.http.get("/metrics").text
    assert 'tokenward_tokens_issued_total{grant="password"} 1.0' in text
    assert "tokenward_refresh_reuse_detected_total 1.0" in text
    assert "tokenward_http_request_duration_seconds_bucket" in text
