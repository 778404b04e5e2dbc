"""The OpenAPI document tells the truth about errors and credentials.

FastAPI documents a ``422`` validation error on every route that takes input; this server
never sends one (validation failures are RFC 6749 ``invalid_request`` 400s, see
:mod:`.errors`). :func:`install_openapi` post-processes the generated document once:

* ``422`` becomes ``400`` with the ``{"error", "error_description"}`` model (:class:`OAuthError`);
* every route that takes parameters or a body declares ``400``; one with a body ``413``
  (the body cap); one that requires credentials ``401`` (and ``403`` when its bearer token
  needs a scope); one that reaches the store ``503`` (fail closed, with ``Retry-After``);
* the security schemes: ``bearerAuth`` (RFC 6750; FastAPI documents it on every route that
  depends on :func:`.deps.bearer_claims`, with the scope of :func:`.deps.require_scope` as its
  role) and ``basicAuth`` (``client_secret_basic``, RFC 6749 §2.3.1) for the routes that
  declare it themselves in ``openapi_extra``.

Routes keep declaring their specific errors (``429`` on the password grant, ``404`` on a
missing resource); this adds only what is true of every route of a kind.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

__all__ = [
    "BASIC_AUTH",
    "BEARER_AUTH",
    "CLIENT_AUTH",
    "CLIENT_AUTH_OR_PUBLIC",
    "STORELESS_PATHS",
    "install_openapi",
    "patch_openapi",
]

BEARER_AUTH = "bearerAuth"
BASIC_AUTH = "basicAuth"
#: ``security`` for routes that need a confidential client (Basic, or the secret in the form).
CLIENT_AUTH: list[dict[str, list[str]]] = [{BASIC_AUTH: []}]
#: ``security`` for routes that also take a public client identified by ``client_id`` alone.
CLIENT_AUTH_OR_PUBLIC: list[dict[str, list[str]]] = [{BASIC_AUTH: []}, {}]
#: Routes answered from memory: they never report the store as unavailable.
STORELESS_PATHS = frozenset(
    {
        "/.well-known/jwks.json",
        "/.well-known/oauth-authorization-server",
        "/.well-known/openid-configuration",
        "/.well-known/ssf-configuration",
        "/metrics",
    }
)

_ERROR_REF = {"$ref": "#/components/schemas/OAuthError"}
_DESCRIPTIONS = {
    "400": "invalid_request (or another RFC 6749 §5.2 error): malformed or missing input",
    "401": "the credentials are missing or invalid (WWW-Authenticate says which)",
    "403": "insufficient_scope (RFC 6750 §3.1)",
    "413": "the request body is larger than the configured limit",
    "503": "the store is unavailable; retry after Retry-After seconds (fail closed)",
}
_SECURITY_SCHEMES = {
    BASIC_AUTH: {
        "type": "http",
        "scheme": "basic",
        "description": "client_secret_basic: client_id and secret (RFC 6749 §2.3.1).",
    },
}


def _error(code: str) -> dict[str, Any]:
    return {
        "description": _DESCRIPTIONS[code],
        "content": {"application/json": {"schema": dict(_ERROR_REF)}},
    }


def _patch_operation(op: dict[str, Any], path: str) -> None:
    responses: dict[str, Any] = op.setdefault("responses", {})
    wanted: list[str] = []
    if responses.pop("422", None) is not None or op.get("parameters") or op.get("requestBody"):
        wanted.append("400")
    if op.get("requestBody"):
        wanted.append("413")
    for requirement in op.get("security") or []:
        if requirement:  # {} = "no credentials" is an alternative, not a requirement
            wanted.append("401")
        if requirement.get(BEARER_AUTH):  # roles: the scopes the route requires
            wanted.append("403")
    if path not in STORELESS_PATHS:
        wanted.append("503")
    for code in wanted:
        responses.setdefault(code, _error(code))
    for code, resp in responses.items():
        if code[:1] in "45" and "content" not in resp:  # declared without a body model
            resp["content"] = {"application/json": {"schema": dict(_ERROR_REF)}}


def patch_openapi(schema: dict[str, Any]) -> dict[str, Any]:
    """Apply the rules of the module docs to a generated document (in place) and return it."""
    components = schema.setdefault("components", {})
    schemes = components.setdefault("securitySchemes", {})
    schemes.update(_SECURITY_SCHEMES)
    schemes.setdefault(BEARER_AUTH, {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"})
    schemas = components.setdefault("schemas", {})
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    if "OAuthError" not in schemas:
        from .errors import OAuthError

        schemas["OAuthError"] = OAuthError.model_json_schema()
    for path, ops in schema.get("paths", {}).items():
        for op in ops.values():
            if isinstance(op, dict) and "responses" in op:
                _patch_operation(op, path)
    return schema


def install_openapi(app: FastAPI) -> None:
    """Serve the patched document at ``/openapi.json`` (built once, on first use)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            app.openapi_schema = patch_openapi(schema)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
