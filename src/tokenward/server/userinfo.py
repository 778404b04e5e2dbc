"""``GET /userinfo``: a protected resource of the server itself (RFC 6750 bearer usage)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel

from .deps import Bearer, get_runtime, no_store
from .errors import OAuthError

__all__ = ["UserInfo", "router"]

router = APIRouter(tags=["resources"], dependencies=[Depends(no_store)])


class UserInfo(BaseModel):
    sub: str
    preferred_username: str | None = None
    is_admin: bool = False
    client_id: str
    scope: str | None = None
    sid: str | None = None


@router.get(
    "/userinfo",
    response_model=UserInfo,
    responses={401: {"model": OAuthError}},  # + 503 from tokenward.server.openapi
)
async def userinfo(request: Request, claims: Bearer) -> UserInfo:
    # a client_credentials token (no sid) is the client's, whatever user shares its name
    user = await get_runtime(request).users.get(claims.sub) if claims.sid else None
    return UserInfo(
        sub=claims.sub,
        preferred_username=user.username if user is not None else None,
        is_admin=bool(user and user.is_admin),
        client_id=claims.client_id,
        scope=claims.scope,
        sid=claims.sid,
    )
