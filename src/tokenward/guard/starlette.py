"""Starlette (and any ASGI app): a pure ASGI middleware that requires a valid bearer token.

::

    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from tokenward.guard.starlette import GuardMiddleware, claims_of

    app = Starlette(routes=..., middleware=[
        Middleware(GuardMiddleware, verifier=verifier, scopes=["read"], exclude=["/healthz"]),
    ])

    async def endpoint(request):
        claims = claims_of(request)   # AccessTokenClaims; also request.state.token_claims

Every HTTP request (and WebSocket handshake) whose path is not excluded must carry a token
with every scope in ``scopes``; failures are answered right here with the RFC 6750 status,
``WWW-Authenticate`` header and a JSON ``{"error", "error_description"}`` body (a WebSocket is
closed with code 1008). :func:`require_scopes` checks extra scopes inside an endpoint.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

import orjson
from starlette.datastructures import URL

from ..claims import AccessTokenClaims
from ..errors import InsufficientScope
from .bearer import DEFAULT_REALM, AuthFailure, TokenVerifier, aauthenticate, failure_for
from .dpop import header_values

__all__ = ["GuardMiddleware", "claims_of", "require_scopes"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class GuardMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        verifier: TokenVerifier,
        scopes: Iterable[str] = (),
        realm: str = DEFAULT_REALM,
        exclude: Iterable[str] = (),
    ) -> None:
        self.app = app
        self.verifier = verifier
        self.scopes = tuple(scopes)
        self.realm = realm
        self.exclude = frozenset(exclude)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket") or scope.get("path") in self.exclude:
            await self.app(scope, receive, send)
            return
        authorization: str | None = None
        proofs: list[str] = []
        for name, value in scope.get("headers", ()):
            if name == b"authorization" and authorization is None:
                authorization = value.decode("latin-1")
            elif name == b"dpop":
                proofs.append(value.decode("latin-1"))
        result = await aauthenticate(
            self.verifier,
            authorization,
            scopes=self.scopes,
            realm=self.realm,
            method=scope.get("method", "GET"),
            url=str(URL(scope=scope)),
            dpop=header_values(proofs),
        )
        if isinstance(result, AuthFailure):
            if kind == "websocket":
                await send({"type": "websocket.close", "code": 1008})
            else:
                await send_failure(send, result)
            return
        scope.setdefault("state", {})["token_claims"] = result
        await self.app(scope, receive, send)


async def send_failure(send: Send, failure: AuthFailure) -> None:
    """Write an :class:`AuthFailure` as a complete ASGI HTTP response."""
    body = orjson.dumps(failure.body)
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *((k.lower().encode(), v.encode("latin-1")) for k, v in failure.headers.items()),
    ]
    await send({"type": "http.response.start", "status": failure.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def claims_of(request: Any) -> AccessTokenClaims:
    """The claims the middleware put on the request (``request.state.token_claims``)."""
    claims = request.scope.get("state", {}).get("token_claims")
    if not isinstance(claims, AccessTokenClaims):
        raise LookupError("GuardMiddleware did not run for this request")
    return claims


def require_scopes(request: Any, *scopes: str, realm: str = DEFAULT_REALM) -> AccessTokenClaims:
    """Inside an endpoint: the claims, or ``HTTPException(403)`` with ``insufficient_scope``."""
    from starlette.exceptions import HTTPException

    claims = claims_of(request)
    if not claims.has_scopes(*scopes):
        f = failure_for(
            InsufficientScope("the token lacks a required scope"), realm=realm, scopes=scopes
        )
        raise HTTPException(f.status, detail=f.body["error_description"], headers=f.headers)
    return claims
