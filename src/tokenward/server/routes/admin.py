"""``/admin/...``: users, clients, a subject's sessions, revoke a subject, keys, a token
check and the live security-event stream (``admin`` scope).

Disabling a user or resetting its password revokes every session it has ("log out
everywhere" for that subject).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from ...claims import AccessTokenClaims
from ...clock import Clock
from ...errors import ConfigurationError, InvalidRequest, InvalidToken, NotFound
from ...events import SecurityEvent, add_listener, emit
from ...jws import JWSVerifier
from ...mirror import RevocationMirror
from ...revocation import Denylist
from ...sessions import parse_refresh_token
from ...store.base import Client
from ..authz import catalog_of, check_client_permissions, check_roles
from ..clients import require_redirect_uris
from ..deps import get_runtime, no_store, require_scope
from ..errors import JSON, NO_STORE, OAuthError
from ..text import RequestModel
from ..users import generate_password
from .sessions import SessionOut, session_out

__all__ = ["EventHub", "install_event_hub", "router"]

_admin = require_scope("admin")
Admin = Annotated[AccessTokenClaims, Depends(_admin)]
router = APIRouter(
    prefix="/admin",
    tags=["admin"],
    dependencies=[Depends(no_store)],
    responses={401: {"model": OAuthError}, 403: {"model": OAuthError}},
)


class UserOut(BaseModel):
    username: str
    is_admin: bool
    disabled: bool
    created_at: float
    roles: list[str] = Field(default_factory=list)


class UserCreate(RequestModel):
    model_config = ConfigDict(extra="forbid")
    username: str = Field(min_length=1, max_length=256)
    password: str = Field(min_length=8, max_length=1024)
    is_admin: bool = False  # a shortcut for the admin role
    roles: list[str] = Field(default_factory=list, max_length=32)


class ClientOut(BaseModel):
    client_id: str
    public: bool
    grants: list[str]
    scopes: list[str]
    name: str | None = None
    created_at: float
    redirect_uris: list[str] = Field(default_factory=list)
    post_logout_redirect_uris: list[str] = Field(default_factory=list)
    first_party: bool = False
    backchannel_logout_uri: str | None = None
    dpop_bound_access_tokens: bool = False  # RFC 9449 §5.2
    disabled: bool = False
    client_secret: str | None = None  # only in the creation response
    resources: list[str] = Field(default_factory=list)


# a request-size bound only: which names are valid is the grant registry's business
_MAX_GRANTS = 32


class ClientCreate(RequestModel):
    model_config = ConfigDict(extra="forbid")
    client_id: str = Field(min_length=1, max_length=256)
    public: bool = False
    grants: list[str] = Field(min_length=1, max_length=_MAX_GRANTS)
    scopes: list[str] = Field(default_factory=list, max_length=32)  # empty: no scope at all
    name: str | None = Field(None, max_length=256)
    resources: list[str] = Field(default_factory=list, max_length=16)
    dpop_bound_access_tokens: bool = False
    redirect_uris: list[str] = Field(default_factory=list, max_length=32)
    post_logout_redirect_uris: list[str] = Field(default_factory=list, max_length=32)
    first_party: bool = False
    backchannel_logout_uri: str | None = Field(None, max_length=2000)


def _client_out(c: Client, secret: str | None = None) -> ClientOut:
    return ClientOut(
        client_id=c.client_id,
        public=c.public,
        grants=list(c.grants),
        scopes=list(c.scopes),
        name=c.name,
        created_at=c.created_at,
        resources=list(c.resources),
        redirect_uris=list(c.redirect_uris),
        post_logout_redirect_uris=list(c.post_logout_redirect_uris),
        first_party=c.first_party,
        backchannel_logout_uri=c.backchannel_logout_uri,
        dpop_bound_access_tokens=c.dpop_bound_access_tokens,
        disabled=c.disabled,
        client_secret=secret,
    )


class KeyOut(BaseModel):
    kid: str
    alg: str
    state: str
    created_at: float
    activated_at: float | None = None
    retired_at: float | None = None
    next_rotation_at: float | None = None  # the active key's scheduled rotation


class PasswordReset(RequestModel):
    model_config = ConfigDict(extra="forbid")
    password: str | None = Field(None, min_length=8, max_length=1024)  # None: generate one


class PasswordResetOut(BaseModel):
    sessions_revoked: int
    password: str | None = None  # only when generated here: shown once


class TokenCheck(RequestModel):
    model_config = ConfigDict(extra="forbid")
    token: str = Field(min_length=1, max_length=16384)


class TokenCheckOut(BaseModel):
    kind: str  # access_token | refresh_token | unknown
    active: bool  # accepted right now by this server (signature, claims, revocation)
    signature: str | None = None  # valid | invalid (access tokens)
    kid: str | None = None
    revoked: bool = False
    revocation: str | None = None  # why: token revoked / session revoked / subject logged out
    error: str | None = None
    error_description: str | None = None
    session: SessionOut | None = None  # refresh tokens: their live session
    dpop_jkt: str | None = None  # the DPoP key the token is bound to (cnf.jkt, RFC 9449)


class Revoked(BaseModel):
    sessions_revoked: int


@router.get("/users", response_model=list[UserOut])
async def list_users(request: Request, _: Admin) -> list[UserOut]:
    users = await get_runtime(request).users.list()
    return [
        UserOut(
            username=u.username,
            is_admin=u.is_admin,
            disabled=u.disabled,
            created_at=u.created_at,
            roles=list(u.roles),
        )
        for u in users
    ]


@router.post(
    "/users",
    response_model=UserOut,
    status_code=201,
    responses={400: {"model": OAuthError}, 409: {"model": OAuthError}},
)
async def create_user(request: Request, body: UserCreate, _: Admin) -> UserOut:
    rt = get_runtime(request)
    try:
        await check_roles(rt.store, body.roles)
        u = await rt.users.create(
            body.username, body.password, is_admin=body.is_admin, roles=body.roles
        )
    except ConfigurationError as exc:
        raise InvalidRequest(exc.description) from None
    return UserOut(
        username=u.username,
        is_admin=u.is_admin,
        disabled=u.disabled,
        created_at=u.created_at,
        roles=list(u.roles),
    )


async def _set_disabled(request: Request, username: str, disabled: bool) -> int:
    rt = get_runtime(request)
    user = await rt.users.set_disabled(username, disabled)  # NotFound: 404
    emit("user_disabled" if disabled else "user_enabled", sub=user.username)
    return await rt.end_user_sessions(user.username) if disabled else 0


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


@router.post(
    "/users/{username}/password",
    response_model=PasswordResetOut,
    responses={400: {"model": OAuthError}, 404: {"model": OAuthError}},
)
async def reset_password(request: Request, username: str, body: PasswordReset, _: Admin) -> JSON:
    """Set a new password (or generate one, returned once) and end the user's sessions."""
    rt = get_runtime(request)
    password = body.password or generate_password()
    username = (await rt.users.set_password(username, password)).username  # NotFound: 404
    emit(SecurityEvent.PASSWORD_CHANGED, sub=username, reason="admin_reset")
    out = PasswordResetOut(
        sessions_revoked=await rt.end_user_sessions(username),
        password=None if body.password else password,
    )
    return JSON(out.model_dump(), headers=dict(NO_STORE))


