"""RFC 6750 behaviour of every framework integration (FastAPI, Starlette, Flask, Django/DRF)."""

from __future__ import annotations

from typing import Any

import pytest

from support.authstub import AUD, ISS
from tokenward.claims import AccessTokenClaims
from tokenward.errors import InvalidRequest, StoreUnavailable
from tokenward.guard import bearer_token, challenge
from tokenward.issuer import Issuer
from tokenward.verifier import Verifier as CoreVerifier


class StaleVerifier:
    """A verifier whose revocation mirror is past its staleness limit."""

    def verify(self, token: str) -> AccessTokenClaims:
        raise StoreUnavailable("revocation list not refreshed for more than 60 s", retry_after=15)


@pytest.fixture
def verifier(issuer: Issuer, fclock: Any) -> CoreVerifier:
    return CoreVerifier(issuer.keyring.public_jwks(), issuer=ISS, audience=AUD, clock=fclock)


@pytest.fixture
def tokens(issuer: Issuer) -> dict[str, str]:
    return {
        "read": issuer.issue_access_token(sub="alice", client_id="web", scope="read"),
        "none": issuer.issue_access_token(sub="bob", client_id="web"),
    }


def bearer(tok: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tok}"}


def test_bearer_token_parsing():
    assert bearer_token(None) is None
    assert bearer_token("Basic YTpi") is None
    assert bearer_token("bearer abc.def-_~+/=") == "abc.def-_~+/="
    for bad in ("Bearer", "Bearer ", "Bearer a b", 'Bearer a"b'):
        with pytest.raises(InvalidRequest):
            bearer_token(bad)


def test_challenge_quotes_safely():
    h = challenge("api", "invalid_token", 'bad "thing"\\\n', "read write")
    want = 'Bearer realm="api", error="invalid_token", error_description="bad thing"'
    assert h == want + ', scope="read write"'


MISSING_BODY = {"error": "unauthorized", "error_description": "a bearer token is required"}


def check_contract(call: Any, tokens: dict[str, str], *, body_of: Any = lambda r: r.json()) -> None:
    """``call(headers) -> response`` for a route that requires scope ``read``."""
    r = call({})
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"] == 'Bearer realm="tokenward"'
    assert body_of(r) == MISSING_BODY
    r = call({"Authorization": "Bearer"})
    assert r.status_code == 400 and 'error="invalid_request"' in r.headers["WWW-Authenticate"]
    r = call(bearer(tokens["read"][:-4] + "AAAA"))
    assert r.status_code == 401
    want = 'Bearer realm="tokenward", error="invalid_token"'
    assert r.headers["WWW-Authenticate"].startswith(want)
    assert tokens["read"][:20] not in r.headers["WWW-Authenticate"] + str(body_of(r))
    r = call(bearer(tokens["none"]))
    assert r.status_code == 403
    assert 'error="insufficient_scope"' in r.headers["WWW-Authenticate"]
    assert 'scope="read"' in r.headers["WWW-Authenticate"]
    r = call(bearer(tokens["read"]))
    assert r.status_code == 200 and body_of(r)["sub"] == "alice"


# -- FastAPI ----------------------------------------------------------------------------------
def _fastapi_app(verifier: Any) -> Any:
    from fastapi import Depends, FastAPI

    from tokenward.guard.fastapi import Guard

    guard = Guard(verifier)
    app = FastAPI(lifespan=guard.lifespan)
    guard.install(app)

    @app.get("/orders")
    async def orders(claims: AccessTokenClaims = Depends(guard.require(scopes=["read"]))):  # noqa: B008
        return {"sub": claims.sub}

    return app


def test_fastapi_dependency(verifier, tokens):
    from fastapi.testclient import TestClient

    with TestClient(_fastapi_app(verifier)) as client:
        check_contract(lambda h: client.get("/orders", headers=h), tokens)
        r = client.get("/orders", headers=bearer(tokens["none"]))
        assert r.json() == {
            "error": "insufficient_scope",
            "error_description": r.json()["error_description"],
        }
        assert r.json()["error_description"]
        assert "tokenward" in client.get("/openapi.json").json()["components"]["securitySchemes"]


def test_fastapi_stale_is_503_with_retry_after(tokens):
    from fastapi.testclient import TestClient

    with TestClient(_fastapi_app(StaleVerifier())) as client:
        r = client.get("/orders", headers=bearer(tokens["read"]))
    assert r.status_code == 503 and r.headers["Retry-After"] == "15"
    assert r.json()["error"] == "temporarily_unavailable"


