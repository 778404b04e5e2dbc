"""``TokenManager``: sign in, keep a valid access token, refresh it once per expiry.

Refreshing is single-flight at every level a client runs on: threads share a lock, asyncio
tasks of one event loop share one in-flight task, and processes sharing a
:class:`~tokenward.client.FileTokenStorage` take its OS file lock around read-refresh-write and
re-read the file once they hold it, so the second process uses the first one's result instead
of presenting the refresh token again.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit, urlunsplit

import httpx
import orjson

from ..dpop import DPoPKey
from .errors import ClientError, LoginRequired, TemporarilyUnavailable
from .storage import MemoryTokenStorage, TokenStorage

if TYPE_CHECKING:
    from .auth import HttpxAuth
    from .interactive import DeviceCode

__all__ = ["TokenManager", "default_refresh_margin"]

log = logging.getLogger("tokenward.client")

_DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"  # RFC 8628 §3.4


def default_refresh_margin(lifetime: float) -> float:
    """20 % of the access token's lifetime, at most 60 seconds."""
    return min(0.2 * max(lifetime, 0.0), 60.0)


@dataclass(frozen=True)
class _Tokens:
    """One token set as stored. ``repr`` shows no token."""

    access_token: str = field(repr=False)
    expires_at: float  # epoch seconds
    lifetime: float
    refresh_token: str | None = field(default=None, repr=False)
    scope: str | None = None
    grant: str = "password"
    token_type: str = "Bearer"  # noqa: S105 - "DPoP" for a DPoP-bound token (RFC 9449)
    dpop_jwk: dict[str, Any] | None = field(default=None, repr=False)  # the key it is bound to

    def to_dict(self) -> dict[str, Any]:
        data = {
            "access_token": self.access_token,
            "expires_at": self.expires_at,
            "lifetime": self.lifetime,
            "refresh_token": self.refresh_token,
            "scope": self.scope,
            "grant": self.grant,
            "token_type": self.token_type,
        }
        if self.dpop_jwk is not None:
            data["dpop_jwk"] = self.dpop_jwk
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> _Tokens | None:
        try:
            access = data["access_token"]
            refresh = data.get("refresh_token")
            if not isinstance(access, str) or not (refresh is None or isinstance(refresh, str)):
                return None
            return cls(
                access_token=access,
                expires_at=float(data["expires_at"]),
                lifetime=float(data["lifetime"]),
                refresh_token=refresh,
                scope=data.get("scope") if isinstance(data.get("scope"), str) else None,
                grant=str(data.get("grant") or "password"),
                token_type="DPoP" if data.get("token_type") == "DPoP" else "Bearer",
                dpop_jwk=data["dpop_jwk"] if isinstance(data.get("dpop_jwk"), dict) else None,
            )
        except (KeyError, TypeError, ValueError):
            return None


