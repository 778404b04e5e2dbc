"""``/.well-known/jwks.json`` (RFC 7517) and authorization-server metadata (RFC 8414), the
latter also at ``/.well-known/openid-configuration`` for clients that only look there."""

from __future__ import annotations

import hashlib
from typing import Any

import orjson
from fastapi import APIRouter, Request, Response

from ...dpop import DPOP_ALGORITHMS
from ..deps import get_runtime
from ..grants import grant_names
from ..idtoken import ID_TOKEN_ALG

__all__ = ["metadata", "router", "supported_scopes"]

router = APIRouter(tags=["discovery"])


def metadata(request: Request, scopes: list[str] | None = None) -> dict[str, Any]:
    """RFC 8414 §2 metadata. ``scopes``: ``scopes_supported`` (see :func:`supported_scopes`)."""
    rt = get_runtime(request)
    base = rt.settings.issuer
    auth_methods = ["client_secret_basic", "client_secret_post", "none"]
    # only what is implemented (RFC 8414 §2, OpenID Connect Discovery 1.0 §3)
    return {
        "issuer": base,
        "authorization_endpoint": f"{base}/authorize",
        "token_endpoint": f"{base}/token",
        "jwks_uri": f"{base}/.well-known/jwks.json",
        "revocation_endpoint": f"{base}/revoke",
        "introspection_endpoint": f"{base}/introspect",
        "userinfo_endpoint": f"{base}/userinfo",
        "device_authorization_endpoint": f"{base}/device_authorization",
        "end_session_endpoint": f"{base}/end_session",
        "backchannel_logout_supported": True,
        "backchannel_logout_session_supported": True,
        "grant_types_supported": list(grant_names()),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "code_challenge_methods_supported": ["S256"],
        "authorization_response_iss_parameter_supported": True,
        "prompt_values_supported": ["none", "login", "consent"],
        "subject_types_supported": ["public"],
        "token_endpoint_auth_methods_supported": auth_methods,
        "revocation_endpoint_auth_methods_supported": auth_methods,
        "introspection_endpoint_auth_methods_supported": auth_methods[:2],
        "id_token_signing_alg_values_supported": [ID_TOKEN_ALG],
        "scopes_supported": scopes if scopes is not None else ["admin", "revocations"],
        "claims_supported": [
            "iss",
            "sub",
            "aud",
            "exp",
            "iat",
            "auth_time",
            "nonce",
            "sid",
            "at_hash",
            "preferred_username",
            "name",
        ],
        "service_documentation": f"{base}/docs",
        "revocation_feed_endpoint": f"{base}/revocations",
        "dpop_signing_alg_values_supported": list(DPOP_ALGORITHMS),  # RFC 9449 §5.1
    }


async def supported_scopes(request: Request) -> list[str]:
    """The scopes some client can get: defined by a resource and allowed to a client."""
    rt = get_runtime(request)
    catalog = await rt.authorizer.catalog()
    allowed: set[str] = set()
    for client in await rt.clients.list():
        allowed.update(rt.authorizer.effective(client).scopes)
    return sorted(s for s in allowed if s in catalog.owner)


@router.get(
    "/.well-known/jwks.json",
    summary="Public signing keys (RFC 7517 JWK Set)",
    response_class=Response,
    responses={200: {"content": {"application/jwk-set+json": {}}}},
)
async def jwks(request: Request) -> Response:
    rt = get_runtime(request)
    keys = rt.keyring.public_jwks()["keys"] + rt.id_tokens.public_jwks()
    body = orjson.dumps({"keys": keys})
    etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    headers = {"Cache-Control": f"public, max-age={rt.settings.jwks_max_age}", "ETag": etag}
    if _etag_matches(request.headers.get("if-none-match"), etag):
        # RFC 9110 §13.1.2: the cached copy is current; no body
        return Response(status_code=304, headers=headers)
    return Response(body, media_type="application/jwk-set+json", headers=headers)


def _etag_matches(header: str | None, etag: str) -> bool:
    """``If-None-Match`` (RFC 9110 §13.1.2): ``*`` or a list of tags, weak compared."""
    if not header:
        return False
    tags = {t.strip().removeprefix("W/") for t in header.split(",")}
    return "*" in tags or etag in tags


@router.get("/.well-known/oauth-authorization-server", summary="RFC 8414 metadata")
async def oauth_metadata(request: Request) -> dict[str, Any]:
    return metadata(request, await supported_scopes(request))


@router.get("/.well-known/openid-configuration", summary="RFC 8414 metadata (OIDC path)")
async def openid_configuration(request: Request) -> dict[str, Any]:
    return metadata(request, await supported_scopes(request))
