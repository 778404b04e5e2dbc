"""``grant_type=client_credentials`` (RFC 6749 §4.4): a confidential client acting for
itself; the token's ``sub`` is the client id and it has no session (no refresh token)."""

from __future__ import annotations

from typing import Any

from ..errors import JSON
from .base import Grant, GrantContext
from .common import grant_scope, token_response

__all__ = ["ClientCredentialsGrant"]


class ClientCredentialsGrant(Grant):
    name = "client_credentials"
    confidential_only = True

    async def handle(self, ctx: GrantContext) -> JSON:
        rt, client = ctx.runtime, ctx.client
        granted = grant_scope(ctx.form.get("scope"), client, None)
        jkt = ctx.dpop_jkt
        issued = rt.issuer.issue(
            sub=client.client_id,
            client_id=client.client_id,
            scope=granted,
            extra={"cnf": {"jkt": jkt}} if jkt else None,  # RFC 9449 §6.1
        )
        rt.metrics.tokens_issued.labels(grant="client_credentials").inc()
        body: dict[str, Any] = {
            "access_token": issued.token,
            "token_type": "DPoP" if jkt else "Bearer",
            "expires_in": issued.expires_in,
        }
        if granted:
            body["scope"] = granted
        return token_response(body)
