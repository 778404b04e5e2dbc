"""The one exception handler: the tokenward error tree → OAuth error responses.

* RFC 6749 §5.2 body ``{"error", "error_description"}`` with the class's status;
* ``401`` always carries ``WWW-Authenticate``: ``Basic realm="tokenward"`` for client
  authentication (RFC 6749 §5.2), ``Bearer ...`` with ``error``/``error_description`` for
  protected resources (RFC 6750 §3), and ``insufficient_scope`` answers 403 with the scope;
* ``RateLimited`` (429) and ``StoreUnavailable`` (503, RFC 7009 §2.2.1) carry ``Retry-After``;
* FastAPI validation errors become ``invalid_request`` (400), unknown routes ``not_found``,
  wrong methods ``invalid_request`` (405) — never FastAPI's default 422 shape;
* every error response is ``Cache-Control: no-store``.

Unexpected exceptions are answered by :mod:`tokenward.server.middleware` (``server_error``,
no traceback in the body).
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..dpop import DPOP_ALGORITHMS
from ..errors import (
    InsufficientScope,
    InvalidDPoPProof,
    RateLimited,
    StoreUnavailable,
    TokenwardError,
    UseDPoPNonce,
)

__all__ = [
    "JSON",
    "OAuthError",
    "error_response",
    "handle_tokenward_error",
    "install_error_handlers",
]

REALM = "tokenward"
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


class JSON(JSONResponse):
    """A JSON response rendered with orjson."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


class OAuthError(BaseModel):
    """RFC 6749 §5.2 error body."""

    error: str
    error_description: str | None = None


def _quote(text: str) -> str:
    # a header value is latin-1 and one line: anything but printable ASCII (a token's own
    # ``alg``, CR/LF) would be a 500 or a header injection, so it becomes "?"
    text = "".join(c if " " <= c <= "~" else "?" for c in text[:200])
    return text.replace("\\", "\\\\").replace('"', "'")


def error_response(
    error: str, description: str, status: int, headers: dict[str, str] | None = None
) -> JSON:
    h = dict(NO_STORE)
    h.update(headers or {})
    return JSON({"error": error, "error_description": description}, status_code=status, headers=h)


_DPOP_ALGS = " ".join(DPOP_ALGORITHMS)


def tokenward_error_response(request: Request, exc: TokenwardError) -> JSON:
    headers: dict[str, str] = {}
    scheme = getattr(request.state, "auth_scheme", None)
    status = exc.status_code
    if isinstance(exc, UseDPoPNonce) and exc.nonce:
        headers["DPoP-Nonce"] = exc.nonce  # RFC 9449 §8, §9
    if isinstance(exc, InvalidDPoPProof) and scheme in ("Bearer", "DPoP"):
        status = 401  # at a protected resource (RFC 9449 §7.1); 400 at /token (§5)
    if scheme == "DPoP" and status == 401:
        headers["WWW-Authenticate"] = (
            f'DPoP algs="{_DPOP_ALGS}", error="{exc.error}", '
            f'error_description="{_quote(exc.description)}"'
        )
        return error_response(exc.error, exc.description, status, headers)
    if isinstance(exc, RateLimited | StoreUnavailable):
        headers["Retry-After"] = str(exc.retry_after)
    if isinstance(exc, InsufficientScope):
        scope = getattr(request.state, "required_scope", "")
        headers["WWW-Authenticate"] = (
            f'Bearer realm="{REALM}", error="insufficient_scope", '
            f'error_description="{_quote(exc.description)}", scope="{_quote(scope)}"'
        )
    elif exc.status_code == 401:
        if scheme == "Bearer":
            if getattr(request.state, "bearer_missing", False):
                headers["WWW-Authenticate"] = f'Bearer realm="{REALM}", DPoP algs="{_DPOP_ALGS}"'
            else:
                headers["WWW-Authenticate"] = (
                    f'Bearer realm="{REALM}", error="{exc.error}", '
                    f'error_description="{_quote(exc.description)}"'
                )
        else:
            headers["WWW-Authenticate"] = f'Basic realm="{REALM}", charset="UTF-8"'
    return error_response(exc.error, exc.description, status, headers)


async def _tokenward(request: Request, exc: Exception) -> JSON:
    assert isinstance(exc, TokenwardError)
    return await handle_tokenward_error(request, exc)


async def handle_tokenward_error(request: Request, exc: TokenwardError) -> JSON:
    """The answer to ``exc`` (and the bearer-rejection count), for a route or a pure-ASGI
    handler alike."""
    metrics = getattr(request.app.state, "runtime", None)
    if (
        metrics is not None
        and getattr(request.state, "auth_scheme", None) in ("Bearer", "DPoP")
        and (exc.status_code == 401 or isinstance(exc, InvalidDPoPProof))
        and not getattr(request.state, "bearer_missing", False)
    ):
        metrics.metrics.verify_failures.labels(reason=type(exc).__name__).inc()
    return tokenward_error_response(request, exc)


def _describe(errors: list[Any]) -> str:
    if not errors:
        return "invalid request"
    err = errors[0]
    loc = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path"))
    msg = str(err.get("msg", "invalid value"))
    return f"{loc}: {msg}" if loc else msg


async def _validation(request: Request, exc: Exception) -> JSON:
    assert isinstance(exc, RequestValidationError)
    return error_response("invalid_request", _describe(list(exc.errors())), 400)


async def _http(request: Request, exc: Exception) -> JSON:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 404:
        return error_response("not_found", "no such resource", 404)
    if exc.status_code == 405:
        headers = dict(exc.headers or {})
        return error_response("invalid_request", "method not allowed", 405, headers)
    error = "invalid_request" if 400 <= exc.status_code < 500 else "server_error"
    return error_response(error, str(exc.detail), exc.status_code, dict(exc.headers or {}))


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(TokenwardError, _tokenward)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(StarletteHTTPException, _http)
