"""Hypothesis fuzzing of the HTTP entry points that take a token (in process, the app of
``tests/server``): structured tokens (:mod:`.strategies`) in ``Authorization`` on
``/userinfo``, in ``token`` on ``/introspect`` and ``/revoke``, in ``refresh_token`` on
``/token`` and in the refresh cookie, plus whole fuzzed form bodies.

Properties: never a 5xx; every error is an RFC 6749 JSON body; a bearer request is accepted,
and introspection says ``active: true``, only for tokens the server really issued; a refresh
succeeds only with a real refresh token; the legitimate session survives every input.
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import urlencode

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from support.server import Server, bearer
from support.strategies import authorization_headers, form_bodies, refresh_like, token_like

FUZZ = settings(
    max_examples=int(os.environ.get("TOKENWARD_FUZZ_EXAMPLES", "120")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
_state: dict[str, Any] = {}


def _legit(server: Server) -> dict[str, Any]:
    """A session (made once per server) whose tokens the fuzzer mutates. The server itself is
    kept and compared by identity: a new server can get the id() of a freed one, and would
    then be handed the old server's tokens (signed with keys it does not know)."""
    if _state.get("server") is not server:
        pair = server.login()
        _state.clear()
        _state.update(
            server=server, pair=pair, issued={pair["access_token"], pair["refresh_token"]}
        )
    return _state


def _raw_header(value: str) -> bytes:
    raw = value.encode("utf-8", "surrogatepass")
    for bad in (b"\r", b"\n", b"\x00"):
        raw = raw.replace(bad, b"")
    return raw.strip() or b"Bearer"


def _post(server: Server, path: str, form: Any, headers: dict[Any, Any] | None = None) -> Any:
    """A form POST that carries any string (lone surrogates become invalid UTF-8 bytes)."""
    items = form.items() if isinstance(form, dict) else form
    body = urlencode(list(items), encoding="utf-8", errors="surrogatepass").encode()
    h = {b"Content-Type": b"application/x-www-form-urlencoded"}
    h.update({k.encode() if isinstance(k, str) else k: v.encode() if isinstance(v, str) else v
              for k, v in (headers or {}).items()})  # fmt: skip
    return server.http.post(path, content=body, headers=h)


def _error_shape(r: Any) -> None:
    assert r.status_code < 500, r.text
    if r.status_code >= 400:
        body = r.json()
        assert isinstance(body.get("error"), str), body


@FUZZ
@given(data=st.data())
def test_bearer_header_on_userinfo(server: Server, data: st.DataObject) -> None:
    legit = _legit(server)
    tokens = token_like([legit["pair"]["access_token"]], ["evil"])
    header = data.draw(authorization_headers(tokens))
    sent = _raw_header(header)  # what really goes on the wire (CR, LF, NUL cannot)
    r = server.http.get("/userinfo", headers={b"Authorization": sent})
    _error_shape(r)
    if r.status_code == 200:
        token = sent.decode("utf-8", "replace").split()[-1]
        assert token in legit["issued"], "a forged bearer token was accepted"


@FUZZ
@given(data=st.data(), where=st.sampled_from(["introspect", "revoke", "token", "cookie"]))
def test_token_parameters(server: Server, data: st.DataObject, where: str) -> None:
    legit = _legit(server)
    pair = legit["pair"]
    token = data.draw(
        st.one_of(
            token_like([pair["access_token"]], ["evil"]), refresh_like([pair["refresh_token"]])
        )
    )
    if token in legit["issued"]:
        return  # the real tokens are the control, not the attack
    if where == "introspect":
        r = _post(server, "/introspect", {"token": token}, server.svc())
        _error_shape(r)
        if r.status_code == 200:
            assert r.json() == {"active": False}
    elif where == "revoke":
        r = _post(server, "/revoke", {"token": token, "client_id": "app"})
        _error_shape(r)
    else:
        form = {"grant_type": "refresh_token", "client_id": "app"}
        headers: dict[bytes, bytes] = {}
        if where == "token":
            form["refresh_token"] = token
        else:
            headers[b"Cookie"] = b"__Secure-tokenward_rt=" + _raw_header(token)
            headers[b"X-CSRF-Token"] = b"x"
        r = _post(server, "/token", form, headers)
        _error_shape(r)
        assert r.status_code != 200, "a forged refresh token was exchanged"
    # no side effect: the legitimate session is still alive after every input
    ok = server.http.get("/userinfo", headers=bearer(pair["access_token"]))
    assert ok.status_code == 200, ok.text


@FUZZ
@given(data=st.data(), path=st.sampled_from(["/token", "/revoke", "/introspect"]))
def test_whole_form_bodies(server: Server, data: st.DataObject, path: str) -> None:
    legit = _legit(server)
    pair = legit["pair"]
    tokens = st.one_of(
        token_like([pair["access_token"]], ["evil"]), refresh_like([pair["refresh_token"]])
    )
    form = data.draw(form_bodies(tokens))
    if any(v in legit["issued"] for _, v in form):
        return
    auth = data.draw(st.sampled_from([{}, server.svc(), bearer(pair["access_token"])]))
    r = _post(server, path, form, auth)
    _error_shape(r)
    if path == "/introspect" and r.status_code == 200:
        assert r.json() == {"active": False}
    if path == "/token" and r.status_code == 200:
        # only a client_credentials grant by svc can succeed without a real token
        assert dict(form).get("grant_type") == "client_credentials"
