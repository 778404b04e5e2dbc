"""Django: a middleware, a view decorator, and Django REST Framework classes.

``settings.py``::

    TOKENWARD_GUARD = {"jwks_url": ..., "issuer": ..., "audience": "api",
                       "revocations_url": ..., "client_id": ..., "client_secret": ...}
    TOKENWARD_GUARD_REALM = "tokenward"              # optional (the default)
    MIDDLEWARE = [..., "tokenward.guard.django.GuardMiddleware"]
    REST_FRAMEWORK = {
        "DEFAULT_AUTHENTICATION_CLASSES": ["tokenward.guard.django.TokenwardAuthentication"],
        "DEFAULT_PERMISSION_CLASSES": ["tokenward.guard.django.HasScopes"],
    }

The middleware verifies a bearer token when the request carries one and puts the claims on
``request.token_claims`` (``None`` without a token); a presented token that fails is answered
at once (401/503, RFC 6750). ``@require_token(scopes=[...])`` protects a plain view.
In DRF, :class:`TokenwardAuthentication` makes ``request.user`` a :class:`TokenUser` and
``request.auth`` the claims; :class:`HasScopes` checks the view's ``required_scopes``.

One :class:`tokenward.guard.Verifier` per process is built from ``TOKENWARD_GUARD`` on first
use (:func:`get_verifier`); it works under WSGI (threads) and ASGI.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Sequence
from typing import Any

from django.http import JsonResponse

from ..claims import AccessTokenClaims
from ..errors import ConfigurationError, InsufficientScope, TokenwardError
from .bearer import (
    DEFAULT_REALM,
    AuthFailure,
    TokenVerifier,
    authenticate,
    challenge,
    credentials,
    failure_for,
    missing_token,
)
from .dpop import header_values
from .remote import Verifier

__all__ = [
    "GuardMiddleware",
    "HasScopes",
    "TokenUser",
    "TokenwardAuthentication",
    "get_verifier",
    "require_token",
    "set_verifier",
]

_lock = threading.Lock()
_verifier: TokenVerifier | None = None


def get_verifier() -> TokenVerifier:
    """The process-wide verifier, built (and started) from ``settings.TOKENWARD_GUARD``."""
    global _verifier
    v = _verifier
    if v is not None:
        return v
    with _lock:
        if _verifier is None:
            from django.conf import settings

            options = getattr(settings, "TOKENWARD_GUARD", None)
            if not isinstance(options, dict):
                raise ConfigurationError("settings.TOKENWARD_GUARD must be a dict")
            built = Verifier(**options)
            built.start(wait=False)
            _verifier = built
        return _verifier


def set_verifier(verifier: TokenVerifier | None) -> None:
    """Use this verifier instead of one built from settings (tests, custom wiring)."""
    global _verifier
    with _lock:
        _verifier = verifier


def _realm() -> str:
    from django.conf import settings

    return str(getattr(settings, "TOKENWARD_GUARD_REALM", DEFAULT_REALM))


def _response(failure: AuthFailure) -> JsonResponse:
    resp = JsonResponse(failure.body, status=failure.status)
    for k, v in failure.headers.items():
        resp[k] = v
    return resp


class GuardMiddleware:
    """Verifies a presented bearer token; sets ``request.token_claims``."""

    def __init__(self, get_response: Callable[[Any], Any]) -> None:
        self.get_response = get_response
        self.realm = _realm()

    def __call__(self, request: Any) -> Any:
        request.token_claims = None
        header = request.META.get("HTTP_AUTHORIZATION")
        try:
            present = credentials(header) is not None
        except TokenwardError as exc:
            return _response(failure_for(exc, realm=self.realm))
        if present:
            result = _authenticate(request, header, realm=self.realm)
            if isinstance(result, AuthFailure):
                return _response(result)
            request.token_claims = result
        return self.get_response(request)


def _authenticate(request: Any, header: str | None, *, realm: str) -> Any:
    """:func:`authenticate` with the request's method, absolute URL and DPoP proofs."""
    proofs = request.META.get("HTTP_DPOP")
    return authenticate(
        get_verifier(),
        header,
        realm=realm,
        method=request.method,
        url=request.build_absolute_uri(),
        dpop=header_values([proofs] if proofs else []),
    )


