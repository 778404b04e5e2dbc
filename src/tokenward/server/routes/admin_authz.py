"""``/admin/...`` for the authorization model (``admin`` scope): resources (APIs), roles,
a user's roles and a client's permissions.

A change that takes scope away applies at each affected session's next refresh; with
``now`` (``?now=true`` or ``"now": true``) the affected sessions are revoked at once (their
access tokens too, through the revocation feed).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from ...claims import AccessTokenClaims
from ...errors import ConfigurationError, InvalidRequest, NotFound
from ...events import emit
from ..authorization import SERVER_SCOPES
from ..authz import catalog_of, check_client_permissions
from ..authz_changes import affected_sessions
from ..deps import get_runtime, no_store, require_scope
from ..errors import OAuthError
from ..runtime import Runtime

__all__ = ["revoke_affected", "router"]

Admin = Annotated[AccessTokenClaims, Depends(require_scope("admin"))]
router = APIRouter(
    prefix="/admin",
    tags=["admin"],
    dependencies=[Depends(no_store)],
    responses={401: {"model": OAuthError}, 403: {"model": OAuthError}},
)
_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": OAuthError},
    404: {"model": OAuthError},
    409: {"model": OAuthError},
}


class ResourceOut(BaseModel):
    identifier: str
    name: str
    scopes: dict[str, str]
    default_scopes: list[str]
    access_token_ttl: int | None = None
    encryption_key: dict[str, Any] | None = None  # public JWK
    builtin: bool = False  # the server itself


class ResourceCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    identifier: str = Field(min_length=1, max_length=512)
    name: str = Field(min_length=1, max_length=200)
    scopes: dict[str, str] | list[str] = Field(min_length=1, max_length=32)
    default_scopes: list[str] = Field(default_factory=list, max_length=32)
    access_token_ttl: int | None = Field(None, gt=0, le=86400)
    encryption_key: dict[str, Any] | None = None


class RoleOut(BaseModel):
    name: str
    scopes: list[str]
    description: str | None = None


class RoleCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=64)
    scopes: list[str] = Field(max_length=64)
    description: str | None = Field(None, max_length=200)


class RoleSet(BaseModel):
    model_config = ConfigDict(extra="forbid")
    scopes: list[str] = Field(max_length=64)
    now: bool = False


class UserRolesSet(BaseModel):
    model_config = ConfigDict(extra="forbid")
    roles: list[str] = Field(max_length=32)
    now: bool = False


class ClientPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    resources: list[str] | None = Field(None, max_length=16)
    scopes: list[str] | None = Field(None, max_length=64)
    now: bool = False


class Changed(BaseModel):
    sessions_revoked: int = 0


class UserRolesOut(Changed):
    username: str
    roles: list[str]


class ClientPermissionsOut(Changed):
    client_id: str
    resources: list[str]
    scopes: list[str]


class RoleChanged(Changed):
    role: RoleOut


async def revoke_affected(
    rt: Runtime, *, usernames: list[str] | None = None, client_id: str | None = None
) -> int:
    """Revoke at once the sessions that now hold scope they may no longer have."""
    n = 0
    for fam in await affected_sessions(
        rt.store,
        issuer=rt.settings.issuer,
        usernames=usernames,
        client_id=client_id,
        console_client_id=rt.settings.console_client_id,
    ):
        n += int(await rt.sessions.revoke_session(fam.sid, reason="authorization_changed"))
    return n


def _bad(exc: ConfigurationError) -> Exception:
    """A refused value is a 400; ``NotFound``/``AlreadyExists``/``LastAdmin`` pass through
    to the error handler (404/409)."""
    return InvalidRequest(exc.description)


def _resource_out(r: Any, builtin: bool = False) -> ResourceOut:
    return ResourceOut(
        identifier=r.identifier,
        name=r.name,
        scopes=dict(r.scopes),
        default_scopes=list(r.default_scopes),
        access_token_ttl=r.access_token_ttl,
        encryption_key=r.encryption_key,
        builtin=builtin,
    )


@router.get("/resources", response_model=list[ResourceOut])
async def list_resources(request: Request, _: Admin) -> list[ResourceOut]:
    rt = get_runtime(request)
    own = ResourceOut(
        identifier=rt.settings.issuer,
        name="tokenward",
        scopes=dict(SERVER_SCOPES),
        default_scopes=["openid", "profile"],
        builtin=True,
    )
    return [own, *(_resource_out(r) for r in await rt.resources.list())]


@router.post("/resources", response_model=ResourceOut, status_code=201, responses=_ERRORS)
async def create_resource(request: Request, body: ResourceCreate, _: Admin) -> ResourceOut:
    try:
        r = await get_runtime(request).resources.add(
            body.identifier,
            name=body.name,
            scopes=body.scopes,
            default_scopes=body.default_scopes,
            access_token_ttl=body.access_token_ttl,
            encryption_key=body.encryption_key,
        )
    except ConfigurationError as exc:
        raise _bad(exc) from None
    return _resource_out(r)


@router.delete(
    "/resources/{identifier:path}",
    status_code=204,
    response_class=Response,
    responses=_ERRORS,
)
async def delete_resource(request: Request, identifier: str, _: Admin) -> Response:
    try:
        await get_runtime(request).resources.remove(identifier)
    except ConfigurationError as exc:
        raise _bad(exc) from None
    return Response(status_code=204)


@router.get("/roles", response_model=list[RoleOut])
async def list_roles(request: Request, _: Admin) -> list[RoleOut]:
    return [
        RoleOut(name=r.name, scopes=list(r.scopes), description=r.description)
        for r in await get_runtime(request).roles.list()
    ]


@router.post("/roles", response_model=RoleOut, status_code=201, responses=_ERRORS)
async def create_role(request: Request, body: RoleCreate, _: Admin) -> RoleOut:
    try:
        r = await get_runtime(request).roles.add(
            body.name, body.scopes, description=body.description
        )
    except ConfigurationError as exc:
        raise _bad(exc) from None
    return RoleOut(name=r.name, scopes=list(r.scopes), description=r.description)


async def _role_members(rt: Runtime, name: str) -> list[str]:
    return [u.username for u in await rt.store.list_users() if name in u.roles]


@router.put("/roles/{name}", response_model=RoleChanged, responses=_ERRORS)
async def set_role(request: Request, name: str, body: RoleSet, _: Admin) -> RoleChanged:
    rt = get_runtime(request)
    try:
        r = (await rt.roles.set(name, body.scopes))[1]
    except ConfigurationError as exc:
        raise _bad(exc) from None
    n = await revoke_affected(rt, usernames=await _role_members(rt, name)) if body.now else 0
    out = RoleOut(name=r.name, scopes=list(r.scopes), description=r.description)
    return RoleChanged(role=out, sessions_revoked=n)


@router.delete("/roles/{name}", response_model=Changed, responses=_ERRORS)
async def delete_role(request: Request, name: str, _: Admin, now: bool = False) -> Changed:
    rt = get_runtime(request)
    members = await _role_members(rt, name)
    try:
        await rt.roles.remove(name)
    except ConfigurationError as exc:
        raise _bad(exc) from None
    return Changed(sessions_revoked=await revoke_affected(rt, usernames=members) if now else 0)


@router.put("/users/{username}/roles", response_model=UserRolesOut, responses=_ERRORS)
async def set_user_roles(
    request: Request, username: str, body: UserRolesSet, _: Admin
) -> UserRolesOut:
    rt = get_runtime(request)
    try:
        before, user = await rt.roles.set_user_roles(username, body.roles)
    except ConfigurationError as exc:
        raise _bad(exc) from None
    if tuple(before.roles) != tuple(user.roles):
        emit("roles_changed", sub=user.username, roles=list(user.roles))
    n = await revoke_affected(rt, usernames=[username]) if body.now else 0
    return UserRolesOut(username=username, roles=list(user.roles), sessions_revoked=n)


@router.patch("/clients/{client_id}", response_model=ClientPermissionsOut, responses=_ERRORS)
async def patch_client(
    request: Request, client_id: str, body: ClientPatch, _: Admin
) -> ClientPermissionsOut:
    rt = get_runtime(request)
    try:
        before = await rt.clients.get(client_id)
        if before is None:
            raise NotFound(f"no client {client_id!r}")
        resources = body.resources if body.resources is not None else list(before.resources)
        scopes = body.scopes if body.scopes is not None else list(before.scopes)
        check_client_permissions(await catalog_of(rt.store, rt.settings.issuer), resources, scopes)
        changed = await rt.clients.set_permissions(
            client_id, resources=body.resources, scopes=body.scopes
        )
        after = changed[1]
    except ConfigurationError as exc:
        raise _bad(exc) from None
    n = await revoke_affected(rt, client_id=client_id) if body.now else 0
    return ClientPermissionsOut(
        client_id=client_id,
        resources=list(after.resources),
        scopes=list(after.scopes),
        sessions_revoked=n,
    )
