"""``POST /token`` (RFC 6749 §3.2): authenticate the client and hand the request to the
registered grant type (:mod:`tokenward.server.grants`): ``password``, ``refresh_token``,
``client_credentials``. Every answer is ``no-store``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from ...errors import InvalidRequest, UnauthorizedClient, UnsupportedGrantType
from ..auth import authenticate_client
from ..deps import form_openapi, get_runtime, read_form
from ..errors import JSON, OAuthError
from ..grants import GRANTS, grant_names, load_grant
from ..grants.base import GrantContext
from ..openapi import CLIENT_AUTH_OR_PUBLIC

__all__ = ["router"]

router = APIRouter(tags=["oauth"])


def _form_schema() -> dict[str, Any]:
    fields: dict[str, dict[str, Any]] = {
        "grant_type": {"type": "string", "enum": list(grant_names())},
    }
    for name in grant_names():
        fields.update(load_grant(name).form_fields)
    fields.update(
        {
            "scope": {"type": "string"},
            "resource": {"type": "string", "description": "RFC 8707 resource indicator (one)"},
            "client_id": {"type": "string"},
            "client_secret": {"type": "string", "format": "password"},
        }
    )
    form = form_openapi(fields, ["grant_type"])
    form["security"] = CLIENT_AUTH_OR_PUBLIC
    return form


@router.post(
    "/token",
    summary="Token endpoint (RFC 6749): " + ", ".join(grant_names()),
    openapi_extra=_form_schema(),
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
    info = GRANTS.get(grant)
    if info is None:
        raise UnsupportedGrantType(f"grant_type {grant[:40]!r} is not supported")
    authed = await authenticate_client(request, form)
    client = authed.client
    if grant not in client.grants:
        raise UnauthorizedClient(f"this client may not use the {grant} grant")
    if info.confidential_only and client.public:
        raise UnauthorizedClient(f"{grant} needs a confidential client")
    # DPoP (RFC 9449 §5): one check for every grant; the grant binds its tokens to this key
    jkt = await rt.dpop.for_token_request(request, client)
    resp = await load_grant(grant).handle(GrantContext(rt, request, client, form, dpop_jkt=jkt))
    nonce = getattr(request.state, "dpop_nonce", None)
    if nonce:
        resp.headers["DPoP-Nonce"] = nonce  # RFC 9449 §8.2: the next nonce to use
    return resp
