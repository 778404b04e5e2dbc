"""Bearer auth for httpx and requests, with one refresh and one retry on ``invalid_token``.

The httpx flow is written once, sans-I/O, as a generator (:meth:`HttpxAuth.flow`): it yields
either a request to send or a :class:`NeedToken` step, and the sync and async drivers answer the
latter with ``access_token()`` or ``await aaccess_token()`` — the same split httpx uses for its
own ``auth_flow``. A 401 whose ``WWW-Authenticate`` says ``error="invalid_token"``
(RFC 6750 §3.1) gets one refresh (shared with every concurrent caller) and one retry; a second
401 is returned to the caller as it is, never retried again.
"""

from __future__ import annotations

import re
from collections.abc import AsyncGenerator, Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx

from .errors import ClientError

if TYPE_CHECKING:
    from .manager import TokenManager

__all__ = ["HttpxAuth", "NeedToken", "is_invalid_token", "requests_auth"]

_ERROR_PARAM = re.compile(r'(?:^|[\s,])error\s*=\s*"?([A-Za-z_]+)"?')


def is_invalid_token(status: int, www_authenticate: str | None) -> bool:
    """A 401 whose challenge carries ``error="invalid_token"`` (RFC 6750 §3.1): the token was
    expired, revoked or malformed, so a new one may work. A 401 without an error code (no
    token sent, wrong scheme) is not retried."""
    if status != 401 or not www_authenticate:
        return False
    m = _ERROR_PARAM.search(www_authenticate)
    return bool(m and m.group(1) == "invalid_token")


@dataclass(frozen=True)
class NeedToken:
    """A step of the sans-I/O flow: the driver answers with an access token (``rejected``:
    the token the server just refused, or ``None`` for the first attempt)."""

    rejected: str | None = None


class HttpxAuth(httpx.Auth):
    """``manager.httpx_auth()``: works with ``httpx.Client`` and ``httpx.AsyncClient``."""

    requires_request_body = True  # the body is sent again on the one retry

    def __init__(self, manager: TokenManager) -> None:
        self._manager = manager

    def __repr__(self) -> str:
        return f"HttpxAuth({self._manager!r})"

    def _present(self, request: httpx.Request, token: str) -> None:
        url = str(request.url)
        request.headers.update(self._manager.authorization_headers(token, request.method, url))

    def flow(self, request: httpx.Request) -> Generator[NeedToken | httpx.Request, Any, None]:
        token = yield NeedToken()
        self._present(request, token)
        response: httpx.Response = yield request
        if self._manager.wants_nonce_retry(str(request.url), response):
            self._present(request, token)  # RFC 9449 §9: once more, with the server's nonce
            response = yield request
        if not is_invalid_token(response.status_code, response.headers.get("WWW-Authenticate")):
            return
        token = yield NeedToken(rejected=token)
        self._present(request, token)
        yield request  # once: whatever this answers goes back to the caller

    def sync_auth_flow(
        self, request: httpx.Request
    ) -> Generator[httpx.Request, httpx.Response, None]:
        request.read()
        steps = self.flow(request)
        step = next(steps)
        while True:
            value: Any
            if isinstance(step, NeedToken):
                m = self._manager
                value = (
                    m.access_token()
                    if step.rejected is None
                    else m.token_after_rejection(step.rejected)
                )
            else:
                value = yield step
            try:
                step = steps.send(value)
            except StopIteration:
                return

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        await request.aread()
        steps = self.flow(request)
        step = next(steps)
        while True:
            value: Any
            if isinstance(step, NeedToken):
                m = self._manager
                value = (
                    await m.aaccess_token()
                    if step.rejected is None
                    else await m.atoken_after_rejection(step.rejected)
                )
            else:
                value = yield step
            try:
                step = steps.send(value)
            except StopIteration:
                return


def requests_auth(manager: TokenManager) -> Any:
    """A ``requests.auth.AuthBase`` for ``manager`` (``requests`` is an optional import)."""
    try:
        import requests  # type: ignore[import-untyped,unused-ignore]
    except ImportError:
        raise ClientError(
            "requests_auth() needs the requests package: pip install requests"
        ) from None

    class RequestsAuth(requests.auth.AuthBase):  # type: ignore[misc,unused-ignore]
        def __repr__(self) -> str:
            return f"RequestsAuth({manager!r})"

        def __call__(self, r: Any) -> Any:
            token = manager.access_token()
            r.headers.update(manager.authorization_headers(token, r.method, r.url))
            r.register_hook("response", self._on_response)
            return r

        def _on_response(self, resp: Any, **kwargs: Any) -> Any:
            sent = resp.request
            if getattr(sent, "_tokenward_retry", False):
                return resp
            used = str(sent.headers.get("Authorization", "")).partition(" ")[2]
            if manager.wants_nonce_retry(sent.url, resp):  # RFC 9449 §9
                token = used
            elif is_invalid_token(resp.status_code, resp.headers.get("WWW-Authenticate")):
                token = manager.token_after_rejection(used)
            else:
                return resp
            _ = resp.content  # consume, so the connection can be reused
            resp.close()
            again = sent.copy()
            again.headers.update(manager.authorization_headers(token, sent.method, sent.url))
            again._tokenward_retry = True  # one retry, never a loop
            new = resp.connection.send(again, **kwargs)
            new.history.append(resp)
            new.request = again
            return new

    return RequestsAuth()
