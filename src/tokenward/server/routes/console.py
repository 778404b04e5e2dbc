"""The console: ``GET /console`` and its static assets under ``/console/static/...``.

Hand-written HTML, CSS and JavaScript shipped in the package (``tokenward/console/``), no
CDN, no build step. Every console response carries a strict Content-Security-Policy: only
same-origin scripts, styles and connections, no inline script or style, no framing, and
Trusted Types enforced so no string ever reaches an HTML sink. The page holds the access
token in memory only; the refresh token stays in the ``HttpOnly`` cookie (browser mode of
``/login``). See ``docs/console.md``.
"""

from __future__ import annotations

import hashlib
from functools import cache
from importlib.resources import files

from fastapi import APIRouter, Request, Response
from starlette.exceptions import HTTPException

__all__ = ["CONTENT_SECURITY_POLICY", "SECURITY_HEADERS", "router"]

router = APIRouter(include_in_schema=False)

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "font-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "require-trusted-types-for 'script'",
        "trusted-types 'none'",
    ]
)

SECURITY_HEADERS: dict[str, str] = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=()",
}

_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
}


@cache
def _asset(name: str) -> tuple[bytes, str, str] | None:
    """``(body, content type, etag)`` of a packaged console file, or ``None``.

    Only plain file names with a known extension are served (no directories, no dot files)."""
    ext = name[name.rfind(".") :] if "." in name else ""
    if ext not in _TYPES or "/" in name or "\\" in name or name.startswith("."):
        return None
    resource = files("tokenward").joinpath("console", name)
    if not resource.is_file():
        return None
    body = resource.read_bytes()
    etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    return body, _TYPES[ext], etag


def _serve(request: Request, name: str) -> Response:
    found = _asset(name)
    if found is None:
        raise HTTPException(404)
    body, ctype, etag = found
    headers = {**SECURITY_HEADERS, "ETag": etag, "Cache-Control": "no-cache"}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    return Response(body, media_type=ctype, headers=headers)


@router.get("/console")
@router.get("/console/")
async def console_page(request: Request) -> Response:
    return _serve(request, "index.html")


@router.get("/console/static/{name}")
async def console_static(request: Request, name: str) -> Response:
    if name == "index.html":
        raise HTTPException(404)
    return _serve(request, name)
