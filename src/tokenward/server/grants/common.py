"""What the grant types share: the token response, scope parsing and granting, and the
password check behind both the password grant and ``/login``."""

from __future__ import annotations

import re
from typing import Any

from fastapi import Request

from ...errors import InvalidGrant, InvalidScope
from ...sessions import TokenPair
from ...store.base import Client, User
from ..credentials import confirm_session
from ..deps import client_ip, user_agent
from ..errors import JSON, NO_STORE
from ..runtime import Runtime

__all__ = ["RESERVED_SCOPES", "grant_scope", "parse_scope", "password_session", "token_response"]

RESERVED_SCOPES = frozenset({"admin", "revocations"})
_SCOPE_TOKEN = re.compile(r"^[\x21\x23-\x5b\x5d-\x7e]{1,128}$")  # RFC 6749 §3.3


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
    dpop_jkt: str | None = None,
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
        dpop_jkt=dpop_jkt,
        bind_refresh=client.public,  # RFC 9449 §5: public clients' refresh tokens are bound
    )
    # a disable or reset that ran while the password was being checked ends this session
    await confirm_session(rt.sessions, user, pair.session_id)
    rt.metrics.tokens_issued.labels(grant="password").inc()
    return pair
