"""Flask: an extension plus a decorator.

::

    from flask import Flask
    from tokenward.guard.flask import Guard, current_claims

    app = Flask(__name__)
    app.config["TOKENWARD_GUARD"] = {"jwks_url": ..., "issuer": ..., "audience": "api", ...}
    guard = Guard(app)                 # or Guard(verifier=...) then guard.init_app(app)

    @app.get("/orders")
    @guard.require(scopes=["read"])
    def orders():
        return {"sub": current_claims().sub}

``TOKENWARD_GUARD`` holds the keyword arguments of :class:`tokenward.guard.Verifier`
(``TOKENWARD_GUARD_REALM`` the realm). The verifier starts with ``init_app`` and stops at
interpreter exit (or call ``guard.close()``). Failures are JSON ``{"error",
"error_description"}`` with the RFC 6750 status and ``WWW-Authenticate`` header.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, TypeVar, cast

from flask import Flask, Response, g, jsonify, request

from ..claims import AccessTokenClaims
from ..errors import ConfigurationError
from .bearer import DEFAULT_REALM, AuthFailure, TokenVerifier, authenticate
from .dpop import header_values
from .remote import Verifier

__all__ = ["Guard", "current_claims"]

F = TypeVar("F", bound=Callable[..., Any])


class Guard:
    """The Flask extension (``app.extensions["tokenward_guard"]``)."""

    def __init__(
        self,
        app: Flask | None = None,
        *,
        verifier: TokenVerifier | None = None,
        realm: str | None = None,
    ) -> None:
        self._verifier = verifier
        self.realm = realm or DEFAULT_REALM
        if app is not None:
            self.init_app(app)

    @property
    def verifier(self) -> TokenVerifier:
        if self._verifier is None:
            raise ConfigurationError("Guard has no verifier: call init_app(app) first")
        return self._verifier

    def init_app(self, app: Flask) -> None:
        if self._verifier is None:
            options = app.config.get("TOKENWARD_GUARD")
            if not isinstance(options, dict):
                raise ConfigurationError("set app.config['TOKENWARD_GUARD'] or pass verifier=")
            self._verifier = Verifier(**options)
        self.realm = app.config.get("TOKENWARD_GUARD_REALM", self.realm)
        app.extensions["tokenward_guard"] = self
        if isinstance(self._verifier, Verifier):
            self._verifier.start(wait=False)

    def close(self) -> None:
        if isinstance(self._verifier, Verifier):
            self._verifier.close()

    def require(self, scopes: Sequence[str] = ()) -> Callable[[F], F]:
        """Decorate a view: it runs only for a valid token with every scope in ``scopes``."""
        wanted = tuple(scopes)

        def decorator(view: F) -> F:
            @functools.wraps(view)
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                result = authenticate(
                    self.verifier,
                    request.headers.get("Authorization"),
                    scopes=wanted,
                    realm=self.realm,
                    method=request.method,
                    url=request.url,
                    dpop=header_values(request.headers.getlist("DPoP")),
                )
                if isinstance(result, AuthFailure):
                    return failure_response(result)
                g.token_claims = result
                return view(*args, **kwargs)

            return cast(F, wrapper)

        return decorator


def failure_response(failure: AuthFailure) -> Response:
    resp = jsonify(failure.body)
    resp.status_code = failure.status
    resp.headers.update(failure.headers)
    return resp


def current_claims() -> AccessTokenClaims:
    """The claims of the current request (set by :meth:`Guard.require`)."""
    claims = g.get("token_claims")
    if not isinstance(claims, AccessTokenClaims):
        raise LookupError("no verified token for this request (missing @guard.require?)")
    return claims
