"""FastAPI: ``Depends(guard.require(scopes=[...]))`` gives the verified claims.

::

    from fastapi import Depends, FastAPI
    from tokenward.claims import AccessTokenClaims
    from tokenward.guard import Verifier
    from tokenward.guard.fastapi import Guard

    guard = Guard(Verifier(jwks_url=..., issuer=..., audience="api", ...))
    app = FastAPI(lifespan=guard.lifespan)
    guard.install(app)   # flat {"error", "error_description"} bodies, like the other integrations

    @app.get("/orders")
    async def orders(claims: AccessTokenClaims = Depends(guard.require(scopes=["read"]))):
        return {"sub": claims.sub}

Failures raise :class:`GuardError` (an ``HTTPException``) with the RFC 6750 status and
``WWW-Authenticate`` header. With ``guard.install(app)`` the body is
``{"error": ..., "error_description": ...}`` as in the Flask, Django and Starlette
integrations; without it, FastAPI's default handler wraps it as ``{"detail": {...}}``. The
dependency also declares an HTTP bearer security scheme, so ``/docs`` offers "Authorize".
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, HTTPException, Request, Security
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from ..claims import AccessTokenClaims
from .bearer import DEFAULT_REALM, AuthFailure, TokenVerifier, aauthenticate
from .dpop import header_values
from .remote import Verifier

__all__ = ["Guard", "GuardError"]


class GuardError(HTTPException):
    """An RFC 6750 failure of :meth:`Guard.require`; ``detail`` is the error body."""


async def _render(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, GuardError)
    return JSONResponse(exc.detail, status_code=exc.status_code, headers=exc.headers)


class Guard:
    """Binds a verifier and a realm to FastAPI dependencies."""

    def __init__(self, verifier: TokenVerifier, *, realm: str = DEFAULT_REALM) -> None:
        self.verifier = verifier
        self.realm = realm
        self._scheme = HTTPBearer(auto_error=False, scheme_name="tokenward")

    def require(self, scopes: Sequence[str] = ()) -> Callable[..., Awaitable[AccessTokenClaims]]:
        """A dependency returning the claims of a valid token that has every scope."""
        wanted = tuple(scopes)

        async def dependency(
            request: Request,
            _creds: HTTPAuthorizationCredentials | None = Security(self._scheme),  # noqa: B008
        ) -> AccessTokenClaims:
            result = await aauthenticate(
                self.verifier,
                request.headers.get("authorization"),
                scopes=wanted,
                realm=self.realm,
                method=request.method,
                url=str(request.url),
                dpop=header_values(request.headers.getlist("dpop")),
            )
            if isinstance(result, AuthFailure):
                raise GuardError(result.status, detail=result.body, headers=result.headers)
            request.state.token_claims = result
            return result

        return dependency

    def install(self, app: FastAPI) -> None:
        """Answer guard failures with a flat ``{"error", "error_description"}`` body."""
        app.add_exception_handler(GuardError, _render)

    @asynccontextmanager
    async def lifespan(self, app: Any) -> AsyncIterator[None]:
        """``FastAPI(lifespan=guard.lifespan)``: start the guard's background tasks with the
        app and stop them on shutdown."""
        v = self.verifier
        if isinstance(v, Verifier):
            async with v:
                yield
        else:
            yield