def require_token(scopes: Sequence[str] = ()) -> Callable[[Callable[..., Any]], Any]:
    """Decorate a function view: 401 without a valid token, 403 without every scope."""
    wanted = tuple(scopes)

    def decorator(view: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(view)
        def wrapper(request: Any, *args: Any, **kwargs: Any) -> Any:
            realm = _realm()
            claims = getattr(request, "token_claims", None)
            if not isinstance(claims, AccessTokenClaims):
                header = request.META.get("HTTP_AUTHORIZATION")
                result = _authenticate(request, header, realm=realm)
                if isinstance(result, AuthFailure):
                    return _response(result)
                claims = request.token_claims = result
            if not claims.has_scopes(*wanted):
                exc = InsufficientScope("the token lacks a required scope")
                return _response(failure_for(exc, realm=realm, scopes=wanted))
            return view(request, *args, **kwargs)

        return wrapper

    return decorator


class TokenUser:
    """``request.user`` for a token: who the token is about, no database row behind it."""

    is_authenticated = True
    is_anonymous = False
    is_active = True
    is_staff = False
    is_superuser = False

    def __init__(self, claims: AccessTokenClaims) -> None:
        self.claims = claims
        self.pk = self.id = self.username = claims.sub

    def __str__(self) -> str:
        return self.username

    def has_scopes(self, *scopes: str) -> bool:
        return self.claims.has_scopes(*scopes)


try:  # Django REST Framework is optional
    from rest_framework import exceptions as _drf_exc
    from rest_framework.authentication import BaseAuthentication as _BaseAuthentication
    from rest_framework.permissions import BasePermission as _BasePermission
except ImportError:  # pragma: no cover - exercised only without DRF installed
    _drf_exc = None
    _BaseAuthentication = _BasePermission = object


class _DRFError(_drf_exc.APIException if _drf_exc else Exception):  # type: ignore[misc]
    """A DRF exception carrying our status, body and ``WWW-Authenticate`` header."""

    def __init__(self, failure: AuthFailure) -> None:
        super().__init__(detail=failure.body)
        self.status_code = failure.status
        self.auth_header = failure.headers.get("WWW-Authenticate")
        retry = failure.headers.get("Retry-After")
        self.wait = int(retry) if retry else None


class TokenwardAuthentication(_BaseAuthentication):  # type: ignore[misc]
    """DRF authentication: ``(TokenUser, AccessTokenClaims)`` for a valid bearer token."""

    def authenticate(self, request: Any) -> tuple[TokenUser, AccessTokenClaims] | None:
        django_request = getattr(request, "_request", request)
        claims = getattr(django_request, "token_claims", None)
        if isinstance(claims, AccessTokenClaims):  # the middleware already verified it
            return TokenUser(claims), claims
        header = request.META.get("HTTP_AUTHORIZATION")
        try:
            if credentials(header) is None:
                return None  # not ours: DRF answers 401 with authenticate_header()
        except TokenwardError as exc:
            raise _DRFError(failure_for(exc, realm=_realm())) from None
        result = _authenticate(django_request, header, realm=_realm())
        if isinstance(result, AuthFailure):
            raise _DRFError(result)
        django_request.token_claims = result
        return TokenUser(result), result

    def authenticate_header(self, request: Any) -> str:
        return missing_token(_realm()).headers.get("WWW-Authenticate", challenge(_realm()))


class HasScopes(_BasePermission):  # type: ignore[misc]
    """DRF permission: the token must have every scope in the view's ``required_scopes``."""

    def has_permission(self, request: Any, view: Any) -> bool:
        claims = getattr(request, "auth", None)
        if not isinstance(claims, AccessTokenClaims):
            user = getattr(request, "user", None)
            if user is None or not user.is_authenticated:
                # no credentials: the same 401 as every other integration (RFC 6750 §3.1)
                raise _DRFError(missing_token(_realm()))
            return False  # authenticated some other way, but not with a token: 403
        wanted = tuple(getattr(view, "required_scopes", ()))
        if not claims.has_scopes(*wanted):
            exc = InsufficientScope("the token lacks a required scope")
            raise _DRFError(failure_for(exc, realm=_realm(), scopes=wanted))
        return True
