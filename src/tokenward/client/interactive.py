"""The interactive sign-ins: authorization code with PKCE over a loopback redirect (RFC 7636,
RFC 8252) and the device authorization grant (RFC 8628). They need only the server's metadata
(``authorization_endpoint``, ``device_authorization_endpoint``) and the standard protocol."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
import webbrowser
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx

from .errors import ClientError

__all__ = ["DeviceCode", "authorization_code_flow", "pkce_pair"]

_PAGE = (
    b"<!doctype html><meta charset=utf-8><title>tokenward</title>"
    b"<p>Signed in. You can close this window and return to the application.</p>"
)


def pkce_pair() -> tuple[str, str]:
    """``(code_verifier, code_challenge)`` for S256 (RFC 7636 §4.1-4.2): 43 characters of
    base64url from 32 random bytes, and base64url(SHA-256(verifier))."""
    verifier = base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


@dataclass(frozen=True)
class DeviceCode:
    """What ``login_device``'s ``on_code`` shows: go to ``verification_uri`` and enter
    ``user_code`` (or open ``verification_uri_complete``), within ``expires_in`` seconds."""

    user_code: str
    verification_uri: str
    verification_uri_complete: str | None
    expires_in: float
    interval: float
    device_code: str = field(repr=False)

    @classmethod
    def from_response(cls, resp: httpx.Response) -> DeviceCode:
        try:
            body = resp.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise ClientError("the device authorization response is not a JSON object")
        try:
            complete = body.get("verification_uri_complete")
            interval = body.get("interval", 5)  # RFC 8628 §3.2: 5 s when absent
            return cls(
                user_code=str(body["user_code"]),
                verification_uri=str(body["verification_uri"]),
                verification_uri_complete=complete if isinstance(complete, str) else None,
                expires_in=float(body["expires_in"]),
                interval=max(0.0, float(interval)),
                device_code=str(body["device_code"]),
            )
        except (KeyError, TypeError, ValueError):
            raise ClientError("the device authorization response misses a field") from None


class _Callback(BaseHTTPRequestHandler):
    server: _LoopbackServer

    def do_GET(self) -> None:  # the http.server API
        parts = urlsplit(self.path)
        if parts.path != "/callback":
            self.send_error(404)
            return
        params = {k: v[0] for k, v in parse_qs(parts.query).items() if v}
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Content-Length", str(len(_PAGE)))
        self.end_headers()
        self.wfile.write(_PAGE)
        if self.server.result is None:
            self.server.result = params
            self.server.done.set()

    def log_message(self, format: str, *args: Any) -> None:  # the code is in the URL: no logs
        return


class _LoopbackServer(HTTPServer):
    def __init__(self, port: int) -> None:
        super().__init__(("127.0.0.1", port), _Callback)
        self.result: dict[str, str] | None = None
        self.done = threading.Event()


def authorization_code_flow(
    authorization_endpoint: str,
    *,
    client_id: str,
    scope: str | None,
    resource: str | None,
    issuer: str,
    open_browser: Callable[[str], object] | None,
    port: int,
    timeout: float,
    require_iss: bool = False,
) -> tuple[str, str, str]:
    """Run the browser leg; returns ``(code, redirect_uri, code_verifier)``.

    The redirect URI uses the IP literal ``127.0.0.1`` (RFC 8252 §7.3, §8.3: not
    ``localhost``); ``state`` is checked in constant time, and an ``iss`` parameter, when the
    server sends one (or promises to), must equal the issuer (RFC 9207)."""
    verifier, challenge = pkce_pair()
    state = secrets.token_urlsafe(24)
    server = _LoopbackServer(port)
    redirect_uri = f"http://127.0.0.1:{server.server_address[1]}/callback"
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "state": state,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    if scope:
        params["scope"] = scope
    if resource:
        params["resource"] = resource
    sep = "&" if urlsplit(authorization_endpoint).query else "?"
    url = authorization_endpoint + sep + urlencode(params)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
    )
    thread.start()
    try:
        (open_browser or webbrowser.open)(url)
        if not server.done.wait(timeout):
            raise ClientError(f"no redirect arrived within {timeout:g} s", error="timeout")
    finally:
        server.shutdown()
        server.server_close()
    got = server.result or {}
    if not hmac.compare_digest(got.get("state", ""), state):
        raise ClientError(
            "the redirect's state does not match (RFC 6749 §10.12)", error="invalid_state"
        )
    if require_iss and "iss" not in got:  # RFC 9207 §2.4: the server said it always sends it
        raise ClientError("the redirect carries no iss (RFC 9207)", error="invalid_issuer")
    if "iss" in got and got["iss"] != issuer:
        raise ClientError(
            "the redirect's iss names another server (RFC 9207)", error="invalid_issuer"
        )
    if "error" in got:
        desc = got.get("error_description", "")
        raise ClientError(
            f"authorization failed: {got['error']}" + (f": {desc}" if desc else ""),
            error=got["error"][:64],
        )
    code = got.get("code")
    if not code:
        raise ClientError("the redirect carried no code", error="invalid_request")
    return code, redirect_uri, verifier
