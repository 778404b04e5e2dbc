"""The token endpoint's grant types, as registered objects.

A grant type is one class (a :class:`~tokenward.server.grants.base.Grant` subclass with its
``name`` and an async ``handle``) in one module, plus one entry in the registry
(:data:`~tokenward.server.grants.registry.GRANTS`, or :func:`register_grant` from outside)::

    # tokenward/server/grants/device_code.py
    class DeviceCodeGrant(Grant):
        name = "urn:ietf:params:oauth:grant-type:device_code"
        form_fields = {"device_code": {"type": "string"}}

        async def handle(self, ctx: GrantContext) -> JSON: ...

    # tokenward/server/grants/registry.py, GRANTS:
    "urn:ietf:params:oauth:grant-type:device_code": GrantInfo(
        "tokenward.server.grants.device_code:DeviceCodeGrant"
    ),

``POST /token`` looks the grant up, authenticates the client, checks that the client is
registered for it, and calls ``handle``. Client registration, the discovery document and the
OpenAPI description read the same registry. The registry module imports no web framework,
so the CLI can validate grant names without FastAPI.
"""

from __future__ import annotations

from .registry import GRANTS, GrantInfo, grant_names, load_grant, register_grant

__all__ = ["GRANTS", "GrantInfo", "grant_names", "load_grant", "register_grant"]
