"""The authorization code flow with PKCE through the sign-in and consent pages (in-process app,
frozen clock): every rule of the authorize and token endpoints, each negative case its own test."""

from __future__ import annotations

from urllib.parse import urlencode

import pytest

from support.oauth import (
    FIRST,
    FIRST_CB,
    WEB_CB,
    Flow,
    hidden,
    jwt_claims,
    jwt_header,
    redirect_params,
    register,
)
from support.server import Server, bearer


@pytest.fixture
def srv(server: Server) -> Server:
    register(server)
    return server


# -- the happy path ------------------------------------------------------------------------
def test_code_flow_signs_in_consents_and_redirects_with_code_state_and_iss(srv: Server) -> None:
    f = Flow(srv)
    r = f.authorize()
    assert r.status_code == 200 and 'name="username"' in r.text and 'name="password"' in r.text
    r = f.sign_in(r.text)
    assert r.status_code == 200 and 'name="decision"' in r.text  # third party: consent page
    assert "__Host-tokenward-signin=" in r.headers["set-cookie"]
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "secure" in cookie and "samesite=lax" in cookie
    assert "path=/" in cookie
    r = f.consent(r.text)
    assert r.status_code == 303
    assert r.headers["location"].startswith(WEB_CB + "?")
    p = redirect_params(r.headers["location"])
    assert p["state"] == f.state  # state echoed
    assert p["iss"] == srv.runtime.settings.issuer  # RFC 9207
    tok = f.exchange(p["code"])
    assert tok.status_code == 200, tok.text
    body = tok.json()
    assert body["token_type"] == "Bearer" and body["refresh_token"].startswith("twr_")
    assert set(body["scope"].split()) == {"openid", "profile"}
    assert tok.headers["cache-control"] == "no-store"
    info = srv.http.get("/userinfo", headers=bearer(body["access_token"])).json()
    assert info == {"sub": "alice", "preferred_username": "alice"}  # third party + profile
    again = srv.refresh(body["refresh_token"], client_id="web")
    assert again.status_code == 200 and again.json()["refresh_token"] != body["refresh_token"]


def test_id_token_claims_and_types(srv: Server) -> None:
    f = Flow(srv)
    body = f.exchange(f.code()).json()
    idt = body["id_token"]
    header, claims = jwt_header(idt), jwt_claims(idt)
    assert header["alg"] == "RS256" and header["typ"] == "JWT"
    assert claims["iss"] == srv.runtime.settings.issuer and claims["sub"] == "alice"
    assert claims["aud"] == "web" and claims["nonce"] == f.nonce
    assert claims["exp"] > claims["iat"] and claims["auth_time"] <= claims["iat"]
    from tokenward.server.idtoken import at_hash

    assert claims["at_hash"] == at_hash(body["access_token"])
    signins = srv.run(srv.runtime.signins.list_for, "alice")
    assert [s.sid for s in signins] == [claims["sid"]]  # sid = the sign-in session's id
    assert jwt_claims(body["access_token"])["sid"] != claims["sid"]  # access: the family
    kids = {k["kid"]: k for k in srv.http.get("/.well-known/jwks.json").json()["keys"]}
    assert kids[header["kid"]]["alg"] == "RS256"


def test_id_token_presented_as_access_token_is_401(srv: Server) -> None:
    f = Flow(srv)
    idt = f.exchange(f.code()).json()["id_token"]
    assert srv.http.get("/userinfo", headers=bearer(idt)).status_code == 401


def test_no_id_token_without_openid(srv: Server) -> None:
    f = Flow(srv)
    body = f.exchange(f.code(scope="profile")).json()
    assert "id_token" not in body


def test_first_party_client_skips_consent(srv: Server) -> None:
    f = Flow(srv, client_id=FIRST, redirect_uri=FIRST_CB)
    r = f.authorize()
    r = f.sign_in(r.text)
    assert r.status_code == 303 and "code=" in r.headers["location"]


def test_consent_is_remembered_per_user_client_and_scope_set(srv: Server) -> None:
    f = Flow(srv)
    f.code()  # signs in and consents to "openid profile"
    r = f.authorize()
    assert r.status_code == 302 and "code=" in r.headers["location"]  # remembered
    r = f.authorize(scope="openid")
    assert r.status_code == 302  # a subset is covered
    r = Flow(srv).authorize(scope="openid profile read")
    assert r.status_code == 200 and 'name="decision"' in r.text  # a wider set asks again
    r = f.authorize(prompt="consent")
    assert r.status_code == 200 and 'name="decision"' in r.text


def test_prompt_none_without_sign_in_session_is_login_required(srv: Server) -> None:
    r = Flow(srv).authorize(prompt="none")
    assert r.status_code == 302
    p = redirect_params(r.headers["location"])
    assert p["error"] == "login_required" and "iss" in p and "state" in p