# -- Starlette --------------------------------------------------------------------------------
def _starlette_app(verifier: Any) -> Any:
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.responses import JSONResponse
    from starlette.routing import Route, WebSocketRoute

    from tokenward.guard.starlette import GuardMiddleware, claims_of, require_scopes

    async def orders(request: Any) -> JSONResponse:
        return JSONResponse({"sub": claims_of(request).sub})

    async def admin(request: Any) -> JSONResponse:
        return JSONResponse({"sub": require_scopes(request, "admin").sub})

    async def health(request: Any) -> JSONResponse:
        return JSONResponse({"ok": True})

    async def ws(websocket: Any) -> None:
        await websocket.accept()
        await websocket.send_json({"sub": websocket.state.token_claims.sub})
        await websocket.close()

    mw = Middleware(GuardMiddleware, verifier=verifier, scopes=["read"], exclude=["/healthz"])
    routes = [Route("/orders", orders), Route("/admin", admin), Route("/healthz", health),
              WebSocketRoute("/ws", ws)]  # fmt: skip
    return Starlette(routes=routes, middleware=[mw])


def test_starlette_middleware(verifier, tokens):
    from starlette.testclient import TestClient
    from starlette.websockets import WebSocketDisconnect

    client = TestClient(_starlette_app(verifier))
    check_contract(lambda h: client.get("/orders", headers=h), tokens)
    assert client.get("/orders").json() == MISSING_BODY
    assert client.get("/healthz").status_code == 200  # excluded path
    r = client.get("/admin", headers=bearer(tokens["read"]))
    assert r.status_code == 403 and 'scope="admin"' in r.headers["WWW-Authenticate"]
    with client.websocket_connect("/ws", headers=bearer(tokens["read"])) as ws:
        assert ws.receive_json() == {"sub": "alice"}
    with pytest.raises(WebSocketDisconnect) as ei, client.websocket_connect("/ws") as ws:
        ws.receive_json()
    assert ei.value.code == 1008
    r = TestClient(_starlette_app(StaleVerifier())).get("/orders", headers=bearer(tokens["read"]))
    assert r.status_code == 503 and r.headers["Retry-After"] == "15"
    assert "WWW-Authenticate" not in r.headers


# -- Flask ------------------------------------------------------------------------------------
def _flask_app(verifier: Any) -> Any:
    from flask import Flask

    from tokenward.guard.flask import Guard, current_claims

    app = Flask("t")
    guard = Guard(app, verifier=verifier)

    @app.get("/orders")
    @guard.require(scopes=["read"])
    def orders() -> Any:
        return {"sub": current_claims().sub}

    return app


def test_flask_extension(verifier, tokens):
    client = _flask_app(verifier).test_client()
    check_contract(lambda h: client.get("/orders", headers=h), tokens, body_of=lambda r: r.json)
    r = _flask_app(StaleVerifier()).test_client().get("/orders", headers=bearer(tokens["read"]))
    assert r.status_code == 503 and r.headers["Retry-After"] == "15"
    assert r.json["error"] == "temporarily_unavailable"


def test_flask_config_builds_the_remote_verifier():
    from flask import Flask

    from tokenward.errors import ConfigurationError
    from tokenward.guard import Verifier
    from tokenward.guard.flask import Guard

    with pytest.raises(ConfigurationError):
        Guard(Flask("x"))
    app = Flask("y")
    app.config["TOKENWARD_GUARD"] = {"jwks_url": "http://127.0.0.1:9/jwks", "issuer": ISS,
                                     "audience": AUD, "http_timeout": 0.2}  # fmt: skip
    g = Guard(app)
    try:
        assert isinstance(g.verifier, Verifier) and app.extensions["tokenward_guard"] is g
    finally:
        g.close()


# -- Django / DRF -----------------------------------------------------------------------------
@pytest.fixture
def django_ready(verifier: CoreVerifier) -> Any:
    from support.django_setup import configure

    configure()
    from tokenward.guard import django as dj

    dj.set_verifier(verifier)
    yield dj
    dj.set_verifier(None)


class _Resp:
    def __init__(self, r: Any) -> None:
        self.status_code = r.status_code
        self.headers = {k: v for k, v in r.items()}
        self._r = r

    def json(self) -> Any:
        import json

        if hasattr(self._r, "render") and not getattr(self._r, "is_rendered", True):
            self._r.render()
        return json.loads(self._r.content)


