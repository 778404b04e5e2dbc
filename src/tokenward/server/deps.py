"""Request helpers shared by the routes: the runtime, strict OAuth form bodies (RFC 6749 §3.2),
the caller's address and bearer-token authentication (RFC 6750 §2.1)."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import parse_qsl

from fastapi import Depends, Request, Response, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from ..claims import AccessTokenClaims
from ..errors import BearerRequired, InsufficientScope, InvalidRequest, InvalidToken
from .addresses import client_address
from .text import check_text

if TYPE_CHECKING:
    from .runtime import Runtime

__all__ = [
    "BEARER_SCHEME",
    "FORM_CONTENT_TYPE",
    "TOKEN_FORM",
    "Bearer",
    "bearer_claims",
    "client_ip",
    "form_from_pairs",
    "form_openapi",
    "form_resources",
    "get_runtime",
    "no_store",
    "read_form",
    "require_scope",
]

FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"
_MAX_FIELDS = 64
_MAX_AUTH_HEADER = 8192


def get_runtime(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt


def client_ip(request: Request) -> str | None:
    """The caller's address, always a parsed IP (``X-Forwarded-For`` only from a trusted
    proxy: :func:`tokenward.server.addresses.client_address`)."""
    cached: str | None = request.scope.get("tokenward.client_ip", "")
    if cached != "":
        return cached
    peer = request.client.host if request.client else None
    proxies = get_runtime(request).trusted_proxies
    xff = request.headers.getlist("x-forwarded-for") if proxies else []
    ip = client_address(peer, xff, proxies)
    request.scope["tokenward.client_ip"] = ip
    return ip


def user_agent(request: Request) -> str | None:
    ua = request.headers.get("user-agent")
    return ua[:512] if ua else None


async def read_form(request: Request) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body as a dict, strictly (RFC 6749 §3.2):
    another content type, invalid UTF-8, or a parameter given twice → ``invalid_request``;
    an empty value counts as absent. ``resource`` may repeat (RFC 8707 §2): all its values
    are in :func:`form_resources`."""
    ctype = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if ctype != FORM_CONTENT_TYPE:
        raise InvalidRequest(f"the body must be {FORM_CONTENT_TYPE}")
    limit = get_runtime(request).settings.max_body_bytes
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise InvalidRequest("request body too large")
    try:
        text = body.decode("utf-8")
        pairs = parse_qsl(text, keep_blank_values=True, max_num_fields=_MAX_FIELDS)
    except UnicodeDecodeError:
        raise InvalidRequest("the body is not valid UTF-8") from None
    except ValueError:
        raise InvalidRequest("too many parameters") from None
    return form_from_pairs(request, pairs)


def form_from_pairs(request: Request, pairs: list[tuple[str, str]]) -> dict[str, str]:
    """The form of decoded ``(name, value)`` pairs: every text checked, a repeated parameter
    refused (``resource`` may repeat: RFC 8707 §2, kept on ``request.state.resources``), an
    empty value treated as absent."""
    form: dict[str, str] = {}
    seen: set[str] = set()
    resources: list[str] = []
    for name, value in pairs:
        check_text(name, name)
        check_text(name, value)
        if name == "resource":
            if value != "":
                resources.append(value)
        elif name in seen:
            raise InvalidRequest(f"parameter {name!r} is repeated")
        seen.add(name)
        if value != "" and name not in form:
            form[name] = value
    request.state.resources = resources
    return form


def form_resources(request: Request) -> list[str]:
    """Every ``resource`` parameter of the form read by :func:`read_form` (RFC 8707 §2)."""
    found: list[str] = getattr(request.state, "resources", [])
    return found


async def no_store(response: Response) -> None:
    """Router dependency: the answer (personal data: sessions with IPs and user agents, user
    info, admin listings) is ``Cache-Control: no-store``, never kept by a browser cache."""
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"


def form_openapi(
    properties: dict[str, dict[str, Any]], required: list[str] | None = None
) -> dict[str, Any]:
    """``openapi_extra`` documenting a form body that the route parses itself."""
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = required
    return {
        "requestBody": {
            "required": True,
            "content": {FORM_CONTENT_TYPE: {"schema": schema}},
        }
    }


def bearer_token(request: Request) -> str:
    return authorization(request)[1]


def authorization(request: Request) -> tuple[str, str]:
    """The ``Bearer`` (RFC 6750 §2.1) or ``DPoP`` (RFC 9449 §7.1) scheme and token."""
    request.state.auth_scheme = "Bearer"
    header = request.headers.get("authorization")
    if not header:
        request.state.bearer_missing = True
        raise BearerRequired()
    if len(header) > _MAX_AUTH_HEADER:
        raise InvalidToken("authorization header too large")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() not in ("bearer", "dpop") or not token or " " in token:
        raise InvalidToken("use the Authorization: Bearer (or DPoP) scheme")
    return scheme, token


#: Documents ``bearerAuth`` in the OpenAPI for every route that depends on
#: :func:`bearer_claims`; with ``auto_error=False`` it never answers a request itself.
BEARER_SCHEME = HTTPBearer(
    scheme_name="bearerAuth",
    bearerFormat="JWT",
    description="An access token of this server (RFC 6750 §2.1).",
    auto_error=False,
)


async def bearer_claims(
    request: Request,
    _documented: Annotated[HTTPAuthorizationCredentials | None, Security(BEARER_SCHEME)] = None,
) -> AccessTokenClaims:
    """FastAPI dependency: the verified access token of the request (RFC 6750 §2.1), with
    its DPoP proof when it is DPoP-bound (RFC 9449 §7)."""
    scheme, token = authorization(request)
    claims = await get_runtime(request).dpop.for_resource(request, scheme, token)
    request.state.claims = claims
    return claims


def require_scope(scope: str) -> Callable[..., Coroutine[Any, Any, AccessTokenClaims]]:
    """Dependency: a bearer token that carries ``scope`` (else 403 ``insufficient_scope``).
    The scope is also the role of the route's ``bearerAuth`` requirement in the OpenAPI."""

    async def dep(
        request: Request,
        claims: AccessTokenClaims = Security(bearer_claims, scopes=[scope]),  # noqa: B008
    ) -> AccessTokenClaims:
        if scope not in claims.scopes:
            request.state.required_scope = scope
            raise InsufficientScope(f"the {scope!r} scope is required")
        return claims

    return dep


#: Route parameter type: the verified bearer access token of the request.
Bearer = Annotated[AccessTokenClaims, Depends(bearer_claims)]


#: The form body of /revoke (RFC 7009 §2.1) and /introspect (RFC 7662 §2.1).
TOKEN_FORM = form_openapi(
    {
        "token": {"type": "string"},
        "token_type_hint": {"type": "string", "enum": ["access_token", "refresh_token"]},
        "client_id": {"type": "string"},
        "client_secret": {"type": "string", "format": "password"},
    },
    ["token"],
)
