"""The user's own grants to apps and browser sign-ins, for "Apps with access" in the console.

* ``GET /consents``: the apps the caller consented to (client, name, scopes, when);
  ``DELETE /consents/{client_id}``: withdraw it — the consent is forgotten and every session
  of that client for the user is revoked (refresh families and, via ``sid`` events, their
  access tokens), so the app must ask again.
* ``GET /sessions/signins``: the caller's sign-in sessions at the server (browser logins of the
  authorization code and device flows), listed beside the refresh sessions of ``/sessions``;
  ``DELETE /sessions/signins/{sid}`` ends one (with back-channel logout).
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel
from starlette.exceptions import HTTPException

from ..deps import Bearer, get_runtime, no_store
from ..errors import OAuthError
from .authorize import CONSENT_KIND, consent_key
from .logout import notify_ended

__all__ = ["router"]

router = APIRouter(tags=["sessions"], dependencies=[Depends(no_store)])
_ERRORS: dict[int | str, dict[str, object]] = {
    401: {"model": OAuthError},
    404: {"model": OAuthError},
    503: {"model": OAuthError},
}


class ConsentOut(BaseModel):
    client_id: str
    name: str | None = None
    scopes: list[str]
    granted_at: float


class SigninOut(BaseModel):
    sid: str
    created_at: float
    last_seen: float
    auth_time: float
    ip: str | None = None
    user_agent: str | None = None
    clients: list[str]


@router.get("/consents", response_model=list[ConsentOut], responses=_ERRORS)
async def list_consents(request: Request, claims: Bearer) -> list[ConsentOut]:
    rt = get_runtime(request)
    if not claims.sid:
        return []
    out = []
    for rec in await rt.store.list_records(CONSENT_KIND, claims.sub, now=rt.clock.now()):
        client = await rt.clients.get(str(rec.data["client_id"]))
        out.append(
            ConsentOut(
                client_id=str(rec.data["client_id"]),
                name=client.name if client else None,
                scopes=list(rec.data.get("scopes", [])),
                granted_at=float(rec.data.get("at", 0.0)),
            )
        )
    return out


@router.delete("/consents/{client_id}", status_code=204, response_class=Response, responses=_ERRORS)
async def revoke_consent(request: Request, client_id: str, claims: Bearer) -> Response:
    rt = get_runtime(request)
    if not claims.sid or len(client_id) > 256:
        raise HTTPException(404)
    if not await rt.store.delete_record(CONSENT_KIND, consent_key(claims.sub, client_id)):
        raise HTTPException(404)
    for info in await rt.sessions.list_sessions(claims.sub):
        if info.client_id == client_id and info.active:
            await rt.sessions.revoke_session(info.session_id, reason="consent_revoked")
    return Response(status_code=204)


@router.get("/sessions/signins", response_model=list[SigninOut], responses=_ERRORS)
async def list_signins(request: Request, claims: Bearer) -> list[SigninOut]:
    rt = get_runtime(request)
    if not claims.sid:
        return []
    return [
        SigninOut(
            sid=s.sid,
            created_at=s.created_at,
            last_seen=s.last_seen,
            auth_time=s.auth_time,
            ip=s.ip,
            user_agent=s.user_agent,
            clients=s.clients,
        )
        for s in await rt.signins.list_for(claims.sub)
    ]


@router.delete(
    "/sessions/signins/{sid}", status_code=204, response_class=Response, responses=_ERRORS
)
async def end_signin(request: Request, sid: str, claims: Bearer) -> Response:
    rt = get_runtime(request)
    s = await rt.signins.get(sid[:64]) if claims.sid else None
    if s is None or s.sub != claims.sub:
        raise HTTPException(404)
    ended = await rt.signins.end(s.sid)
    if ended is not None:
        await notify_ended(rt, [ended], reason="user_revoked")
    return Response(status_code=204)
