"""The errors of :mod:`tokenward.client`.

``ClientError`` is the base; ``LoginRequired`` means the stored session is gone (signed out,
revoked, reused, expired: sign in again); ``TemporarilyUnavailable`` is retryable (network
failure, 5xx, 429) and leaves the stored tokens as they were. Messages never contain tokens.
"""

from __future__ import annotations

from ..errors import TokenwardError

__all__ = ["ClientError", "LoginRequired", "TemporarilyUnavailable"]


class ClientError(TokenwardError):
    """A request of the client SDK failed. ``error`` is the server's OAuth error code (RFC 6749
    §5.2) when it sent one, ``status`` the HTTP status (``None`` without a response)."""

    error = "client_error"
    status_code = 400

    def __init__(
        self, description: str = "", *, error: str | None = None, status: int | None = None
    ) -> None:
        super().__init__(description)
        if error is not None:
            self.error = error
        self.status = status


class LoginRequired(ClientError):
    """No usable session: never signed in, signed out, or the refresh token was refused
    (``invalid_grant``: revoked, reused, expired); the stored tokens have been cleared."""

    error = "login_required"


class TemporarilyUnavailable(ClientError):
    """The server could not be reached or answered 5xx/429; retry later. ``retry_after`` is the
    server's ``Retry-After`` in seconds when it sent one. Stored tokens are kept."""

    error = "temporarily_unavailable"

    def __init__(
        self,
        description: str = "",
        *,
        error: str | None = None,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(description, error=error, status=status)
        self.retry_after = retry_after
