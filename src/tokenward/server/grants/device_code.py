"""``grant_type=urn:ietf:params:oauth:grant-type:device_code`` (RFC 8628 §3.4): polling for
the tokens of a device authorization; see :mod:`tokenward.server.routes.device`."""

from __future__ import annotations

from ..errors import JSON
from .base import Grant, GrantContext
from .common import token_response

__all__ = ["DeviceCodeGrant"]


class DeviceCodeGrant(Grant):
    name = "urn:ietf:params:oauth:grant-type:device_code"
    form_fields = {"device_code": {"type": "string"}}  # noqa: RUF012 - read-only class data

    async def handle(self, ctx: GrantContext) -> JSON:
        from ..routes.device import exchange_device_code

        body = await exchange_device_code(
            ctx.runtime, ctx.request, ctx.client, ctx.form, dpop_jkt=ctx.dpop_jkt
        )
        return token_response(body)
