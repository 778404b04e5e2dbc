"""The browser SDK: ``GET /sdk/tokenward.js`` (an ES module) and ``GET /sdk/tokenward.d.ts``.

The files are packaged in ``tokenward/sdk/`` (the single source; ``clients/js/`` holds the
same bytes for npm). They may be loaded from other origins: the responses allow CORS reads
(needed for a cross-origin module script with an ``integrity`` attribute) and carry a strong
``ETag`` with ``Cache-Control: public, no-cache``, so caches revalidate with a cheap 304 and an
upgraded server never leaves a browser on a stale module. ``integrity()`` gives the
Subresource Integrity value documented in ``docs/clients.md``.
"""

from __future__ import annotations

import base64
import hashlib
from functools import cache
from importlib.resources import files

from fastapi import APIRouter, Request, Response

__all__ = ["integrity", "router", "sdk_file"]

router = APIRouter(include_in_schema=False)

_FILES = {
    "tokenward.js": "text/javascript; charset=utf-8",
    "tokenward.d.ts": "application/typescript; charset=utf-8",
}


@cache
def sdk_file(name: str) -> bytes:
    return files("tokenward").joinpath("sdk", name).read_bytes()


def integrity(name: str = "tokenward.js") -> str:
    """``sha384-...`` for a ``<script integrity>`` attribute (W3C SRI)."""
    return "sha384-" + base64.b64encode(hashlib.sha384(sdk_file(name)).digest()).decode()


def _serve(request: Request, name: str) -> Response:
    body = sdk_file(name)
    etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    headers = {
        "ETag": etag,
        "Cache-Control": "public, no-cache",
        "X-Content-Type-Options": "nosniff",
        "Access-Control-Allow-Origin": "*",
        "Cross-Origin-Resource-Policy": "cross-origin",
    }
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    return Response(body, media_type=_FILES[name], headers=headers)


@router.get("/sdk/tokenward.js")
async def sdk_module(request: Request) -> Response:
    return _serve(request, "tokenward.js")


@router.get("/sdk/tokenward.d.ts")
async def sdk_types(request: Request) -> Response:
    return _serve(request, "tokenward.d.ts")
