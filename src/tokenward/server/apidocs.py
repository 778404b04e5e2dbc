"""``/docs``: Swagger UI over ``/openapi.json``, its assets served from the ``swagger-ui-bundle``
package (never a CDN: it works offline and loads nothing from a third party), and ``GET /``
redirecting to the console."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from swagger_ui_bundle import swagger_ui_path  # type: ignore[import-untyped]

__all__ = ["ASSETS", "install_docs"]

#: Where the Swagger UI files are served from.
ASSETS = "/docs/assets"


def install_docs(app: FastAPI) -> None:
    """Add ``/docs``, its local assets and the ``/`` → ``/console`` redirect to ``app``
    (built with ``docs_url=None`` so FastAPI's CDN page is not used)."""
    app.mount(ASSETS, StaticFiles(directory=Path(swagger_ui_path)), name="swagger-ui")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title="tokenward API",
            swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS}/favicon-32x32.png",
        )

    @app.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse("/console", status_code=307)
