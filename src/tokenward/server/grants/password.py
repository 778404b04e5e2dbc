"""``grant_type=password`` (RFC 6749 §4.3), for first-party clients that own the login form.

Deprecated by RFC 9700 §2.4; kept for the console and CLIs, and rate-limited per account
and per IP against brute force (RFC 6749 §4.3.2).
"""

from __future__ import annotations

from ...errors import InvalidRequest
from ..deps import form_resources
from ..errors import JSON
from .base import Grant, GrantContext
from .common import password_session, token_response

__all__ = ["PasswordGrant"]


class PasswordGrant(Grant):
    name = "password"
    form_fields = {  # noqa: RUF012 - read-only class data
        "username": {"type": "string"},
        "password": {"type": "string", "format": "password"},
    }

    async def handle(self, ctx: GrantContext) -> JSON:
        username, password = ctx.form.get("username"), ctx.form.get("password")
        if username is None or password is None:
            raise InvalidRequest("username and password are required")
        pair = await password_session(
            ctx.runtime,
            ctx.request,
            ctx.client,
            username,
            password,
            ctx.form.get("scope"),
            resources=form_resources(ctx.request),
            dpop_jkt=ctx.dpop_jkt,
        )
        return token_response(pair.to_response())
