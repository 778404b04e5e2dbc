"""``POST /token`` (RFC 6749 §3.2, §4.3, §4.4, §6): grants ``password`` (first-party clients,
rate-limited), ``refresh_token`` (rotating, also from the browser-mode cookie with a CSRF
header) and ``client_credentials`` (confidential clients). Every answer is ``no-store``.

The password grant is deprecated by RFC 9700 §2.4; tokenward keeps it for first-party apps
that own the login form (the console, CLIs) and protects it against brute force per account
and per IP (RFC 6749 §4.3.2).
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Request

from ..errors import (
    InvalidGrant,
    InvalidRequest,
    InvalidScope,
    RefreshTokenReused,
    UnauthorizedClient,
    UnsupportedGrantType,
)
from ..sessions import TokenPair, hash_refresh_token, parse_refresh_token
from ..store.base import Client, User
from .auth import authenticate_client
from .cookies import check_csrf, csrf_token, read_refresh_cookie, set_refresh_cookie
from .credentials import confirm_session
from .deps import client_ip, form_openapi, get_runtime, read_form, user_agent
from .errors import JSON, NO_STORE, OAuthError
from .openapi import CLIENT_AUTH_OR_PUBLIC
from .runtime import Runtime

__all__ = ["RESERVED_SCOPES", "grant_scope", "password_session", "router", "token_response"]

router = APIRouter(tags=["oauth"])

RESERVED_SCOPES = frozenset({"admin", "revocations"})
_SCOPE_TOKEN = re.compile(r"^[\x21\x23-\x5b\x5d-\x7e]{1,128}$")  # RFC 6749 §3.3
_GRANTS = (
    "password",
    "refresh_token",
    "client_credentials",
    "authorization_code",
    "urn:ietf:params:oauth:grant-type:device_code",
)


def token_response(body: dict[str, Any], status: int = 200) -> JSON:
    return JSON(body, status_code=status, headers=dict(NO_STORE))


def parse_scope(value: str | None) -> list[str]:
    if value is None:
        return []
    items = value.split(" ")
    if len(items) > 32 or any(not _SCOPE_TOKEN.match(s) for s in items):
        raise InvalidScope("malformed scope")
    return list(dict.fromkeys(items))


def grant_scope(requested: str | None, client: Client, user: User | None) -> str:
    """The scope to grant: the requested one when allowed (else ``invalid_scope``), or the
    client's default. Reserved scopes (``admin``, ``revocations``) need an admin user (password
    grant) or an explicit client registration (client credentials)."""
    wanted = parse_scope(requested)
    allowed = set(client.scopes)
    for s in wanted:
        if allowed and s not in allowed:
            raise InvalidScope(f"scope {s!r} is not allowed for this client")
        if s in RESERVED_SCOPES:
            if user is not None and not user.is_admin:
                raise InvalidScope(f"scope {s!r} needs an administrator")
            if user is None and s not in allowed:
                raise InvalidScope(f"scope {s!r} must be registered for this client")
    if not wanted:
        wanted = [
            s
            for s in client.scopes
            if s not in RESERVED_SCOPES or (user is not None and user.is_admin)
        ]
    return " ".join(wanted)


async def password_session(
    rt: Runtime,
    request: Request,
    client: Client,
    username: str,
    password: str,
    scope: str | None,
    *,
    device: str | None = None,
) -> TokenPair:
    """Throttle, check the password, start a session (shared by the grant and /login)."""
    ip = client_ip(request)
    await rt.throttle.check(username, ip)
    try:
        user = await rt.users.authenticate(username, password)
    except InvalidGrant:
        rt.metrics.login_failures.inc()
        await rt.throttle.failed(username, ip)
        raise
    await rt.throttle.succeeded(username, ip)
    granted = grant_scope(scope, client, user)
    pair = await rt.sessions.start(
        sub=user.username,
        client_id=client.client_id,
        scope=granted,
        user_agent=user_agent(request),
        ip=ip,
        device=device,
    )
    # a disable or reset that ran while the password was being checked ends this session
    await confirm_session(rt.sessions, user, pair.session_id)
    rt.metrics.tokens_issued.labels(grant="password").inc()
    return pair


_FORM = form_openapi(
    {
        "grant_type": {"type": "string", "enum": list(_GRANTS)},
        "username": {"type": "string"},
        "password": {"type": "string", "format": "password"},
        "refresh_token": {"type": "string"},
        "scope": {"type": "string"},
        "code": {"type": "string"},
        "redirect_uri": {"type": "string"},
        "code_verifier": {"type": "string"},
        "device_code": {"type": "string"},
        "client_id": {"type": "string"},
        "client_secret": {"type": "string", "format": "password"},
    },
    ["grant_type"],
)
_FORM["security"] = CLIENT_AUTH_OR_PUBLIC


@router.post(
    "/token",
    summary="Token endpoint (RFC 6749): authorization_code, password, refresh_token, "
    "client_credentials",
    openapi_extra=_FORM,
    responses={
        200: {
            "description": "RFC 6749 §5.1 token response",
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "required": ["access_token", "token_type", "expires_in"],
                        "properties": {
                            "access_token": {"type": "string"},
                            "token_type": {"type": "string"},
                            "expires_in": {"type": "integer"},
                            "refresh_token": {"type": "string"},
                            "scope": {"type": "string"},
                            "csrf_token": {"type": "string"},
                            "id_token": {"type": "string"},
                        },
                    }
                }
            },
        },
        400: {"model": OAuthError},
        401: {"model": OAuthError},
        413: {"model": OAuthError},
        429: {"model": OAuthError},
        503: {"model": OAuthError},
    },
)
async def token(request: Request) -> JSON:
    rt = get_runtime(request)
    form = await read_form(request)
    grant = form.get("grant_type")
    if grant is None:
        raise InvalidRequest("grant_type is required")
    if grant not in _GRANTS:
        raise UnsupportedGrantType(f"grant_type {grant[:40]!r} is not supported")
    authed = await authenticate_client(request, form)
    client = authed.client
    if grant not in client.grants:
        raise UnauthorizedClient(f"this client may not use the {grant} grant")
    if grant == "password":
        username, password = form.get("username"), form.get("password")
        if username is None or password is None:
            raise InvalidRequest("username and password are required")
        pair = await password_session(rt, request, client, username, password, form.get("scope"))
        return token_response(pair.to_response())
    if grant == "refresh_token":
        return await _refresh(rt, request, client, form)
    if grant == "authorization_code":
        from .code_grant import exchange_code  # the code flow's module imports this one

        return token_response(await exchange_code(rt, request, client, form))
    if grant == "urn:ietf:params:oauth:grant-type:device_code":
        from .device import exchange_device_code

        return token_response(await exchange_device_code(rt, request, client, form))
    if client.public:
        raise UnauthorizedClient("client_credentials needs a confidential client")
    granted = grant_scope(form.get("scope"), client, None)
    issued = rt.issuer.issue(sub=client.client_id, client_id=client.client_id, scope=granted)
    rt.metrics.tokens_issued.labels(grant="client_credentials").inc()
    body: dict[str, Any] = {
        "access_token": issued.token,
        "token_type": "Bearer",
        "expires_in": issued.expires_in,
    }
    if granted:
        body["scope"] = granted
    return token_response(body)


async def _refresh(rt: Runtime, request: Request, client: Client, form: dict[str, str]) -> JSON:
    path = rt.settings.cookie_path
    refresh_token = form.get("refresh_token")
    from_cookie = False
    if refresh_token is None:
        refresh_token = read_refresh_cookie(request, path)
        if refresh_token is None:
            raise InvalidRequest("refresh_token is required")
        from_cookie = True
        if parse_refresh_token(refresh_token) is not None:
            found = await rt.store.get_refresh_token(hash_refresh_token(refresh_token))
            if found is not None:  # unknown tokens fail below with invalid_grant
                check_csrf(request, rt.csrf_secret, found[1].sid)
    try:
        pair = await rt.sessions.refresh(
            refresh_token,
            client_id=client.client_id,
            scope=form.get("scope"),
            ip=client_ip(request),
            user_agent=user_agent(request),
        )
    except RefreshTokenReused:
        # the family is revoked: tell its client through back-channel logout (OIDC BCL 1.0)
        from .logout import notify_family_ended

        found = await rt.store.get_refresh_token(hash_refresh_token(refresh_token))
        if found is not None:
            await notify_family_ended(rt, found[1])
        raise
    rt.metrics.tokens_issued.labels(grant="refresh_token").inc()
    if not from_cookie:
        return token_response(pair.to_response())
    body = pair.to_response()
    del body["refresh_token"]
    body["csrf_token"] = csrf_token(rt.csrf_secret, pair.session_id)
    resp = token_response(body)
    set_refresh_cookie(
        request,
        resp,
        pair.refresh_token,
        path=path,
        max_age=int(pair.refresh_expires_at - rt.clock.now()),
        secure=rt.settings.cookie_secure,
    )
    return resp
