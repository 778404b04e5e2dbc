"""``POST /revoke`` (RFC 7009): access or refresh tokens, whatever ``token_type_hint`` says.

* the client authenticates (public clients by ``client_id``) and may revoke only tokens issued
  to it (else ``unauthorized_client``);
* unknown, malformed, expired or already revoked tokens → 200 (§2.2: the client cannot act
  on the difference, and a scanner learns nothing);
* a refresh token revokes its whole session (family), and through the ``sid`` denylist every
  access token the session issued; an access token is revoked by ``jti`` until its ``exp``;
* the store down → 503 + ``Retry-After``: the token must be assumed still valid (§2.2.1).
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from ...errors import InvalidRequest, InvalidToken, UnauthorizedClient
from ...sessions import parse_refresh_token
from ..auth import authenticate_client
from ..deps import TOKEN_FORM, get_runtime, read_form
from ..errors import NO_STORE, OAuthError
from ..openapi import CLIENT_AUTH_OR_PUBLIC

__all__ = ["router"]

router = APIRouter(tags=["oauth"])

_FORM = {**TOKEN_FORM, "security": CLIENT_AUTH_OR_PUBLIC}


@router.post(
    "/revoke",
    summary="Token revocation (RFC 7009)",
    openapi_extra=_FORM,
    response_class=Response,
    responses={
        200: {"description": "revoked, or nothing to revoke"},
        400: {"model": OAuthError},
        401: {"model": OAuthError},
        503: {"model": OAuthError},
    },
)
async def revoke(request: Request) -> Response:
    rt = get_runtime(request)
    form = await read_form(request)
    authed = await authenticate_client(request, form)
    token = form.get("token")
    if token is None:
        raise InvalidRequest("token is required")
    if parse_refresh_token(token) is not None:
        await rt.sessions.revoke_refresh_token(token, client_id=authed.client_id)
    elif token.count(".") in (2, 4):  # a JWS, or a JWE with TOKENWARD_JWE
        try:
            claims = rt.verifier.verify(token)
        except InvalidToken:
            claims = None  # invalid, expired or already revoked: nothing to do (200)
        if claims is not None:
            if claims.client_id != authed.client_id:
                raise UnauthorizedClient("the token was issued to another client")
            await rt.sessions.revoke_access_token(claims.jti, exp=claims.exp)
    return Response(status_code=200, headers=dict(NO_STORE))
