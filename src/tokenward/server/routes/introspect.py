"""``POST /introspect`` (RFC 7662).

Only authenticated confidential clients may ask (§2.1, against token scanning). An inactive
token — unknown, malformed, expired, revoked, consumed — is exactly ``{"active": false}``
with no reason (§2.2). Fail closed: the store must have answered a ping less than
``STORE_FRESHNESS`` seconds ago (one ping shared by concurrent requests,
:class:`tokenward.server.cache.StoreHealth`), else the answer is 503, never ``active: true``
from a possibly stale revocation mirror. An access token is then answered from its signature
and the in-memory denylist (no store read); the caller's client record may be up to
``record_cache_ttl`` old (its secret is checked against the stored hash every time).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from ...errors import InvalidRequest, InvalidToken
from ...sessions import parse_refresh_token
from ..auth import authenticate_client
from ..deps import TOKEN_FORM, get_runtime, read_form
from ..errors import OAuthError
from ..fastpath import NoStoreJSON, read_form_fast
from ..openapi import CLIENT_AUTH

__all__ = ["STORE_FRESHNESS", "answer", "fast", "introspect", "router"]

router = APIRouter(tags=["oauth"])

_FORM = {**TOKEN_FORM, "security": CLIENT_AUTH}

_INACTIVE: dict[str, Any] = {"active": False}

#: seconds a successful store ping vouches for the store being reachable
STORE_FRESHNESS = 0.25


@router.post(
    "/introspect",
    summary="Token introspection (RFC 7662)",
    openapi_extra=_FORM,
    responses={
        200: {
            "description": "token state",
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "required": ["active"],
                        "properties": {"active": {"type": "boolean"}},
                    }
                }
            },
        },
        400: {"model": OAuthError},
        401: {"model": OAuthError},
        503: {"model": OAuthError},
    },
)
async def introspect(request: Request) -> Response:
    return await answer(request, await read_form(request))


async def fast(request: Request) -> Response:
    """The pure-ASGI way to this route (:mod:`tokenward.server.fastpath`)."""
    return await answer(request, await read_form_fast(request))


async def answer(request: Request, form: dict[str, str]) -> Response:
    """The introspection answer to the request whose form is ``form``."""
    rt = get_runtime(request)
    await authenticate_client(request, form, allow_public=False, cached=True)
    token = form.get("token")
    if token is None:
        raise InvalidRequest("token is required")
    await rt.health.check(STORE_FRESHNESS)  # fail closed
    body = _INACTIVE
    if parse_refresh_token(token) is not None:
        info = await rt.sessions.introspect_refresh_token(token)
        if info is not None:
            body = {
                "active": True,
                "token_type": "refresh_token",
                "scope": info.scope,
                "client_id": info.client_id,
                "username": info.sub,
                "sub": info.sub,
                "sid": info.session_id,
                "iss": rt.settings.issuer,
                # RFC 7662 §2.2: iat is when this token was issued; the session's start is
                # auth_time (OIDC Core §2)
                "iat": int(info.token_issued_at or info.created_at),
                "auth_time": int(info.created_at),
                "exp": int(min(info.expires_at, info.idle_expires_at)),
            }
            if info.dpop_jkt:  # RFC 9449 §6.2
                body["cnf"] = {"jkt": info.dpop_jkt}
    elif token.count(".") in (2, 4):  # a JWS, or a JWE with TOKENWARD_JWE
        try:
            c = rt.verifier.verify(token)
        except InvalidToken:
            c = None
        if c is not None:
            body = {
                "active": True,
                "token_type": "DPoP" if c.jkt else "Bearer",
                "scope": c.scope or "",
                "client_id": c.client_id,
                "username": c.sub,
                "sub": c.sub,
                "aud": list(c.aud) if len(c.aud) > 1 else c.aud[0],
                "iss": c.iss,
                "iat": int(c.iat),
                "exp": int(c.exp),
                "jti": c.jti,
            }
            if c.sid:
                body["sid"] = c.sid
            if c.jkt:  # RFC 9449 §6.2
                body["cnf"] = {"jkt": c.jkt}
    return NoStoreJSON(body)