@router.get("/subjects/{sub}/sessions", response_model=list[SessionOut])
async def subject_sessions(request: Request, sub: str, _: Admin) -> list[SessionOut]:
    return [session_out(i) for i in await get_runtime(request).sessions.list_sessions(sub)]


@router.post("/subjects/{sub}/revoke", response_model=Revoked)
async def revoke_subject(request: Request, sub: str, _: Admin) -> Revoked:
    return Revoked(sessions_revoked=await get_runtime(request).end_user_sessions(sub))


@router.delete(
    "/sessions/{sid}",
    status_code=204,
    response_class=Response,
    responses={404: {"model": OAuthError}},
)
async def revoke_session(request: Request, sid: str, _: Admin) -> Response:
    from .logout import end_family

    if not await end_family(get_runtime(request), sid[:256], reason="admin"):
        raise NotFound("no such session")
    return Response(status_code=204)


@router.get("/clients", response_model=list[ClientOut])
async def list_clients(request: Request, _: Admin) -> list[ClientOut]:
    return [_client_out(c) for c in await get_runtime(request).clients.list()]


@router.post(
    "/clients",
    response_model=ClientOut,
    status_code=201,
    responses={400: {"model": OAuthError}, 409: {"model": OAuthError}},
)
async def create_client(request: Request, body: ClientCreate, _: Admin) -> JSON:
    rt = get_runtime(request)
    try:
        require_redirect_uris(body.grants, body.redirect_uris)
        catalog = await catalog_of(rt.store, rt.settings.issuer)
        check_client_permissions(catalog, body.resources, body.scopes)
        c, secret = await rt.clients.create(
            body.client_id,
            public=body.public,
            grants=body.grants,
            scopes=body.scopes,
            name=body.name,
            resources=body.resources,
            dpop_bound_access_tokens=body.dpop_bound_access_tokens,
            redirect_uris=body.redirect_uris,
            first_party=body.first_party,
            post_logout_redirect_uris=body.post_logout_redirect_uris,
            backchannel_logout_uri=body.backchannel_logout_uri,
        )
    except ConfigurationError as exc:
        raise InvalidRequest(exc.description) from None
    out = _client_out(c, secret)
    return JSON(out.model_dump(), status_code=201, headers={"Cache-Control": "no-store"})


