"""Client authentication at the token, revocation and introspection endpoints (RFC 6749 §2.3).

* ``client_secret_basic``: ``Authorization: Basic base64(urlencode(id):urlencode(secret))``
  (§2.3.1 form-encodes both before Base64);
* ``client_secret_post``: ``client_id`` and ``client_secret`` in the form body;
* public clients: ``client_id`` alone (only for clients registered as public).

Two methods in one request (Basic *and* a body secret, or a body ``client_id`` that differs
from the Basic one) → ``invalid_request``. Any failure → ``invalid_client`` (401 with
``WWW-Authenticate: Basic``).
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from urllib.parse import unquote_plus

from fastapi import Request

from ..errors import InvalidClient, InvalidRequest
from ..store.base import Client
from .deps import get_runtime

__all__ = ["AuthenticatedClient", "authenticate_client"]

_MAX_HEADER = 4096


@dataclass(frozen=True, slots=True)
class AuthenticatedClient:
    client: Client
    method: str  # client_secret_basic | client_secret_post | none

    @property
    def client_id(self) -> str:
        return self.client.client_id


def _basic(header: str) -> tuple[str, str]:
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        raise InvalidClient("unsupported authorization scheme; use Basic")
    if len(value) > _MAX_HEADER:
        raise InvalidClient("client authentication failed")
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        raise InvalidClient("malformed Basic credentials") from None
    cid, sep, secret = decoded.partition(":")
    if not sep or not cid:
        raise InvalidClient("malformed Basic credentials")
    return unquote_plus(cid), unquote_plus(secret)


async def authenticate_client(
    request: Request, form: dict[str, str], *, allow_public: bool = True, cached: bool = False
) -> AuthenticatedClient:
    """The authenticated client of this request, or ``InvalidClient`` / ``InvalidRequest``.
    ``cached``: the client record may come from the runtime's record cache (see
    :mod:`tokenward.server.cache`)."""
    request.state.auth_scheme = "Basic"
    registry = get_runtime(request).clients
    header = request.headers.get("authorization")
    body_id = form.get("client_id")
    body_secret = form.get("client_secret")
    if header:
        cid, secret = _basic(header)
        if body_secret is not None:
            raise InvalidRequest("use one client authentication method, not two")
        if body_id is not None and body_id != cid:
            raise InvalidRequest("client_id in the body differs from the authenticated one")
        return AuthenticatedClient(
            await registry.authenticate(cid, secret, cached=cached), "client_secret_basic"
        )
    if body_secret is not None:
        if body_id is None:
            raise InvalidRequest("client_secret without client_id")
        return AuthenticatedClient(
            await registry.authenticate(body_id, body_secret, cached=cached), "client_secret_post"
        )
    if body_id is None:
        raise InvalidClient("client authentication is required")
    if not allow_public:
        raise InvalidClient("this endpoint needs a confidential client's credentials")
    return AuthenticatedClient(await registry.authenticate(body_id, None, cached=cached), "none")