def test_prompt_none_with_session_and_consent_returns_a_code(srv: Server) -> None:
    f = Flow(srv)
    f.code()
    r = f.authorize(prompt="none")
    assert r.status_code == 302 and "code" in redirect_params(r.headers["location"])


def test_prompt_none_without_consent_is_consent_required(srv: Server) -> None:
    f = Flow(srv, client_id=FIRST, redirect_uri=FIRST_CB)
    f.code()  # signed in through the first-party client: no consent for "web" yet
    r = Flow(srv).authorize(prompt="none")
    assert redirect_params(r.headers["location"])["error"] == "consent_required"


def test_prompt_login_and_max_age_ask_for_the_password_again(srv: Server) -> None:
    f = Flow(srv)
    f.code()
    r = f.authorize(prompt="login")
    assert r.status_code == 200 and 'name="password"' in r.text
    srv.clock.advance(120)
    r = f.authorize(max_age="60")
    assert r.status_code == 200 and 'name="password"' in r.text
    r = f.authorize(max_age="3600")
    assert r.status_code == 302


def test_logout_everywhere_ends_the_sign_in_session(srv: Server) -> None:
    f = Flow(srv)
    body = f.exchange(f.code()).json()
    r = srv.http.post("/logout-all", headers=bearer(body["access_token"]))
    assert r.status_code == 200
    r = f.authorize(prompt="none")
    assert redirect_params(r.headers["location"])["error"] == "login_required"


def test_disabled_user_sign_in_session_mints_nothing(srv: Server) -> None:
    f = Flow(srv)
    f.code()

    async def disable() -> None:
        user = await srv.runtime.users.get("alice")
        assert user is not None
        user.disabled = True
        await srv.store.update_user(user)

    srv.run(disable)
    r = f.authorize(prompt="none")
    assert redirect_params(r.headers["location"])["error"] == "login_required"


# -- negative cases: PKCE --------------------------------------------------------------------
def test_missing_pkce_is_invalid_request_redirected(srv: Server) -> None:
    r = Flow(srv).authorize(code_challenge="", code_challenge_method="")
    p = redirect_params(r.headers["location"])
    assert p["error"] == "invalid_request" and "PKCE" in p["error_description"]


def test_plain_pkce_is_refused(srv: Server) -> None:
    f = Flow(srv)
    r = f.authorize(code_challenge=f.verifier[:43], code_challenge_method="plain")
    p = redirect_params(r.headers["location"])
    assert p["error"] == "invalid_request" and "S256" in p["error_description"]


def test_wrong_code_verifier_is_invalid_grant(srv: Server) -> None:
    f = Flow(srv)
    code = f.code()
    r = f.exchange(code, code_verifier="x" * 50)
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"
    assert f.exchange(code).status_code == 200  # a failed check does not burn the code


def test_missing_code_verifier_is_invalid_request(srv: Server) -> None:
    f = Flow(srv)
    r = f.exchange(f.code(), code_verifier="")
    assert r.status_code == 400 and r.json()["error"] == "invalid_request"


# -- negative cases: codes -------------------------------------------------------------------
def test_code_reuse_is_invalid_grant_and_revokes_the_tokens_issued_from_it(srv: Server) -> None:
    f = Flow(srv)
    code = f.code()
    first = f.exchange(code).json()
    assert srv.http.get("/userinfo", headers=bearer(first["access_token"])).status_code == 200
    second = f.exchange(code)
    assert second.status_code == 400 and second.json()["error"] == "invalid_grant"
    # the access token (sid feed event) and the refresh token issued from the code are dead
    assert srv.http.get("/userinfo", headers=bearer(first["access_token"])).status_code == 401
    r = srv.refresh(first["refresh_token"], client_id="web")
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"


def test_expired_code_is_invalid_grant(srv: Server) -> None:
    f = Flow(srv)
    code = f.code()
    srv.clock.advance(srv.runtime.settings.authorization_code_ttl)
    r = f.exchange(code)
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"


def test_code_bound_to_redirect_uri_and_client(srv: Server) -> None:
    f = Flow(srv)
    code = f.code()
    r = f.exchange(code, redirect_uri="http://127.0.0.1/cb")
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"
    r = f.exchange(code, client_id=FIRST)
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"
    assert f.exchange(code).status_code == 200


def test_code_is_stored_hashed(srv: Server) -> None:
    f = Flow(srv)
    code = f.code()
    assert not any(code in k for (_, k) in srv.store._records)


# -- negative cases: client and redirect URI (shown on a page, never redirected) -------------
def test_redirect_uri_mismatch_is_shown_on_a_page_not_redirected(srv: Server) -> None:
    r = Flow(srv).authorize(redirect_uri="https://evil.example/cb")
    assert r.status_code == 400 and "location" not in r.headers
    assert "redirect_uri" in r.text and "text/html" in r.headers["content-type"]


