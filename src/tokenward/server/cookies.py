"""Browser mode: the refresh token in a hardened cookie, and the CSRF token that guards every
cookie-authenticated POST.

The cookie is ``HttpOnly; Secure; SameSite=Strict`` and its ``Path`` is the refresh endpoint
(``/token`` by default), so no other request carries it. Over HTTPS its name gets a prefix:
``__Host-`` requires ``Path=/`` (RFC 6265bis §4.1.3.2), so with the default narrow path the
prefix is ``__Secure-``; set ``cookie_path = "/"`` to get ``__Host-`` instead.

CSRF: the login response carries ``csrf_token`` = HMAC(server secret, session id); a
cookie-authenticated request must send it back in ``X-CSRF-Token`` (a custom header a
cross-site form cannot set, checked with :func:`hmac.compare_digest`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from fastapi import Request, Response

from ..errors import InvalidRequest

__all__ = [
    "CSRF_HEADER",
    "check_csrf",
    "clear_refresh_cookie",
    "csrf_token",
    "read_refresh_cookie",
    "refresh_cookie_name",
    "set_refresh_cookie",
]

CSRF_HEADER = "X-CSRF-Token"
_BASE = "tokenward_rt"


def _https(request: Request) -> bool:
    return request.url.scheme == "https"


def refresh_cookie_name(request: Request, path: str) -> str:
    if not _https(request):
        return _BASE
    return ("__Host-" if path == "/" else "__Secure-") + _BASE


def read_refresh_cookie(request: Request, path: str) -> str | None:
    return request.cookies.get(refresh_cookie_name(request, path))


def set_refresh_cookie(
    request: Request, response: Response, token: str, *, path: str, max_age: int, secure: bool
) -> None:
    response.set_cookie(
        refresh_cookie_name(request, path),
        token,
        max_age=max(0, max_age),
        path=path,
        secure=secure or _https(request),
        httponly=True,
        samesite="strict",
    )


def clear_refresh_cookie(request: Request, response: Response, *, path: str, secure: bool) -> None:
    response.delete_cookie(
        refresh_cookie_name(request, path),
        path=path,
        secure=secure or _https(request),
        httponly=True,
        samesite="strict",
    )


def csrf_token(secret: bytes, session_id: str) -> str:
    mac = hmac.new(secret, b"csrf:" + session_id.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def check_csrf(request: Request, secret: bytes, session_id: str) -> None:
    sent = request.headers.get(CSRF_HEADER, "")
    want = csrf_token(secret, session_id)
    if not sent or not hmac.compare_digest(sent.encode(), want.encode()):
        raise InvalidRequest(f"missing or wrong {CSRF_HEADER} header")