def _jwt_exp(token: str) -> float | None:
    """The ``exp`` of a compact JWS, unverified (only used when ``expires_in`` is missing)."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        payload = orjson.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, orjson.JSONDecodeError):
        return None
    exp = payload.get("exp") if isinstance(payload, dict) else None
    return float(exp) if isinstance(exp, int | float) else None


class TokenManager:
    """The client half of the token lifecycle for one client of one authorization server.

    ``issuer`` is the authorization server's issuer URL (its RFC 8414 metadata is fetched from
    ``/.well-known/oauth-authorization-server`` on first use); ``client_secret`` makes the
    client confidential (``client_secret_basic``); ``resource`` (RFC 8707) and ``scope`` are
    sent with every grant; ``refresh_margin`` is how many seconds before expiry the token is
    refreshed (default: 20 % of its lifetime, at most 60 s). ``http`` lets you pass your own
    ``httpx.Client`` (proxies, CA bundle) for the calls to the authorization server.

    ``dpop=True`` (or a :class:`~tokenward.dpop.DPoPKey`) sender-constrains the tokens
    (RFC 9449): the key is generated once and kept in the storage next to the tokens (so
    processes sharing a ``FileTokenStorage`` share it), every token request and every
    resource request made through the auth objects carries a proof, and a ``DPoP-Nonce``
    the server asks for is used and retried once.
    """

    def __init__(
        self,
        issuer: str,
        client_id: str,
        client_secret: str | None = None,
        *,
        storage: TokenStorage | None = None,
        resource: str | None = None,
        scope: str | None = None,
        refresh_margin: float | None = None,
        http: httpx.Client | None = None,
        timeout: float = 10.0,
        dpop: bool | DPoPKey = False,
    ) -> None:
        parts = urlsplit(issuer)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.query:
            raise ClientError("issuer must be an http(s) URL without query (RFC 8414 §2)")
        if refresh_margin is not None and refresh_margin < 0:
            raise ClientError("refresh_margin must be >= 0 seconds")
        self.issuer = issuer.rstrip("/")
        self.client_id = client_id
        self._client_secret = client_secret
        self.storage: TokenStorage = storage if storage is not None else MemoryTokenStorage()
        self.resource = resource
        self.scope = scope
        self.refresh_margin = refresh_margin
        self._http = http if http is not None else httpx.Client(timeout=timeout)
        self._owns_http = http is None
        self._metadata: dict[str, Any] | None = None
        self._lock = threading.Lock()  # one refresh at a time in this process
        self._meta_lock = threading.Lock()
        self._cache: _Tokens | None = None
        self._backoff_until = 0.0  # monotonic: after a failed early refresh
        self._tasks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Task[str]] = (
            weakref.WeakKeyDictionary()
        )
        self._dpop_key: DPoPKey | None = None
        self._nonces: dict[str, str] = {}  # origin -> the last DPoP-Nonce it sent (RFC 9449 §8)
        if isinstance(dpop, DPoPKey):
            self._dpop_key = dpop
        elif dpop:
            data = self.storage.load()
            stored = _Tokens.from_dict(data) if data is not None else None
            self._dpop_key = _key_of(stored) or DPoPKey.generate()

    # -- DPoP (RFC 9449) -------------------------------------------------------------------------

    @property
    def dpop_key(self) -> DPoPKey | None:
        """The DPoP key the tokens are bound to (``None`` without DPoP)."""
        return self._dpop_key

    def _remember_nonce(self, url: str, resp: Any) -> None:
        nonce = resp.headers.get("DPoP-Nonce")
        if self._dpop_key is not None and nonce:
            self._nonces[_origin(url)] = nonce

    def dpop_proof(self, method: str, url: str, access_token: str | None = None) -> str:
        """A fresh proof for one request (with the server's last nonce, if it sent one)."""
        if self._dpop_key is None:
            raise ClientError("this TokenManager was created without dpop=True")
        return self._dpop_key.proof(
            method, url, access_token=access_token, nonce=self._nonces.get(_origin(url))
        )

    def authorization_headers(self, token: str, method: str, url: str) -> dict[str, str]:
        """``Authorization`` (and ``DPoP``) headers presenting ``token`` for one request."""
        if self._dpop_key is None:
            return {"Authorization": f"Bearer {token}"}
        return {
            "Authorization": f"DPoP {token}",
            "DPoP": self.dpop_proof(method, url, access_token=token),
        }

    def wants_nonce_retry(self, url: str, resp: Any) -> bool:
        """The resource server asked for a DPoP nonce (401 ``use_dpop_nonce`` with a
        ``DPoP-Nonce``, RFC 9449 §9): remember it; the caller retries once."""
        if self._dpop_key is None or resp.status_code not in (400, 401):
            return False
        challenge = resp.headers.get("WWW-Authenticate", "")
        if "use_dpop_nonce" not in challenge or not resp.headers.get("DPoP-Nonce"):
            return False
        self._remember_nonce(url, resp)
        return True

    def __repr__(self) -> str:
        return f"TokenManager(issuer={self.issuer!r}, client_id={self.client_id!r})"

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> TokenManager:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- discovery -------------------------------------------------------------------------------

    def metadata(self) -> dict[str, Any]:
        """The server's RFC 8414 metadata (fetched once; the ``issuer`` it names must equal
        ours, RFC 8414 §3.3)."""
        if self._metadata is not None:
            return self._metadata
        with self._meta_lock:
            if self._metadata is None:
                parts = urlsplit(self.issuer)
                path = parts.path.rstrip("/")  # RFC 8414 §3.1: well-known before the path
                url = urlunsplit(
                    (
                        parts.scheme,
                        parts.netloc,
                        "/.well-known/oauth-authorization-server" + path,
                        "",
                        "",
                    )
                )
                try:
                    resp = self._http.get(url, headers={"Accept": "application/json"})
                except httpx.TransportError as exc:
                    raise TemporarilyUnavailable(f"cannot reach {url}: {exc}") from None
                if resp.status_code >= 500 or resp.status_code == 429:
                    raise TemporarilyUnavailable(
                        f"{url} answered {resp.status_code}", status=resp.status_code
                    )
                try:
                    meta = resp.json()
                except ValueError:
                    meta = None
                if resp.status_code != 200 or not isinstance(meta, dict):
                    raise ClientError(
                        f"{url} answered {resp.status_code} without RFC 8414 metadata",
                        status=resp.status_code,
                    )
                if meta.get("issuer") != self.issuer:
                    raise ClientError(
                        f"the metadata names issuer {meta.get('issuer')!r}, not {self.issuer!r}"
                    )
                if not isinstance(meta.get("token_endpoint"), str):
                    raise ClientError("the metadata has no token_endpoint")
                self._metadata = meta
        return self._metadata

    def _endpoint(self, name: str) -> str:
        url = self.metadata().get(name)
        if not isinstance(url, str):
            raise ClientError(f"the authorization server publishes no {name}")
        return url

    # -- HTTP to the authorization server ---------------------------------------------------------

    def _client_auth(self, form: dict[str, str]) -> dict[str, str]:
        """RFC 6749 §2.3.1: ``client_secret_basic`` (form-urlencoded id and secret), or the
        ``client_id`` in the body for a public client."""
        if self._client_secret is None:
            form["client_id"] = self.client_id
            return {}
        pair = f"{quote(self.client_id, safe='')}:{quote(self._client_secret, safe='')}"
        return {"Authorization": "Basic " + base64.b64encode(pair.encode()).decode()}

    def _post(self, endpoint: str, form: dict[str, str]) -> httpx.Response:
        url = self._endpoint(endpoint)
        headers = {"Accept": "application/json", **self._client_auth(form)}
        dpop = self._dpop_key is not None and endpoint == "token_endpoint"
        try:
            for attempt in (1, 2):
                if dpop:
                    headers["DPoP"] = self.dpop_proof("POST", url)
                resp = self._http.post(url, data=form, headers=headers)
                if dpop:
                    self._remember_nonce(url, resp)
                # RFC 9449 §8: the server wants a nonce: once more with the one it sent
                if not (
                    dpop
                    and attempt == 1
                    and resp.status_code == 400
                    and _error_code(resp) == "use_dpop_nonce"
                    and resp.headers.get("DPoP-Nonce")
                ):
                    break
        except httpx.TransportError as exc:
            raise TemporarilyUnavailable(f"cannot reach {url}: {type(exc).__name__}") from None
        if resp.status_code >= 500 or resp.status_code == 429:
            retry = resp.headers.get("Retry-After", "")
            raise TemporarilyUnavailable(
                f"{url} answered {resp.status_code}: {_describe(resp)}",
                error=_error_code(resp) or None,
                status=resp.status_code,
                retry_after=float(retry) if retry.isdigit() else None,
            )
        return resp

    def _grant(self, form: dict[str, str], *, grant: str) -> _Tokens:
        if self.resource is not None:
            form.setdefault("resource", self.resource)
        resp = self._post("token_endpoint", form)
        if resp.status_code != 200:
            raise ClientError(
                f"token endpoint: {_describe(resp)}",
                error=_error_code(resp) or None,
                status=resp.status_code,
            )
        tokens = _tokens_from(resp, grant=grant, previous_refresh=form.get("refresh_token"))
        if self._dpop_key is not None:
            tokens = replace(tokens, dpop_jwk=self._dpop_key.to_jwk())
        return tokens

    def _store(self, tokens: _Tokens) -> None:
        self.storage.save(tokens.to_dict())
        self._cache = tokens

    def _start(self, form: dict[str, str], *, grant: str) -> None:
        """A sign-in grant: store the new token set (under the locks, like a refresh)."""
        tokens = self._grant(form, grant=grant)
        with self._lock, self.storage.lock():
            self._store(tokens)
        log.info("signed in", extra={"grant": grant, "client_id": self.client_id})

    # -- sign-in --------------------------------------------------------------------------------

    def login_password(self, username: str, password: str, *, scope: str | None = None) -> None:
        """Resource-owner password grant (RFC 6749 §4.3) for first-party apps and tests."""
        form = {"grant_type": "password", "username": username, "password": password}
        if scope or self.scope:
            form["scope"] = scope or self.scope or ""
        self._start(form, grant="password")

    def client_credentials(self, *, scope: str | None = None) -> None:
        """Client credentials grant (RFC 6749 §4.4) for services; when the token comes due the
        manager asks for a new one the same way (there is no refresh token)."""
        if self._client_secret is None:
            raise ClientError("client_credentials needs a confidential client (client_secret)")
        form = {"grant_type": "client_credentials"}
        if scope or self.scope:
            form["scope"] = scope or self.scope or ""
        self._start(form, grant="client_credentials")

    def login_authorization_code(
        self,
        *,
        scope: str | None = None,
        open_browser: Callable[[str], object] | None = None,
        port: int = 0,
        timeout: float = 300.0,
    ) -> None:
        """Authorization code grant with PKCE S256 (RFC 7636) and a loopback redirect
        (RFC 8252 §7.3): listens on ``http://127.0.0.1:<port>/callback`` (any free port by
        default), calls ``open_browser(url)`` (default: :func:`webbrowser.open`) and waits up to
        ``timeout`` seconds for the redirect."""
        from .interactive import authorization_code_flow

        code, redirect_uri, verifier = authorization_code_flow(
            self._endpoint("authorization_endpoint"),
            client_id=self.client_id,
            scope=scope or self.scope,
            resource=self.resource,
            issuer=self.issuer,
            open_browser=open_browser,
            port=port,
            timeout=timeout,
            require_iss=self.metadata().get("authorization_response_iss_parameter_supported")
            is True,
        )
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "code_verifier": verifier,
        }
        self._start(form, grant="authorization_code")

    def login_device(
        self,
        on_code: Callable[[DeviceCode], object],
        *,
        scope: str | None = None,
        timeout: float | None = None,
    ) -> None:
        """Device authorization grant (RFC 8628): ``on_code`` receives the
        :class:`~tokenward.client.DeviceCode` to show the user (the library never prints), then
        the token endpoint is polled at the server's interval until the user approves."""
        from .interactive import DeviceCode

        form: dict[str, str] = {}
        if scope or self.scope:
            form["scope"] = scope or self.scope or ""
        resp = self._post("device_authorization_endpoint", form)
        if resp.status_code != 200:
            raise ClientError(
                f"device authorization: {_describe(resp)}",
                error=_error_code(resp) or None,
                status=resp.status_code,
            )
        code = DeviceCode.from_response(resp)
        on_code(code)
        interval = code.interval
        deadline = time.monotonic() + min(code.expires_in, timeout or code.expires_in)
        while True:
            time.sleep(interval)
            if time.monotonic() > deadline:
                raise ClientError(
                    "the device code expired before it was approved", error="expired_token"
                )
            poll = {"grant_type": _DEVICE_GRANT, "device_code": code.device_code}
            try:
                tokens = self._grant(poll, grant="device_code")
            except ClientError as exc:
                if exc.error == "authorization_pending":  # RFC 8628 §3.5
                    continue
                if exc.error == "slow_down":
                    interval += 5
                    continue
                raise
            with self._lock, self.storage.lock():
                self._store(tokens)
            return

    # -- a valid access token -------------------------------------------------------------------

    def _margin(self, tokens: _Tokens) -> float:
        if self.refresh_margin is not None:
            return self.refresh_margin
        return default_refresh_margin(tokens.lifetime)

    def _due(self, tokens: _Tokens) -> bool:
        return time.time() >= tokens.expires_at - self._margin(tokens)

    def _usable(self, tokens: _Tokens | None, rejected: str | None) -> bool:
        if tokens is None:
            return False
        if rejected is None:
            return not self._due(tokens)
        return tokens.access_token != rejected and time.time() < tokens.expires_at

    def access_token(self) -> str:
        """A valid access token, refreshed first (once, whoever else asks) when it is within
        the refresh margin of expiry. Raises :class:`LoginRequired` when there is no session."""
        tokens = self._cache
        if self._usable(tokens, None):
            assert tokens is not None
            return tokens.access_token
        return self._slow(None)

    async def aaccess_token(self) -> str:
        """:meth:`access_token` for asyncio: the tasks of one event loop share one refresh."""
        tokens = self._cache
        if self._usable(tokens, None):
            assert tokens is not None
            return tokens.access_token
        return await self._aslow(None)

    def token_after_rejection(self, rejected: str) -> str:
        """The server refused ``rejected`` (401 ``invalid_token``): a newer token if another
        caller already got one, else the result of one refresh."""
        return self._slow(rejected)

    async def atoken_after_rejection(self, rejected: str) -> str:
        return await self._aslow(rejected)

    def _slow(self, rejected: str | None) -> str:
        with self._lock:
            cached = self._cache
            if self._usable(cached, rejected):
                assert cached is not None
                return cached.access_token
            with self.storage.lock():
                return self._refresh_locked(rejected)

    async def _aslow(self, rejected: str | None) -> str:
        loop = asyncio.get_running_loop()
        while True:
            task = self._tasks.get(loop)
            if task is None:
                task = loop.create_task(asyncio.to_thread(self._slow, rejected))
                self._tasks[loop] = task
                task.add_done_callback(lambda t: self._forget_task(loop, t))
                return await asyncio.shield(task)
            token = await asyncio.shield(task)
            if rejected is None or token != rejected:
                return token

    def _forget_task(self, loop: asyncio.AbstractEventLoop, task: asyncio.Task[str]) -> None:
        if self._tasks.get(loop) is task:
            del self._tasks[loop]

    def _refresh_locked(self, rejected: str | None) -> str:
        """Holding the thread lock and the storage lock: re-read the storage (another process
        may have refreshed), then refresh only if what is stored is still not usable."""
        data = self.storage.load()
        stored = _Tokens.from_dict(data) if data is not None else None
        if stored is None:
            self._cache = None
            raise LoginRequired("not signed in")
        key = _key_of(stored) if self._dpop_key is not None else None
        if key is not None and self._dpop_key is not None and key.jkt != self._dpop_key.jkt:
            self._dpop_key = key  # another process signed in: its session is bound to its key
        if self._usable(stored, rejected):
            self._cache = stored
            return stored.access_token
        early = rejected is None and time.time() < stored.expires_at
        if early and time.monotonic() < self._backoff_until:
            self._cache = stored
            return stored.access_token
        try:
            fresh = self._renew(stored)
        except TemporarilyUnavailable:
            if not early:
                raise
            # the token still works: use it, and try again a little later
            self._backoff_until = time.monotonic() + min(5.0, self._margin(stored) / 4)
            log.warning("early refresh failed; the current token is still valid")
            self._cache = stored
            return stored.access_token
        self._store(fresh)
        return fresh.access_token

    def _renew(self, stored: _Tokens) -> _Tokens:
        if stored.refresh_token is None:
            if stored.grant == "client_credentials":
                form = {"grant_type": "client_credentials"}
                if stored.scope:
                    form["scope"] = stored.scope
                return self._grant(form, grant="client_credentials")
            self._clear()
            raise LoginRequired("the access token expired and there is no refresh token")
        form = {"grant_type": "refresh_token", "refresh_token": stored.refresh_token}
        try:
            fresh = self._grant(form, grant=stored.grant)
        except LoginRequired:
            raise
        except ClientError as exc:
            if exc.error == "invalid_grant":  # revoked, reused or expired session
                self._clear()
                raise LoginRequired(
                    f"the session ended; sign in again ({exc.description})",
                    error="invalid_grant",
                    status=exc.status,
                ) from None
            raise
        log.debug("refreshed the access token", extra={"expires_in": fresh.lifetime})
        return fresh

    def _clear(self) -> None:
        self.storage.clear()
        self._cache = None

    # -- sign-out -------------------------------------------------------------------------------

    def logout(self) -> None:
        """Revoke the session at the revocation endpoint (RFC 7009: the refresh token, which
        ends its whole session; else the access token) and clear the storage. If the server
        cannot be reached the tokens are kept (they are still valid there) and
        :class:`TemporarilyUnavailable` is raised: call ``logout()`` again."""
        with self._lock, self.storage.lock():
            data = self.storage.load()
            stored = _Tokens.from_dict(data) if data is not None else None
            if stored is None:
                self._cache = None
                return
            if stored.refresh_token is not None:
                form = {"token": stored.refresh_token, "token_type_hint": "refresh_token"}
            else:
                form = {"token": stored.access_token, "token_type_hint": "access_token"}
            if "revocation_endpoint" in self.metadata():  # unreachable: raises, keeps tokens
                resp = self._post("revocation_endpoint", form)
                if resp.status_code != 200:
                    raise ClientError(
                        f"revocation endpoint: {_describe(resp)}",
                        error=_error_code(resp) or None,
                        status=resp.status_code,
                    )
            self._clear()

    # -- auth objects ---------------------------------------------------------------------------

    def httpx_auth(self) -> HttpxAuth:
        """An ``httpx.Auth`` (sync and async clients): bearer token, and on a 401
        ``invalid_token`` one refresh and one retry."""
        from .auth import HttpxAuth

        return HttpxAuth(self)

    def requests_auth(self) -> Any:
        """A ``requests.auth.AuthBase`` doing the same (needs the ``requests`` package)."""
        from .auth import requests_auth

        return requests_auth(self)


