"""``GET /userinfo``: a protected resource of the server itself (RFC 6750 bearer usage) and
the OpenID Connect UserInfo endpoint (OIDC Core §5.3).

Claims: ``sub`` always; ``preferred_username`` and ``name`` (when the user has one) with the
``profile`` scope; the tokenward-specific fields ``is_admin``, ``client_id``, ``scope``,
``sid`` only for first-party clients (registered ``--first-party``, the console, or a client
trusted with the password grant), which also always get ``preferred_username``.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel

from ...claims import AccessTokenClaims
from ...store.base import Client
from ..deps import Bearer, bearer_claims, client_ip, get_runtime, no_store
from ..errors import OAuthError
from ..fastpath import NoStoreJSON
from ..riskwire import access_used

__all__ = ["UserInfo", "answer", "fast", "is_first_party", "router"]

router = APIRouter(tags=["resources"], dependencies=[Depends(no_store)])


class UserInfo(BaseModel):
    sub: str
    preferred_username: str | None = None
    name: str | None = None
    is_admin: bool | None = None
    client_id: str | None = None
    scope: str | None = None
    sid: str | None = None


def is_first_party(client: Client | None, console_client_id: str) -> bool:
    if client is None:
        return False
    return (
        client.first_party or client.client_id == console_client_id or "password" in client.grants
    )


@router.get(
    "/userinfo",
    response_model=UserInfo,
    response_model_exclude_none=True,
    responses={401: {"model": OAuthError}},  # + 503 from tokenward.server.openapi
)
async def userinfo(request: Request, claims: Bearer) -> NoStoreJSON:
    return await answer(request, claims)


async def fast(request: Request) -> NoStoreJSON:
    """The pure-ASGI way to this route (:mod:`tokenward.server.fastpath`)."""
    return await answer(request, await bearer_claims(request))


async def answer(request: Request, claims: AccessTokenClaims) -> NoStoreJSON:
    """The UserInfo answer for the verified access token ``claims``."""
    rt = get_runtime(request)
    await access_used(rt, claims, client_ip(request))  # the risk engine: concurrent_use
    # records at most record_cache_ttl old (a revoked subject is refused by the denylist
    # before this, and drops its cached record); a client_credentials token (no sid) is the
    # client's, whatever user shares its name
    user = await rt.cached_user(claims.sub) if claims.sid else None
    client = await rt.clients.get(claims.client_id, cached=True)
    first = is_first_party(client, rt.settings.console_client_id)
    scopes = (claims.scope or "").split()
    out: dict[str, Any] = {"sub": claims.sub}
    if user is not None and (first or "profile" in scopes):
        out["preferred_username"] = user.username
        name = user.attributes.get("name")
        if isinstance(name, str) and name:
            out["name"] = name
    if first:
        out.update(
            preferred_username=out.get("preferred_username"),
            is_admin=bool(user and user.is_admin),
            client_id=claims.client_id,
            scope=claims.scope,
            sid=claims.sid,
        )
    return NoStoreJSON(out)
