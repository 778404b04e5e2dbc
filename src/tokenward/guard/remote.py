"""The remote :class:`Verifier`: what a resource server uses to check tokenward access tokens.

It is the core :class:`tokenward.verifier.Verifier` (strict JWS profile, claim rules,
verified-token cache) fed by two background tasks on one daemon thread
(:mod:`tokenward.guard._loop`): the :class:`~tokenward.guard.jwks.JWKSFetcher` and the
:class:`~tokenward.guard.mirror.RevocationMirror`.

``verify(token)`` does no I/O, with one bounded exception: a token whose ``kid`` is not in the
cached key set triggers one JWKS fetch, at most once per ``jwks_cooldown`` seconds (however
many unknown ``kid`` values arrive) and shared by every request that needs it. The request
waits for that fetch (at most ``http_timeout``) so that a valid token signed with a key the
server just introduced is accepted on its first use instead of being rejected once. Inside an
event loop use :meth:`Verifier.averify`, which awaits the same fetch without blocking the loop.
With publish-before-sign on the server (a ``next`` key in the JWKS before it signs) the fetch
is almost never needed.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import threading
from collections.abc import Container, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, Self

import httpx
import orjson

from ..claims import AccessTokenClaims
from ..clock import Clock, system_clock
from ..dpop import DEFAULT_MAX_AGE
from ..errors import ConfigurationError, TokenwardError, UnknownKey
from ..jws import b64url_decode, parse_json_object
from ..keys import SigningKey
from ..mirror import RevocationMirror as CoreMirror
from ..verifier import DEFAULT_CACHE_SIZE, DEFAULT_LEEWAY
from ..verifier import Verifier as CoreVerifier
from ._loop import BackgroundLoop
from .dpop import DPoPChecker
from .jwks import JWKSFetcher
from .mirror import RevocationMirror
from .ssf import SSFPoll, SSFPollSource

if TYPE_CHECKING:
    from ..jwe import TokenEncryption

__all__ = ["Verifier"]


def _decryption(key: Mapping[str, Any] | str | None) -> TokenEncryption | None:
    if key is None:
        return None
    from ..jwe import TokenEncryption

    jwk: Any = key
    if isinstance(key, str):
        try:
            jwk = orjson.loads(key)
        except orjson.JSONDecodeError:
            raise ConfigurationError("decryption_key must be a private P-256 JWK") from None
    if not isinstance(jwk, Mapping) or "d" not in jwk:
        raise ConfigurationError("decryption_key must be a PRIVATE P-256 JWK (with 'd')")
    return TokenEncryption.ecdh_es(jwk)


class Verifier:
    """Verify access tokens of a remote tokenward server.

    ``revocations_url`` (with the confidential client's ``client_id``/``client_secret``) turns
    on the revocation mirror over a tokenward server's feed; ``revocation=SSFPoll(...)`` (or a
    mapping of its fields) over an SSF transmitter's RFC 8936 poll endpoint instead
    (:mod:`tokenward.guard.ssf`); both follow the same ``max_staleness``/``fail_closed``
    rule. Without either only signatures and claims are checked. Start with
    :meth:`start` (or ``with``/``async with``; the first ``verify`` starts it too) and end with
    :meth:`close`.

    ``decryption_key``: for a resource registered with an encryption key
    (``tokenward resource add … --encryption-key-file PUBLIC_JWK``), its PRIVATE P-256 JWK
    (a dict, or JSON text): tokens are then a signed JWT nested in a JWE (ECDH-ES+A256KW,
    A256GCM, ``cty: JWT``), decrypted under the same strict header rules as the server's
    (:mod:`tokenward.jwe`) before the usual signature and claim checks; a plain signed token
    is refused.
    """

    def __init__(
        self,
        *,
        jwks_url: str,
        issuer: str,
        audience: str,
        revocations_url: str | None = None,
        client_id: str | None = None,
        client_secret: str | None = None,
        leeway: float = DEFAULT_LEEWAY,
        cache_size: int = DEFAULT_CACHE_SIZE,
        max_staleness: float = 60.0,
        jwks_cooldown: float = 30.0,
        http_timeout: float = 2.0,
        fail_closed: bool = True,
        clock: Clock = system_clock,
        feed_mode: Literal["longpoll", "sse"] = "longpoll",
        feed_wait: float | None = None,
        jwks_default_max_age: float = 300.0,
        transport: httpx.AsyncBaseTransport | None = None,
        decryption_key: Mapping[str, Any] | str | None = None,
        external_url: str | None = None,
        dpop_max_age: float = DEFAULT_MAX_AGE,
        dpop_replay_url: str | None = None,
        revocation: SSFPoll | Mapping[str, Any] | None = None,
    ) -> None:
        encryption = _decryption(decryption_key)
        self.clock = clock
        # DPoP (RFC 9449 §7): external_url is the URL clients use (behind a proxy); a
        # dpop_replay_url (redis://) shares the proof replay cache between processes
        self.dpop = DPoPChecker(
            external_url=external_url,
            max_age=dpop_max_age,
            replay_url=dpop_replay_url,
            now=clock.now,
        )
        self.http_timeout = float(http_timeout)
        self.jwks = JWKSFetcher(
            jwks_url,
            on_keys=self._set_keys,
            clock=clock,
            http_timeout=http_timeout,
            cooldown=jwks_cooldown,
            default_max_age=jwks_default_max_age,
            transport=transport,
        )
        self.mirror: CoreMirror | None = None
        if revocation is not None:
            if revocations_url is not None or client_id or client_secret:
                raise ConfigurationError(
                    "revocation (SSF poll) replaces revocations_url and its client credentials"
                )
            if max_staleness <= 0 or http_timeout <= 0:
                raise ConfigurationError("max_staleness and http_timeout must be positive")
            ssf = SSFPoll.of(revocation)
            if ssf.interval > max_staleness / 3:
                raise ConfigurationError("the SSF poll interval must be at most max_staleness / 3")
            source = SSFPollSource(
                ssf,
                token_issuer=issuer,
                leeway=leeway,
                # how long a held poll may take: inside the staleness limit, with one retry
                wait=float(feed_wait) if feed_wait is not None else max_staleness / 2,
                clock=clock,
                http_timeout=http_timeout,
                jwks_cooldown=jwks_cooldown,
                transport=transport,
            )
            self.mirror = CoreMirror(
                source, clock=clock, max_staleness=max_staleness, fail_closed=fail_closed
            )
        elif revocations_url is not None:
            self.mirror = RevocationMirror(
                revocations_url,
                client_id=client_id or "",
                client_secret=client_secret or "",
                clock=clock,
                max_staleness=max_staleness,
                fail_closed=fail_closed,
                wait=feed_wait,
                http_timeout=http_timeout,
                mode=feed_mode,
                transport=transport,
            )
        elif client_id or client_secret:
            raise ConfigurationError("client credentials given without a revocations_url")
        self.core = CoreVerifier(
            {"keys": []},
            issuer=issuer,
            audience=audience,
            leeway=leeway,
            clock=clock,
            cache_size=cache_size,
            revocation=self.mirror,
            encryption=encryption,
        )
        self._loop = BackgroundLoop()
        self._lock = threading.Lock()
        self._state: Literal["new", "running", "closed"] = "new"
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def issuer(self) -> str:
        return self.core.issuer

    @property
    def audience(self) -> str | Container[str]:
        return self.core.audience

    def _set_keys(self, keys: list[SigningKey]) -> None:
        self.core.set_keys(keys)

    # -- life cycle -------------------------------------------------------------------------
    def start(self, *, wait: bool = True) -> Self:
        """Start the background thread; with ``wait``, return after the first JWKS fetch and
        revocation snapshot were tried (bounded by about ``2 × http_timeout``). Never raises
        for an unreachable server: the tasks keep retrying and ``verify`` fails closed."""
        with self._lock:
            if self._state == "running":
                return self
            if self._state == "closed":
                raise ConfigurationError("this guard Verifier was closed")
            self._loop.start()
            boot = self._loop.submit(self._boot())
            self._state = "running"
            atexit.register(self.close)
        if wait:
            with contextlib.suppress(TimeoutError):
                boot.result(timeout=2 * self.http_timeout + 1.0)
        return self

    async def _boot(self) -> None:
        first: list[Any] = [self.jwks.fetch()]
        if self.mirror is not None:
            first.append(self._first_snapshot(self.mirror))
        await asyncio.gather(*first, return_exceptions=True)
        loop = asyncio.get_running_loop()
        self._tasks.append(loop.create_task(self.jwks.run()))
        if self.mirror is not None:
            self._tasks.append(loop.create_task(self.mirror.run()))

    @staticmethod
    async def _first_snapshot(mirror: CoreMirror) -> None:
        try:
            await mirror.sync()
        finally:
            await mirror.aclose()  # the follower task opens its own connection

    def close(self) -> None:
        """Stop the background tasks and join the thread. Idempotent."""
        with self._lock:
            if self._state == "closed":
                return
            self._state = "closed"
        self._finish_revocation_source()
        self._loop.stop()
        atexit.unregister(self.close)

    def _finish_revocation_source(self) -> None:
        """An SSF poll source deletes the stream it created (or sends its last acks)."""
        m = self.mirror
        if m is None or not isinstance(m.source, SSFPollSource):
            return
        if not self._loop.running or self._loop.in_loop_thread():
            return
        fut = self._loop.submit(m.source.finish())
        with contextlib.suppress(Exception):
            fut.result(timeout=2 * self.http_timeout + 1.0)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        await asyncio.to_thread(self.start)
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await asyncio.to_thread(self.close)

    # -- verification -----------------------------------------------------------------------
    def verify(self, token: str) -> AccessTokenClaims:
        """The verified claims, or an ``InvalidToken`` subclass; ``StoreUnavailable`` when the
        revocation mirror is stale and ``fail_closed``."""
        if self._state != "running":
            self.start()
        try:
            return self.core.verify(token)
        except UnknownKey:
            kid = self._new_kid(token)
            if kid is None or not self._refetch_blocking(kid):
                raise
        return self.core.verify(token)

    async def averify(self, token: str) -> AccessTokenClaims:
        """:meth:`verify` for coroutines: an unknown-``kid`` fetch is awaited, not blocked on."""
        if self._state != "running":
            await asyncio.to_thread(self.start)
        try:
            return self.core.verify(token)
        except UnknownKey:
            kid = self._new_kid(token)
            if kid is None or not self._may_refetch():
                raise
            fut = self._loop.submit(self.jwks.refetch_for_unknown_kid(kid))
            try:
                async with asyncio.timeout(self.http_timeout + 1.0):
                    known = await asyncio.wrap_future(fut)
            except TimeoutError:
                known = False
            if not known:
                raise
        return self.core.verify(token)

    def _new_kid(self, token: str) -> str | None:
        """The header's ``kid`` when it is a plausible one we do not know (slow path only)."""
        try:
            header = parse_json_object(b64url_decode(token.partition(".")[0]), "JOSE header")
        except TokenwardError:  # any decoding problem: not worth a fetch
            return None
        kid = header.get("kid")
        if type(kid) is not str or not kid or len(kid) > 256 or kid in self.core.kids:
            return None
        return kid

    def _may_refetch(self) -> bool:
        return self._loop.running and not self._loop.in_loop_thread()

    def _refetch_blocking(self, kid: str) -> bool:
        if not self._may_refetch():
            return False
        fut = self._loop.submit(self.jwks.refetch_for_unknown_kid(kid))
        try:
            return fut.result(timeout=self.http_timeout + 1.0)
        except TimeoutError:
            return False

    # -- introspection ----------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """Health facts for a resource server's own ``/healthz`` (no secrets)."""
        now = self.clock.now()
        out: dict[str, Any] = {
            "state": self._state,
            "jwks": {
                "kids": len(self.jwks.kids),
                "age": None if self.jwks.last_success is None else now - self.jwks.last_success,
                "fetches": self.jwks.fetches,
                "failures": self.jwks.failures,
            },
        }
        m = self.mirror
        if m is not None:
            out["revocations"] = {
                "synced": m.synced,
                "cursor": m.cursor,
                "age": None if not m.synced else now - m.last_sync,
                "stale": m.stale,
                "events": m.events_applied,
                "last_lag": m.last_lag,
                "failures": m.failures,
                "last_error": m.last_error,
            }
            if isinstance(m.source, SSFPollSource):
                out["revocations"]["ssf"] = m.source.status()
        return out
