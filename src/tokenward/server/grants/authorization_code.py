"""``grant_type=authorization_code`` (RFC 6749 §4.1.3 with PKCE, RFC 7636): the exchange of a
code from ``/authorize``; see :mod:`tokenward.server.code_grant`."""

from __future__ import annotations

from ..errors import JSON
from .base import Grant, GrantContext
from .common import token_response

__all__ = ["AuthorizationCodeGrant"]


class AuthorizationCodeGrant(Grant):
    name = "authorization_code"
    form_fields = {  # noqa: RUF012 - read-only class data
        "code": {"type": "string"},
        "redirect_uri": {"type": "string"},
        "code_verifier": {"type": "string"},
    }

    async def handle(self, ctx: GrantContext) -> JSON:
        from ..code_grant import exchange_code

        body = await exchange_code(
            ctx.runtime, ctx.request, ctx.client, ctx.form, dpop_jkt=ctx.dpop_jkt
        )
        return token_response(body)