class SecretRotation(RequestModel):
    # seconds the old secret keeps working (0: refused at once); at most 30 days
    overlap: float = Field(0.0, ge=0, le=30 * 86400)


class SecretRotationOut(BaseModel):
    client_secret: str  # shown once
    previous_secret_expires_at: float | None = None


async def end_client_sessions(rt: Any, client_id: str, reason: str) -> int:
    """Revoke every live session issued to ``client_id`` (refresh and access tokens)."""
    n = 0
    for sid in await rt.clients.session_ids(client_id):
        n += int(await rt.sessions.revoke_session(sid, reason=reason))
    return n


async def _client_disabled(request: Request, client_id: str, disabled: bool) -> int:
    rt = get_runtime(request)
    await rt.clients.set_disabled(client_id, disabled)  # NotFound: 404
    return await end_client_sessions(rt, client_id, "client_disabled") if disabled else 0


@router.post(
    "/clients/{client_id}/disable",
    response_model=Revoked,
    responses={404: {"model": OAuthError}},
)
async def disable_client(request: Request, client_id: str, _: Admin) -> Revoked:
    """Refuse the client from now on and end every session it holds."""
    return Revoked(sessions_revoked=await _client_disabled(request, client_id, True))


@router.post(
    "/clients/{client_id}/enable", response_model=Revoked, responses={404: {"model": OAuthError}}
)
async def enable_client(request: Request, client_id: str, _: Admin) -> Revoked:
    return Revoked(sessions_revoked=await _client_disabled(request, client_id, False))


@router.post(
    "/clients/{client_id}/rotate-secret",
    response_model=SecretRotationOut,
    responses={400: {"model": OAuthError}, 404: {"model": OAuthError}},
)
async def rotate_client_secret(
    request: Request, client_id: str, body: SecretRotation, _: Admin
) -> JSON:
    """A new secret, shown once; the old one keeps working for ``overlap`` seconds."""
    rt = get_runtime(request)
    if await rt.clients.get(client_id) is None:
        raise NotFound(f"no client {client_id!r}")
    try:
        secret = await rt.clients.rotate_secret(client_id, overlap=body.overlap)
    except ConfigurationError as exc:
        raise InvalidRequest(exc.description) from None
    until = rt.clock.now() + body.overlap if body.overlap > 0 else None
    out = SecretRotationOut(client_secret=secret, previous_secret_expires_at=until)
    return JSON(out.model_dump(), headers=dict(NO_STORE))


