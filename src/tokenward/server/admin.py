"""``/admin/...``: users, clients, a subject's sessions, revoke a subject, keys (``admin`` scope).

Disabling a user revokes every session it has ("log out everywhere" for that subject).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException

from ..claims import AccessTokenClaims
from ..errors import ConfigurationError, InvalidRequest
from .deps import get_runtime, require_scope
from .errors import JSON, OAuthError
from .sessions import SessionOut, session_out

__all__ = ["router"]

_admin = require_scope("admin")
Admin = Annotated[AccessTokenClaims, Depends(_admin)]
router = APIRouter(
    prefix="/admin",
    tags=["admin"],
    responses={401: {"model": OAuthError}, 403: {"model": OAuthError}},
)


class UserOut(BaseModel):
    username: str
    is_admin: bool
    disabled: bool
    created_at: float


class UserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: str = Field(min_length=1, max_length=256)
    password: str = Field(min_length=8, max_length=1024)
    is_admin: bool = False


class ClientOut(BaseModel):
    client_id: str
    public: bool
    grants: list[str]
    scopes: list[str]
    name: str | None = None
    created_at: float
    client_secret: str | None = None  # only in the creation response


class ClientCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    client_id: str = Field(min_length=1, max_length=256)
    public: bool = False
    grants: list[str] = Field(default_factory=lambda: ["refresh_token"], max_length=3)
    scopes: list[str] = Field(default_factory=list, max_length=32)
    name: str | None = Field(None, max_length=256)


class KeyOut(BaseModel):
    kid: str
    alg: str
    state: str
    created_at: float
    activated_at: float | None = None
    retired_at: float | None = None


class Revoked(BaseModel):
    sessions_revoked: int


@router.get("/users", response_model=list[UserOut])
async def list_users(request: Request, _: Admin) -> list[UserOut]:
    users = await get_runtime(request).users.list()
    return [
        UserOut(
            username=u.username, is_admin=u.is_admin, disabled=u.disabled, created_at=u.created_at
        )
        for u in users
    ]


@router.post(
    "/users", response_model=UserOut, status_code=201, responses={400: {"model": OAuthError}}
)
async def create_user(request: Request, body: UserCreate, _: Admin) -> UserOut:
    try:
        u = await get_runtime(request).users.create(
            body.username, body.password, is_admin=body.is_admin
        )
    except ConfigurationError as exc:
        raise InvalidRequest(exc.description) from None
    return UserOut(
        username=u.username, is_admin=u.is_admin, disabled=u.disabled, created_at=u.created_at
    )


async def _set_disabled(request: Request, username: str, disabled: bool) -> int:
    rt = get_runtime(request)
    try:
        await rt.users.set_disabled(username, disabled)
    except ConfigurationError:
        raise HTTPException(404) from None
    return await rt.sessions.revoke_subject(username) if disabled else 0


@router.post(
    "/users/{username}/disable", response_model=Revoked, responses={404: {"model": OAuthError}}
)
async def disable_user(request: Request, username: str, _: Admin) -> Revoked:
    return Revoked(sessions_revoked=await _set_disabled(request, username, True))


@router.post(
    "/users/{username}/enable", response_model=Revoked, responses={404: {"model": OAuthError}}
)
async def enable_user(request: Request, username: str, _: Admin) -> Revoked:
    return Revoked(sessions_revoked=await _set_disabled(request, username, False))


@router.get("/subjects/{sub}/sessions", response_model=list[SessionOut])
async def subject_sessions(request: Request, sub: str, _: Admin) -> list[SessionOut]:
    return [session_out(i) for i in await get_runtime(request).sessions.list_sessions(sub)]


@router.post("/subjects/{sub}/revoke", response_model=Revoked)
async def revoke_subject(request: Request, sub: str, _: Admin) -> Revoked:
    return Revoked(sessions_revoked=await get_runtime(request).sessions.revoke_subject(sub))


@router.delete(
    "/sessions/{sid}",
    status_code=204,
    response_class=Response,
    responses={404: {"model": OAuthError}},
)
async def revoke_session(request: Request, sid: str, _: Admin) -> Response:
    if not await get_runtime(request).sessions.revoke_session(sid[:256], reason="admin"):
        raise HTTPException(404)
    return Response(status_code=204)


@router.get("/clients", response_model=list[ClientOut])
async def list_clients(request: Request, _: Admin) -> list[ClientOut]:
    return [
        ClientOut(
            client_id=c.client_id,
            public=c.public,
            grants=list(c.grants),
            scopes=list(c.scopes),
            name=c.name,
            created_at=c.created_at,
        )
        for c in await get_runtime(request).clients.list()
    ]


@router.post(
    "/clients", response_model=ClientOut, status_code=201, responses={400: {"model": OAuthError}}
)
async def create_client(request: Request, body: ClientCreate, _: Admin) -> JSON:
    try:
        c, secret = await get_runtime(request).clients.create(
            body.client_id,
            public=body.public,
            grants=body.grants,
            scopes=body.scopes,
            name=body.name,
        )
    except ConfigurationError as exc:
        raise InvalidRequest(exc.description) from None
    out = ClientOut(
        client_id=c.client_id,
        public=c.public,
        grants=list(c.grants),
        scopes=list(c.scopes),
        name=c.name,
        created_at=c.created_at,
        client_secret=secret,
    )
    return JSON(out.model_dump(), status_code=201, headers={"Cache-Control": "no-store"})


def _keys(request: Request) -> list[KeyOut]:
    return [
        KeyOut(
            kid=k.kid,
            alg=k.alg,
            state=k.state.value,
            created_at=k.created_at,
            activated_at=k.activated_at,
            retired_at=k.retired_at,
        )
        for k in get_runtime(request).keyring
    ]


@router.get("/keys", response_model=list[KeyOut])
async def list_keys(request: Request, _: Admin) -> list[KeyOut]:
    return _keys(request)


@router.post("/keys/rotate", response_model=list[KeyOut])
async def rotate_keys(request: Request, _: Admin) -> list[KeyOut]:
    await get_runtime(request).check_keys(force=True)
    return _keys(request)