def test_django_middleware_and_decorator(django_ready, tokens):
    from django.http import JsonResponse
    from django.test import RequestFactory

    dj = django_ready

    @dj.require_token(scopes=["read"])
    def view(request: Any) -> JsonResponse:
        return JsonResponse({"sub": request.token_claims.sub})

    mw = dj.GuardMiddleware(view)
    rf = RequestFactory()

    def call(headers: dict[str, str]) -> _Resp:
        meta = {"HTTP_AUTHORIZATION": headers["Authorization"]} if headers else {}
        return _Resp(mw(rf.get("/orders", **meta)))

    check_contract(call, tokens)
    # without the middleware the decorator verifies on its own
    r = view(rf.get("/orders", HTTP_AUTHORIZATION=f"Bearer {tokens['read']}"))
    assert r.status_code == 200
    dj.set_verifier(StaleVerifier())
    r = _Resp(mw(rf.get("/orders", HTTP_AUTHORIZATION=f"Bearer {tokens['read']}")))
    assert r.status_code == 503 and r.headers["Retry-After"] == "15"


def test_drf_authentication_and_scopes(django_ready, tokens):
    from rest_framework.response import Response
    from rest_framework.test import APIRequestFactory
    from rest_framework.views import APIView

    dj = django_ready

    class Orders(APIView):
        authentication_classes = (dj.TokenwardAuthentication,)
        permission_classes = (dj.HasScopes,)
        required_scopes = ("read",)

        def get(self, request: Any) -> Response:
            assert isinstance(request.user, dj.TokenUser) and request.user.is_authenticated
            return Response({"sub": request.user.username, "scope": request.auth.scope})

    view = Orders.as_view()
    rf = APIRequestFactory()

    def call(headers: dict[str, str]) -> _Resp:
        meta = {"HTTP_AUTHORIZATION": headers["Authorization"]} if headers else {}
        return _Resp(view(rf.get("/orders", **meta)))

    check_contract(call, tokens)
    r = call(bearer(tokens["read"][:-4] + "AAAA"))
    assert r.json()["error"] == "invalid_token"
    dj.set_verifier(StaleVerifier())
    r = call(bearer(tokens["read"]))
    assert r.status_code == 503 and r.headers["Retry-After"] == "15"


def test_missing_bearer_token_is_401_unauthorized_in_every_integration(
    verifier: Any, django_ready: Any
) -> None:
    """RFC 6750 §3.1: no credentials → a challenge without an error code, and the same body
    as the server's, in FastAPI, Starlette, Flask, Django and DRF."""
    from django.test import RequestFactory
    from fastapi.testclient import TestClient
    from rest_framework.response import Response
    from rest_framework.test import APIRequestFactory
    from rest_framework.views import APIView

    answers: dict[str, tuple[int, str, Any]] = {}
    with TestClient(_fastapi_app(verifier)) as c:
        r = c.get("/orders")
        answers["fastapi"] = (r.status_code, r.headers["WWW-Authenticate"], r.json())
    r = TestClient(_starlette_app(verifier)).get("/orders")
    answers["starlette"] = (r.status_code, r.headers["WWW-Authenticate"], r.json())
    fr = _flask_app(verifier).test_client().get("/orders")
    answers["flask"] = (fr.status_code, fr.headers["WWW-Authenticate"], fr.json)
    dj = django_ready

    @dj.require_token(scopes=["read"])
    def view(request: Any) -> Any:
        raise AssertionError("not reached")

    d = _Resp(dj.GuardMiddleware(view)(RequestFactory().get("/orders")))
    answers["django"] = (d.status_code, d.headers["WWW-Authenticate"], d.json())

    class Orders(APIView):
        authentication_classes = (dj.TokenwardAuthentication,)
        permission_classes = (dj.HasScopes,)
        required_scopes = ("read",)

        def get(self, request: Any) -> Response:
            raise AssertionError("not reached")

    rr = _Resp(Orders.as_view()(APIRequestFactory().get("/orders")))
    answers["drf"] = (rr.status_code, rr.headers["WWW-Authenticate"], rr.json())
    for name, (status, challenge_header, body) in answers.items():
        assert status == 401, name
        assert challenge_header == 'Bearer realm="tokenward"', name
        assert "error=" not in challenge_header, name
        assert body == MISSING_BODY, name