def _error_code(resp: httpx.Response) -> str:
    try:
        body = resp.json()
    except ValueError:
        return ""
    code = body.get("error") if isinstance(body, dict) else None
    return code if isinstance(code, str) else ""


def _describe(resp: httpx.Response) -> str:
    """``error: description`` of an RFC 6749 §5.2 body (never echoes anything else)."""
    try:
        body = resp.json()
    except ValueError:
        return f"HTTP {resp.status_code}"
    if not isinstance(body, dict) or not isinstance(body.get("error"), str):
        return f"HTTP {resp.status_code}"
    desc = body.get("error_description")
    text = str(body["error"]) + (f": {desc}" if isinstance(desc, str) and desc else "")
    return text[:300]


def _tokens_from(resp: httpx.Response, *, grant: str, previous_refresh: str | None) -> _Tokens:
    """RFC 6749 §5.1 response → token set; a refresh response without a new refresh token
    keeps the old one (§6: the server may not rotate)."""
    try:
        body = resp.json()
    except ValueError:
        body = None
    if not isinstance(body, dict) or not isinstance(body.get("access_token"), str):
        raise ClientError("the token endpoint sent no access_token")
    token_type = body.get("token_type")
    if not isinstance(token_type, str) or token_type.lower() not in ("bearer", "dpop"):
        raise ClientError(f"unsupported token_type {str(token_type)[:20]!r}")
    now = time.time()
    expires_in = body.get("expires_in")
    if isinstance(expires_in, int | float) and not isinstance(expires_in, bool) and expires_in > 0:
        lifetime = float(expires_in)
    else:
        exp = _jwt_exp(body["access_token"])
        lifetime = max(exp - now, 0.0) if exp is not None else 300.0
    refresh = body.get("refresh_token")
    scope = body.get("scope")
    return _Tokens(
        access_token=body["access_token"],
        expires_at=now + lifetime,
        lifetime=lifetime,
        refresh_token=refresh if isinstance(refresh, str) else previous_refresh,
        scope=scope if isinstance(scope, str) else None,
        grant=grant,
        token_type="DPoP" if token_type.lower() == "dpop" else "Bearer",
    )


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def _key_of(tokens: _Tokens | None) -> DPoPKey | None:
    if tokens is None or tokens.dpop_jwk is None:
        return None
    try:
        return DPoPKey.from_jwk(tokens.dpop_jwk)
    except Exception:  # a damaged key: a new sign-in binds a new one
        log.warning("the stored DPoP key cannot be loaded")
        return None
