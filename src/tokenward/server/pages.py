"""Server-rendered pages of the authorization server (sign-in, consent, device, messages).

Jinja2 templates shipped in the package (``tokenward/server/templates``), autoescaped, styled
with the console's stylesheet. No script at all, and a strict Content-Security-Policy:
``default-src 'none'``, only the console's same-origin stylesheet and images, no framing
(``frame-ancestors 'none'``), ``base-uri 'none'``; ``form-action`` allows this server and,
for a page whose form ends in a redirect to a client, that client's redirect origin (Chromium
applies ``form-action`` to the redirects that follow a form submission).

Every form carries a hidden ``csrf_token`` bound server-side to the pending request; a form
POST that a browser marks cross-site (``Sec-Fetch-Site`` or a foreign ``Origin``) is refused.
"""

from __future__ import annotations

from functools import cache
from typing import Any
from urllib.parse import urlsplit

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, PackageLoader, select_autoescape

__all__ = ["form_origin_ok", "page", "redirect_source"]

_BASE_CSP = [
    "default-src 'none'",
    "style-src 'self'",
    "img-src 'self'",
    "base-uri 'none'",
    "frame-ancestors 'none'",
]

_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cache-Control": "no-store",
    "Pragma": "no-cache",
}


@cache
def _env() -> Environment:
    return Environment(
        loader=PackageLoader("tokenward.server", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        auto_reload=False,
    )


def redirect_source(uri: str) -> str:
    """The CSP source expression that allows redirecting a form submission to ``uri``."""
    parts = urlsplit(uri)
    if parts.scheme in ("http", "https"):
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        if parts.scheme == "http":  # loopback redirects may use any port (RFC 8252 §7.3)
            return f"http://{host}:*"
        return f"https://{host}" + (f":{parts.port}" if parts.port else "")
    return f"{parts.scheme}:"


def page(
    name: str, context: dict[str, Any], *, status: int = 200, redirect_to: str | None = None
) -> HTMLResponse:
    form_action = "form-action 'self'" + (f" {redirect_source(redirect_to)}" if redirect_to else "")
    csp = "; ".join([*_BASE_CSP, form_action])
    body = _env().get_template(name).render(**context)
    return HTMLResponse(
        body, status_code=status, headers={**_HEADERS, "Content-Security-Policy": csp}
    )


def form_origin_ok(request: Request, issuer: str) -> bool:
    """False for a form POST that the browser says came from another site."""
    site = request.headers.get("sec-fetch-site")
    if site is not None:  # Fetch Metadata: the browser's own word
        return site in ("same-origin", "none")
    origin = request.headers.get("origin")
    if origin is None or origin == "null":  # "null" under Referrer-Policy: no-referrer
        return True
    own = f"{request.url.scheme}://{request.url.netloc}"
    issuer_parts = urlsplit(issuer)
    return origin in (own, f"{issuer_parts.scheme}://{issuer_parts.netloc}")
