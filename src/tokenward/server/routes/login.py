"""First-party login: ``POST /login`` (JSON), ``POST /logout``, ``POST /logout-all``.

``/login`` checks the password of a user for a *public* first-party client (the console by
default) with the same brute-force limits as the password grant. ``mode``:

* ``"token"`` (default): the RFC 6749 §5.1 pair in the body;
* ``"cookie"`` (browser mode, OWASP): the refresh token goes into an ``HttpOnly; Secure;
  SameSite=Strict`` cookie limited to the refresh path (see :mod:`.cookies`); the body has the
  access token and a ``csrf_token`` to send as ``X-CSRF-Token`` when refreshing from the
  cookie (``POST /token`` with ``grant_type=refresh_token`` and no ``refresh_token``).

``/logout`` ends the caller's session (the ``sid`` of its access token; or the session of a
``refresh_token`` given in the body) and clears the cookie; ``/logout-all`` ends every session
of the caller ("log out everywhere").
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from ...errors import InsufficientScope, InvalidRequest, UnauthorizedClient
from ..cookies import clear_refresh_cookie, csrf_token, set_refresh_cookie
from ..deps import Bearer, get_runtime
from ..errors import JSON, NO_STORE, OAuthError
from ..grants.common import password_session
from ..text import RequestModel

__all__ = ["LoginRequest", "router"]

router = APIRouter(tags=["first-party login"])

_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": OAuthError},
    401: {"model": OAuthError},
    429: {"model": OAuthError},
    503: {"model": OAuthError},
}


class LoginRequest(RequestModel):
    model_config = ConfigDict(extra="forbid")

    username: str = Field(min_length=1, max_length=256)
    password: str = Field(min_length=1, max_length=1024)
    client_id: str | None = Field(None, min_length=1, max_length=256)
    scope: str | None = Field(None, max_length=2048)
    # RFC 8707 resource indicator: the API the access token is for (one; a list of more
    # than one is refused with invalid_target)
    resource: str | list[Annotated[str, Field(max_length=512)]] | None = Field(None, max_length=512)
    mode: Literal["token", "cookie"] = "token"
    device: str | None = Field(None, max_length=128)


class LoginResponse(BaseModel):
    access_token: str
    token_type: str
    expires_in: int
    session_id: str
    scope: str | None = None
    refresh_token: str | None = None
    csrf_token: str | None = None


class LogoutRequest(RequestModel):
    model_config = ConfigDict(extra="forbid")

    refresh_token: str | None = Field(None, max_length=512)


class LogoutResponse(BaseModel):
    sessions_revoked: int


@router.post("/login", response_model=LoginResponse, responses=_ERRORS)
async def login(request: Request, body: LoginRequest) -> JSON:
    rt = get_runtime(request)
    client_id = body.client_id or rt.settings.console_client_id
    client = await rt.clients.authenticate(client_id, None)  # public first-party clients only
    if "password" not in client.grants:
        raise UnauthorizedClient("this client may not log users in")
    resources = [body.resource] if isinstance(body.resource, str) else list(body.resource or [])
    jkt = await rt.dpop.for_token_request(request, client)  # RFC 9449: as at /token
    pair = await password_session(
        rt,
        request,
        client,
        body.username,
        body.password,
        body.scope,
        resources=resources,
        device=body.device,
        dpop_jkt=jkt,
    )
    out: dict[str, Any] = pair.to_response()
    out["session_id"] = pair.session_id
    headers = dict(NO_STORE)
    nonce = getattr(request.state, "dpop_nonce", None)
    if nonce:
        headers["DPoP-Nonce"] = nonce  # RFC 9449 §8.2
    if body.mode == "token":
        return JSON(out, headers=headers)
    del out["refresh_token"]
    out["csrf_token"] = csrf_token(rt.csrf_secret, pair.session_id)
    resp = JSON(out, headers=headers)
    set_refresh_cookie(
        request,
        resp,
        pair.refresh_token,
        path=rt.settings.cookie_path,
        max_age=int(pair.refresh_expires_at - rt.clock.now()),
        secure=rt.settings.cookie_secure,
    )
    return resp


async def _optional_body(request: Request) -> LogoutRequest:
    raw = await request.body()
    if not raw.strip():
        return LogoutRequest()
    try:
        return LogoutRequest.model_validate_json(raw)
    except ValueError:
        raise InvalidRequest('the body must be JSON like {"refresh_token": "..."}') from None


@router.post(
    "/logout",
    response_model=LogoutResponse,
    responses={400: {"model": OAuthError}},  # + 401/503 from tokenward.server.openapi
    openapi_extra={
        "requestBody": {
            "required": False,
            "content": {"application/json": {"schema": LogoutRequest.model_json_schema()}},
        }
    },
)
async def logout(request: Request, claims: Bearer) -> JSON:
    from .logout import end_family

    rt = get_runtime(request)
    body = await _optional_body(request)
    n = 0
    if claims.sid:
        n += int(await end_family(rt, claims.sid, reason="logout"))
    else:
        await rt.sessions.revoke_access_token(claims.jti, exp=claims.exp)
    if body.refresh_token:
        info = await rt.sessions.introspect_refresh_token(body.refresh_token)
        if info is not None and info.sub == claims.sub:
            n += int(await end_family(rt, info.session_id, reason="logout"))
    resp = JSON({"sessions_revoked": n}, headers=dict(NO_STORE))
    clear_refresh_cookie(
        request, resp, path=rt.settings.cookie_path, secure=rt.settings.cookie_secure
    )
    return resp


@router.post(
    "/logout-all",
    response_model=LogoutResponse,
    responses={403: {"model": OAuthError}},  # + 401/503 from tokenward.server.openapi
)
async def logout_all(request: Request, claims: Bearer) -> JSON:
    rt = get_runtime(request)
    if not claims.sid:  # a client_credentials token's sub is a client id, not a user
        request.state.required_scope = ""
        raise InsufficientScope("log out everywhere needs a user's session token")
    n = await rt.end_user_sessions(claims.sub)
    resp = JSON({"sessions_revoked": n}, headers=dict(NO_STORE))
    clear_refresh_cookie(
        request, resp, path=rt.settings.cookie_path, secure=rt.settings.cookie_secure
    )
    return resp