@router.delete(
    "/clients/{client_id}",
    response_model=Revoked,
    responses={400: {"model": OAuthError}, 404: {"model": OAuthError}},
)
async def remove_client(request: Request, client_id: str, _: Admin) -> Revoked:
    """Disable the client, end its sessions, then delete it. The console's client cannot be
    removed (the console would lock every administrator out)."""
    rt = get_runtime(request)
    if client_id == rt.settings.console_client_id:
        raise InvalidRequest("the console's client cannot be removed")
    n = await _client_disabled(request, client_id, True)
    await rt.clients.delete(client_id)
    return Revoked(sessions_revoked=n)


def _keys(request: Request) -> list[KeyOut]:
    rt = get_runtime(request)
    period = rt.settings.key_rotation_days * 86400
    out = []
    for k in rt.keyring:
        due = None
        if k.state.value == "active" and period > 0:
            due = (k.activated_at or k.created_at) + period
        out.append(
            KeyOut(
                kid=k.kid,
                alg=k.alg,
                state=k.state.value,
                created_at=k.created_at,
                activated_at=k.activated_at,
                retired_at=k.retired_at,
                next_rotation_at=due,
            )
        )
    return out


@router.get("/keys", response_model=list[KeyOut])
async def list_keys(request: Request, _: Admin) -> list[KeyOut]:
    return _keys(request)


@router.post("/keys/rotate", response_model=list[KeyOut])
async def rotate_keys(request: Request, _: Admin) -> list[KeyOut]:
    await get_runtime(request).check_keys(force=True)
    return _keys(request)


# -- token check (the console's inspector) -------------------------------------------------------


@router.post("/tokens/verify", response_model=TokenCheckOut)
async def verify_token(request: Request, body: TokenCheck, _: Admin) -> JSON:
    """Check a pasted token against this server: signature (our keys), claims, revocation.

    Unlike ``/introspect`` (RFC 7662, inactive = exactly ``{"active": false}``) this says
    *why* a token is refused, for an administrator looking at one."""
    rt = get_runtime(request)
    token = body.token.strip()
    out = TokenCheckOut(kind="unknown", active=False)
    if parse_refresh_token(token) is not None:
        out.kind = "refresh_token"
        info = await rt.sessions.introspect_refresh_token(token)
        out.active = info is not None
        out.session = session_out(info) if info is not None else None
        out.dpop_jkt = info.dpop_jkt if info is not None else None
        if info is None:
            out.error, out.error_description = "invalid_grant", "not a live refresh token"
        return JSON(out.model_dump(), headers=dict(NO_STORE))
    if token.count(".") == 2:
        out.kind = "access_token"
        try:
            payload = JWSVerifier(rt.keyring).verify(token)  # signature and header rules only
        except InvalidToken as exc:
            out.signature = "invalid"
            out.error, out.error_description = exc.error, exc.description
            return JSON(out.model_dump(), headers=dict(NO_STORE))
        out.signature = "valid"
        out.kid = _header_kid(token)
        cnf = payload.get("cnf")
        if isinstance(cnf, dict) and isinstance(cnf.get("jkt"), str):
            out.dpop_jkt = cnf["jkt"]
        reason = _revocation_reason(rt.verifier.revocation, payload)
        out.revoked, out.revocation = reason is not None, reason
    try:
        rt.verifier.verify(token)
        out.active = True
    except InvalidToken as exc:
        out.error, out.error_description = exc.error, exc.description
    return JSON(out.model_dump(), headers=dict(NO_STORE))


def _header_kid(token: str) -> str | None:
    seg = token.split(".", 1)[0]
    with contextlib.suppress(ValueError, orjson.JSONDecodeError):
        header = orjson.loads(base64.urlsafe_b64decode(seg + "=" * (-len(seg) % 4)))
        kid = header.get("kid") if isinstance(header, dict) else None
        return kid if isinstance(kid, str) else None
    return None


def _revocation_reason(check: object, payload: Mapping[str, Any]) -> str | None:
    if isinstance(check, RevocationMirror):
        check = check.denylist
    if not isinstance(check, Denylist):
        return None
    jti, sid, sub, iat = (payload.get(k) for k in ("jti", "sid", "sub", "iat"))
    return check.is_revoked(
        jti=jti if isinstance(jti, str) else None,
        sid=sid if isinstance(sid, str) else None,
        sub=sub if isinstance(sub, str) else None,
        iat=float(iat) if isinstance(iat, int | float) else 0.0,
    )


