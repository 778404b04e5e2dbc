"""The caller's own sessions: ``GET /sessions``, ``DELETE /sessions/{sid}`` and the risk
engine's notices for the caller, ``GET /sessions/notices``.

Only a user's session token (one with a ``sid``) has sessions: a ``client_credentials`` token's
``sub`` is the client id, which must not act on a user who happens to share that name.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel
from starlette.exceptions import HTTPException

from ...sessions import SessionInfo
from ..deps import Bearer, get_runtime, no_store
from ..errors import OAuthError

__all__ = ["NoticeOut", "SessionOut", "router", "session_out"]

router = APIRouter(tags=["sessions"], dependencies=[Depends(no_store)])


class SessionOut(BaseModel):
    session_id: str
    client_id: str
    scope: str
    created_at: float
    last_used_at: float
    expires_at: float
    idle_expires_at: float
    user_agent: str | None
    ip: str | None
    device: str | None
    dpop_jkt: str | None = None  # the DPoP key the session is bound to (RFC 9449 §5)
    current: bool = False


def session_out(info: SessionInfo, current_sid: str | None = None) -> SessionOut:
    fields = {name: getattr(info, name) for name in SessionOut.model_fields if name != "current"}
    return SessionOut(**fields, current=info.session_id == current_sid)


@router.get(
    "/sessions",
    response_model=list[SessionOut],
    responses={401: {"model": OAuthError}, 503: {"model": OAuthError}},
)
async def list_sessions(request: Request, claims: Bearer) -> list[SessionOut]:
    if not claims.sid:  # a client's own token: no user sessions
        return []
    infos = await get_runtime(request).sessions.list_sessions(claims.sub)
    return [session_out(i, claims.sid) for i in infos]


class NoticeOut(BaseModel):
    at: float
    text: str


@router.get(
    "/sessions/notices",
    response_model=list[NoticeOut],
    responses={401: {"model": OAuthError}, 503: {"model": OAuthError}},
)
async def list_notices(request: Request, claims: Bearer) -> list[NoticeOut]:
    """What the risk engine told this user, newest first ("new sign-in from …", "session
    ended: used from two places …"), as this instance saw it."""
    risk = get_runtime(request).risk
    if not claims.sid or risk is None:
        return []
    return [NoticeOut(at=t, text=text) for t, text in risk.notices(claims.sub)]


@router.delete(
    "/sessions/{sid}",
    status_code=204,
    response_class=Response,
    responses={401: {"model": OAuthError}, 404: {"model": OAuthError}},
)
async def delete_session(request: Request, sid: str, claims: Bearer) -> Response:
    rt = get_runtime(request)
    if not claims.sid:  # a client's own token acts on no user's sessions
        raise HTTPException(404)
    info = await rt.sessions.get_session(sid) if len(sid) <= 256 else None
    if info is None or info.sub != claims.sub or not info.active:
        raise HTTPException(404)
    from .logout import end_family

    await end_family(rt, sid, reason="user_revoked")
    return Response(status_code=204)
