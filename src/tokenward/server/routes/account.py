"""``POST /account/password``: a signed-in user changes their own password.

The body is JSON ``{"current_password", "new_password"}``; the caller authenticates with its
bearer access token (a user's session token, one with a ``sid``). The current password must
verify — a wrong one counts against the same brute-force budget as a sign-in — and the new one
must pass the password policy (:mod:`.passwords`). Then every *other* session of the user is
revoked (its refresh tokens, and its access tokens through the feed), the caller's own session
stays — re-bound to the new credential version, so the credential watermark that ends
sessions from before the change spares it — and a ``password_changed`` security event is
emitted.

In browser mode (the refresh cookie reaches this path, ``cookie_path = "/"``) the request must
also carry ``X-CSRF-Token``; a token sent by the console in any mode is checked as well.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from ...errors import InsufficientScope, InvalidGrant
from ...events import SecurityEvent, emit
from ..cookies import CSRF_HEADER, check_csrf, read_refresh_cookie
from ..deps import Bearer, client_ip, get_runtime, no_store
from ..errors import OAuthError

__all__ = ["PasswordChange", "PasswordChanged", "router"]

router = APIRouter(tags=["account"], dependencies=[Depends(no_store)])


class PasswordChange(BaseModel):
    current_password: str = Field(min_length=1, max_length=1024)
    new_password: str = Field(min_length=1, max_length=1024)


class PasswordChanged(BaseModel):
    other_sessions_revoked: int


@router.post(
    "/account/password",
    response_model=PasswordChanged,
    responses={
        400: {"model": OAuthError},
        401: {"model": OAuthError},
        403: {"model": OAuthError},
        429: {"model": OAuthError},
        503: {"model": OAuthError},
    },
)
async def change_password(
    request: Request, body: PasswordChange, claims: Bearer
) -> PasswordChanged:
    """Change your own password (the current one is required); ends your other sessions."""
    rt = get_runtime(request)
    if not claims.sid:  # a client_credentials token: not a user
        raise InsufficientScope("a user's session token is required")
    in_cookie_mode = read_refresh_cookie(request, rt.settings.cookie_path) is not None
    if in_cookie_mode or request.headers.get(CSRF_HEADER):
        check_csrf(request, rt.csrf_secret, claims.sid)
    ip = client_ip(request)
    await rt.throttle.check(claims.sub, ip)
    own = await rt.sessions.get_session(claims.sid)
    if own is None or not own.active:
        raise InvalidGrant("this session has ended")
    try:
        await rt.users.change_password(
            claims.sub,
            body.current_password,
            body.new_password,
            keep_session_since=own.created_at,
        )
    except InvalidGrant:
        await rt.throttle.failed(claims.sub, ip)
        raise InvalidGrant("the current password is wrong") from None
    revoked = 0
    for info in await rt.sessions.list_sessions(claims.sub):
        if info.session_id != claims.sid and await rt.sessions.revoke_session(
            info.session_id, reason="password_changed"
        ):
            revoked += 1
    emit(SecurityEvent.PASSWORD_CHANGED, sub=claims.sub, sid=claims.sid, ip=ip,
         other_sessions_revoked=revoked)  # fmt: skip
    return PasswordChanged(other_sessions_revoked=revoked)