# -- live security events (Server-Sent Events) ---------------------------------------------------

_KEEPALIVE = 15.0
_QUEUE_MAX = 1000


class EventHub:
    """The recent security events of this instance (:mod:`tokenward.events`) for the console:
    a bounded backlog plus live fan-out to SSE subscribers. Events carry identifiers only,
    never token values. Each instance sees its own events; revocations from every instance
    are in the store's feed (``GET /revocations``)."""

    def __init__(self, clock: Clock, size: int = 200) -> None:
        self.clock = clock
        self._backlog: deque[tuple[int, dict[str, Any]]] = deque(maxlen=size)
        self._seq = 0
        self._subs: set[asyncio.Queue[tuple[int, dict[str, Any]]]] = set()
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def on_event(self, name: str, fields: Mapping[str, Any]) -> None:
        with self._lock:
            self._seq += 1
            item = (self._seq, {"event": name, "at": self.clock.now(), **fields})
            self._backlog.append(item)
            subs = tuple(self._subs)
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        for q in subs:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_offer, q, item)

    def backlog(self, after: int) -> list[tuple[int, dict[str, Any]]]:
        with self._lock:
            return [e for e in self._backlog if e[0] > after]

    def subscribe(self) -> asyncio.Queue[tuple[int, dict[str, Any]]]:
        q: asyncio.Queue[tuple[int, dict[str, Any]]] = asyncio.Queue(_QUEUE_MAX)
        with self._lock:
            self._subs.add(q)
        return q

    def unsubscribe(self, q: asyncio.Queue[tuple[int, dict[str, Any]]]) -> None:
        with self._lock:
            self._subs.discard(q)


def _offer(q: asyncio.Queue[tuple[int, dict[str, Any]]], item: tuple[int, dict[str, Any]]) -> None:
    with contextlib.suppress(asyncio.QueueFull):  # a stalled reader loses events, not memory
        q.put_nowait(item)


def install_event_hub(app: FastAPI, clock: Clock) -> Callable[[], None]:
    """Create the app's :class:`EventHub`, bind it to the running loop and listen to the
    security events; returns the function that stops listening (call it on shutdown)."""
    hub = EventHub(clock)
    hub.bind(asyncio.get_running_loop())
    app.state.event_hub = hub
    return add_listener(hub.on_event)


def _hub(request: Request) -> EventHub:
    hub = getattr(request.app.state, "event_hub", None)
    if not isinstance(hub, EventHub):
        raise ConfigurationError("the security-event hub is not running")
    return hub


@router.get(
    "/events",
    summary="Security events of this instance: JSON backlog, or SSE with Accept: text/event-stream",
)
async def security_events(request: Request, _: Admin, after: int = 0) -> Any:
    hub = _hub(request)
    last_id = request.headers.get("last-event-id", "")
    if last_id.isdigit() and len(last_id) < 19:
        after = max(after, int(last_id))
    if "text/event-stream" not in request.headers.get("accept", ""):
        events = [{"id": i, **e} for i, e in hub.backlog(after)]
        return JSON({"events": events}, headers={"Cache-Control": "no-store"})
    return StreamingResponse(
        _sse(request, hub, after),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


async def _sse(request: Request, hub: EventHub, after: int) -> AsyncIterator[bytes]:
    q = hub.subscribe()
    try:
        yield b"event: ready\ndata: {}\n\n"
        for seq, event in hub.backlog(after):
            after = seq
            yield b"id: %d\nevent: security\ndata: %s\n\n" % (seq, orjson.dumps(event))
        rt = get_runtime(request)
        while not await request.is_disconnected():
            try:
                async with asyncio.timeout(_KEEPALIVE):
                    got = await rt.until_stopping(q.get())
            except TimeoutError:
                yield b": keep-alive\n\n"
                continue
            if got is None:  # the server is shutting down
                yield b"event: reconnect\ndata: shutting down\n\n"
                return
            seq, event = got
            if seq > after:
                after = seq
                yield b"id: %d\nevent: security\ndata: %s\n\n" % (seq, orjson.dumps(event))
    finally:
        hub.unsubscribe(q)