def test_unregistered_client_is_shown_on_a_page(srv: Server) -> None:
    r = Flow(srv, client_id="nope").authorize()
    assert r.status_code == 400 and "location" not in r.headers
    assert "unknown or disabled client" in r.text


def test_loopback_redirect_with_any_port(srv: Server) -> None:
    f = Flow(srv, redirect_uri="http://127.0.0.1:53211/cb")
    code = f.code()
    assert f.exchange(code).status_code == 200


def test_response_type_other_than_code_is_redirected_error(srv: Server) -> None:
    r = Flow(srv).authorize(response_type="token")
    assert redirect_params(r.headers["location"])["error"] == "unsupported_response_type"


def test_client_without_code_grant_is_unauthorized_client(srv: Server) -> None:
    async def add() -> None:
        await srv.runtime.clients.create(
            "pw", public=True, grants=("password",), redirect_uris=("https://pw.example/cb",)
        )

    srv.run(add)
    r = Flow(srv, client_id="pw", redirect_uri="https://pw.example/cb").authorize()
    assert redirect_params(r.headers["location"])["error"] == "unauthorized_client"


# -- negative cases: consent and forms -------------------------------------------------------
def test_consent_denied_is_access_denied(srv: Server) -> None:
    f = Flow(srv)
    page = f.sign_in(f.authorize().text).text
    r = f.consent(page, decision="deny")
    p = redirect_params(r.headers["location"])
    assert p["error"] == "access_denied" and p["state"] == f.state and "iss" in p


def test_sign_in_form_without_csrf_token_is_refused(srv: Server) -> None:
    f = Flow(srv)
    page = f.authorize().text

    r = srv.http.post(
        "/authorize/signin",
        data={"request_id": hidden(page, "request_id"), "username": "alice", "password": "x"},
        follow_redirects=False,
    )
    assert r.status_code == 403 and "csrf_token" in r.text
    assert "set-cookie" not in r.headers


def test_consent_form_without_csrf_token_is_refused(srv: Server) -> None:
    f = Flow(srv)
    page = f.sign_in(f.authorize().text).text

    r = srv.http.post(
        "/authorize/consent",
        data={"request_id": hidden(page, "request_id"), "decision": "allow"},
        follow_redirects=False,
    )
    assert r.status_code == 403 and "location" not in r.headers


def test_cross_site_form_post_is_refused(srv: Server) -> None:
    f = Flow(srv)
    page = f.authorize().text

    r = srv.http.post(
        "/authorize/signin",
        data={
            "request_id": hidden(page, "request_id"),
            "csrf_token": hidden(page, "csrf_token"),
            "username": "alice",
            "password": "x",
        },
        headers={"Sec-Fetch-Site": "cross-site"},
        follow_redirects=False,
    )
    assert r.status_code == 403


def test_wrong_password_shows_the_form_again_and_is_throttled(srv: Server) -> None:
    f = Flow(srv)
    page = f.authorize().text
    for _ in range(5):
        r = f.sign_in(page, password="wrong password")
        assert r.status_code == 401 and "Wrong username or password" in r.text
        page = r.text
    r = f.sign_in(page, password="wrong password")
    assert r.status_code == 429


def test_pages_have_strict_csp_and_no_script(srv: Server) -> None:
    r = Flow(srv).authorize()
    csp = r.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
    assert "script-src" not in csp and "<script" not in r.text
    assert "form-action 'self' https://web.example" in csp
    assert r.headers["x-frame-options"] == "DENY"


def test_post_authorize_request_answers_303(srv: Server) -> None:
    f = Flow(srv)
    f.code()
    r = srv.http.post("/authorize", data=f.params(), follow_redirects=False)
    assert r.status_code == 303 and "code=" in r.headers["location"]


def test_metadata_is_truthful(srv: Server) -> None:
    m = srv.http.get("/.well-known/openid-configuration").json()
    assert m["authorization_endpoint"].endswith("/authorize")
    assert m["response_types_supported"] == ["code"]
    assert m["code_challenge_methods_supported"] == ["S256"]
    assert m["authorization_response_iss_parameter_supported"] is True
    assert "RS256" in m["id_token_signing_alg_values_supported"]
    assert "token_endpoint_auth_signing_alg_values_supported" not in m
    assert "authorization_code" in m["grant_types_supported"]


def test_authorize_query_is_never_a_500_on_garbage(srv: Server) -> None:
    for q in ("client_id=%00", "client_id=web&redirect_uri=%ff", "x=" + "a" * 5000, ""):
        r = srv.http.get("/authorize?" + q, follow_redirects=False)
        assert r.status_code < 500


