"""``grant_type=client_credentials`` (RFC 6749 §4.4): a confidential client acting for
itself; the token's ``sub`` is the client id and it has no session (no refresh token)."""

from __future__ import annotations

from typing import Any

from ..deps import form_resources
from ..errors import JSON
from .base import Grant, GrantContext
from .common import token_response

__all__ = ["ClientCredentialsGrant"]


class ClientCredentialsGrant(Grant):
    name = "client_credentials"
    confidential_only = True

    async def handle(self, ctx: GrantContext) -> JSON:
        rt, client = ctx.runtime, ctx.client
        decided, catalog = await rt.authorizer.grant(
            scope=ctx.form.get("scope"),
            resources=form_resources(ctx.request),
            client=client,
            user=None,
        )
        spec = rt.access_spec(decided, catalog)
        jkt = ctx.dpop_jkt
        issued = rt.issuer.issue(
            sub=client.client_id,
            client_id=client.client_id,
            scope=spec.scope,
            audience=spec.audience,
            ttl=spec.ttl,
            encryption=spec.encryption,
            extra={"cnf": {"jkt": jkt}} if jkt else None,  # RFC 9449 §6.1
        )
        rt.metrics.tokens_issued.labels(grant="client_credentials").inc()
        body: dict[str, Any] = {
            "access_token": issued.token,
            "token_type": "DPoP" if jkt else "Bearer",
            "expires_in": issued.expires_in,
            "scope": spec.scope,
        }
        return token_response(body)
