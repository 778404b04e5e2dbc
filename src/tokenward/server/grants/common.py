"""What the grant types share: the token response, scope parsing and granting, and the
password check behind both the password grant and ``/login``."""

from __future__ import annotations

from typing import Any

from fastapi import Request

from ...errors import InvalidGrant
from ...sessions import TokenPair
from ...store.base import Client
from .. import riskwire
from ..authorization import RESERVED_SCOPES, parse_scope
from ..credentials import confirm_session
from ..deps import client_ip, user_agent
from ..errors import JSON, NO_STORE
from ..runtime import Runtime

__all__ = ["RESERVED_SCOPES", "parse_scope", "password_session", "token_response"]


def token_response(body: dict[str, Any], status: int = 200) -> JSON:
    return JSON(body, status_code=status, headers=dict(NO_STORE))


async def password_session(
    rt: Runtime,
    request: Request,
    client: Client,
    username: str,
    password: str,
    scope: str | None,
    *,
    resources: list[str] | None = None,
    device: str | None = None,
    dpop_jkt: str | None = None,
) -> TokenPair:
    """Throttle, check the password, decide the grant, start a session (shared by the
    grant and /login). The session keeps the granted scope; its first access token is for
    the one requested resource (RFC 8707)."""
    ip = client_ip(request)
    await riskwire.check_block(rt, ip)
    await rt.throttle.check(username, ip)
    try:
        user = await rt.users.authenticate(username, password)
    except InvalidGrant:
        rt.metrics.login_failures.inc()
        await rt.throttle.failed(username, ip)
        await riskwire.sign_in_failed(rt, username=username, password=password, address=ip)
        raise
    await rt.throttle.succeeded(username, ip)
    grant, catalog = await rt.authorizer.grant(
        scope=scope, resources=resources or [], client=client, user=user
    )
    pair = await rt.sessions.start(
        sub=user.username,
        client_id=client.client_id,
        scope=grant.scope_text,
        user_agent=user_agent(request),
        ip=ip,
        device=device,
        access=rt.access_spec(grant, catalog),
        dpop_jkt=dpop_jkt,
        bind_refresh=client.public,  # RFC 9449 §5: public clients' refresh tokens are bound
    )
    # a disable or reset that ran while the password was being checked ends this session
    await confirm_session(rt.sessions, user, pair.session_id)
    await riskwire.signed_in(
        rt,
        sub=user.username,
        sid=pair.session_id,
        client_id=client.client_id,
        address=ip,
        device=device,
    )
    rt.metrics.tokens_issued.labels(grant="password").inc()
    return pair