def test_state_is_echoed_even_on_errors(srv: Server) -> None:
    f = Flow(srv)
    r = srv.http.get(
        "/authorize?" + urlencode({**f.params(), "response_type": "id_token"}),
        follow_redirects=False,
    )
    assert redirect_params(r.headers["location"])["state"] == f.state


def test_password_reset_ends_the_sign_in_session_so_prompt_none_mints_nothing(
    srv: Server,
) -> None:
    f = Flow(srv)
    code = f.code()
    srv.clock.advance(1)
    srv.run(srv.runtime.users.set_password, "alice", "a brand new password")
    r = f.authorize(prompt="none")
    assert redirect_params(r.headers["location"])["error"] == "login_required"
    # a code minted before the reset cannot be exchanged either
    r = f.exchange(code)
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"


def test_apps_with_access_lists_and_revoking_ends_that_clients_sessions(srv: Server) -> None:
    f = Flow(srv)
    body = f.exchange(f.code()).json()
    mine = srv.login()  # a first-party session of the same user
    apps = srv.http.get("/consents", headers=bearer(mine["access_token"])).json()
    assert [(a["client_id"], a["name"]) for a in apps] == [("web", "Web App")]
    assert set(apps[0]["scopes"]) == {"openid", "profile"}
    r = srv.http.delete("/consents/web", headers=bearer(mine["access_token"]))
    assert r.status_code == 204
    assert srv.refresh(body["refresh_token"], client_id="web").status_code == 400
    assert srv.http.get("/userinfo", headers=bearer(body["access_token"])).status_code == 401
    assert srv.http.get("/userinfo", headers=bearer(mine["access_token"])).status_code == 200
    r = f.authorize()
    assert r.status_code == 200 and 'name="decision"' in r.text  # asked again
    gone = srv.http.delete("/consents/web", headers=bearer(mine["access_token"]))
    assert gone.status_code == 404


def test_sign_in_sessions_are_listed_among_the_users_sessions(srv: Server) -> None:
    f = Flow(srv)
    f.exchange(f.code())
    mine = srv.login()
    listed = srv.http.get("/sessions/signins", headers=bearer(mine["access_token"])).json()
    assert len(listed) == 1 and listed[0]["clients"] == ["web"]
    r = srv.http.delete(
        f"/sessions/signins/{listed[0]['sid']}", headers=bearer(mine["access_token"])
    )
    assert r.status_code == 204
    assert redirect_params(f.authorize(prompt="none").headers["location"])["error"] == (
        "login_required"
    )


# -- the authorization model: resources ------------------------------------------------------
ORDERS, BILLING = "https://orders.example", "https://billing.example"


def _two_apis(srv: Server) -> None:
    async def go() -> None:
        rt = srv.runtime
        await rt.resources.add(ORDERS, name="Orders", scopes="orders:read")
        await rt.resources.add(BILLING, name="Billing", scopes="billing:read")
        await rt.roles.add("shopper", "orders:read billing:read")
        user = await rt.store.get_user("alice")
        await rt.roles.set_user_roles("alice", [*user.roles, "shopper"])
        await rt.clients.set_permissions(
            FIRST,
            resources=[ORDERS, BILLING, rt.settings.issuer],
            scopes=["openid", "profile", "orders:read", "billing:read"],
        )

    srv.run(go)


def _code_for_both(f: Flow, scope: str) -> str:
    query = (
        urlencode(f.params(scope=scope))
        + "&"
        + urlencode([("resource", ORDERS), ("resource", BILLING)])
    )
    r = f.server.http.get("/authorize?" + query, follow_redirects=False)
    if r.status_code == 200:
        r = f.sign_in(r.text)
    return redirect_params(r.headers["location"])["code"]


def test_authorize_grants_several_resources_and_the_token_is_for_the_first(srv: Server) -> None:
    _two_apis(srv)
    f = Flow(srv, client_id=FIRST, redirect_uri=FIRST_CB)
    body = f.exchange(_code_for_both(f, "openid orders:read billing:read")).json()
    claims = jwt_claims(body["access_token"])
    assert claims["aud"] == [ORDERS, srv.runtime.settings.issuer]
    assert claims["scope"].split() == ["openid", "orders:read"]


def test_code_exchange_resource_picks_a_granted_one_and_an_ungranted_one_is_invalid_target(
    srv: Server,
) -> None:
    _two_apis(srv)
    f = Flow(srv, client_id=FIRST, redirect_uri=FIRST_CB)
    code = _code_for_both(f, "orders:read billing:read")
    bad = f.exchange(code, resource="https://elsewhere.example")
    assert bad.status_code == 400 and bad.json()["error"] == "invalid_target"
    good = f.exchange(code, resource=BILLING)  # the refused exchange did not burn the code
    assert good.status_code == 200, good.text
    claims = jwt_claims(good.json()["access_token"])
    assert claims["aud"] == BILLING and claims["scope"] == "billing:read"
