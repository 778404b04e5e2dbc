"""Remote JWK Set: fetched with ``httpx``, cached per ``Cache-Control: max-age``.

* A successful fetch is kept for ``max-age`` seconds (clamped to ``[min_max_age,
  max_max_age]``; ``default_max_age`` when the server sends none; ``no-cache``/``no-store``
  mean the minimum). The background task refetches when it runs out, with ``If-None-Match``
  when the server gave an ``ETag``.
* A token with an unknown ``kid`` may trigger one extra fetch, at most once per ``cooldown``
  seconds however many such tokens arrive (attacker-chosen ``kid`` values cannot turn the
  verifier into a request amplifier), and concurrent callers share the one fetch in flight.
* A failed fetch never throws away the keys already known: verification continues with the
  last good set while the fetch is retried (after ``min(cooldown, max-age)`` seconds).
* Members that are not signature keys tokenward can use (``use: enc``, unknown ``alg``, RSA
  below 2048 bits ...) are skipped one by one; a set with duplicate ``kid`` values, or that is
  not a JWK Set at all, is refused as a whole.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Callable, Mapping

import httpx
import orjson

from .._logging import get_logger
from ..clock import Clock, system_clock
from ..errors import ConfigurationError, KeyRingError, TokenwardError
from ..keys import SigningKey, key_from_jwk

__all__ = ["JWKSFetcher", "parse_max_age"]

log = get_logger("tokenward.guard.jwks")

_MAX_AGE = re.compile(r"(?:^|,)\s*max-age\s*=\s*\"?(\d{1,10})\"?\s*(?:,|$)", re.IGNORECASE)
_NO_CACHE = re.compile(r"(?:^|,)\s*no-(?:cache|store)\s*(?:[,=]|$)", re.IGNORECASE)
_MAX_JWKS_BYTES = 512 * 1024


def parse_max_age(cache_control: str | None) -> float | None:
    """Seconds from ``Cache-Control``: ``max-age=N`` → N, ``no-cache``/``no-store`` → 0."""
    if not cache_control:
        return None
    if _NO_CACHE.search(cache_control):
        return 0.0
    m = _MAX_AGE.search(cache_control)
    return float(m.group(1)) if m else None


class JWKSFetcher:
    """Keeps a remote JWK Set fresh and hands every changed set to ``on_keys``.

    The fetch coroutines run on the guard's background loop (:mod:`tokenward.guard._loop`);
    ``on_keys`` is called from there with the new list of :class:`SigningKey`.
    """

    def __init__(
        self,
        url: str,
        *,
        on_keys: Callable[[list[SigningKey]], None],
        clock: Clock = system_clock,
        http_timeout: float = 2.0,
        cooldown: float = 30.0,
        default_max_age: float = 300.0,
        min_max_age: float = 5.0,
        max_max_age: float = 86_400.0,
        transport: httpx.AsyncBaseTransport | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        if not url.startswith(("https://", "http://")):
            raise ConfigurationError("jwks_url must be an http(s) URL")
        if cooldown < 0 or http_timeout <= 0 or min_max_age < 0 or max_max_age < min_max_age:
            raise ConfigurationError("invalid JWKS timing settings")
        self.url = url
        self.clock = clock
        self.http_timeout = float(http_timeout)
        self.cooldown = float(cooldown)
        self.default_max_age = float(default_max_age)
        self.min_max_age = float(min_max_age)
        self.max_max_age = float(max_max_age)
        self._on_keys = on_keys
        self._transport = transport
        self._headers = dict(headers or {})
        self._client: httpx.AsyncClient | None = None
        self._etag: str | None = None
        self._fingerprint: bytes | None = None
        self._inflight: asyncio.Future[bool] | None = None
        self._wake: asyncio.Event | None = None
        #: clock time of the last fetch attempt / last success; when the set goes stale.
        self.last_attempt: float | None = None
        self.last_success: float | None = None
        self.expires_at: float = 0.0
        self.kids: frozenset[str] = frozenset()
        self.fetches = 0
        self.failures = 0

    # -- HTTP -------------------------------------------------------------------------------
    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                timeout=self.http_timeout,
                transport=self._transport,
                headers={"Accept": "application/jwk-set+json, application/json", **self._headers},
                follow_redirects=False,
            )
        return self._client

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    def _clamp(self, max_age: float | None) -> float:
        age = self.default_max_age if max_age is None else max_age
        return min(max(age, self.min_max_age), self.max_max_age)

    async def fetch(self) -> bool:
        """Fetch the set now (shared with any fetch already in flight).

        Returns ``True`` when the key set changed. Never raises for network or format
        problems: they are logged and the previous keys stay in force.
        """
        if self._inflight is not None:
            return await asyncio.shield(self._inflight)
        fut: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._inflight = fut
        try:
            changed = await self._fetch_once()
            fut.set_result(changed)
            return changed
        except BaseException as exc:  # cancelled: let the waiters know too
            fut.set_exception(exc)
            fut.exception()  # mark retrieved
            raise
        finally:
            self._inflight = None

    async def _fetch_once(self) -> bool:
        now = self.clock.now()
        self.last_attempt = now
        self.fetches += 1
        headers = {"If-None-Match": self._etag} if self._etag else {}
        try:
            resp = await self._http().get(self.url, headers=headers)
            if resp.status_code == 304 and self._fingerprint is not None:
                self._fresh(resp, now)
                return False
            if resp.status_code != 200:
                raise KeyRingError(f"JWKS endpoint answered HTTP {resp.status_code}")
            body = resp.content
            if len(body) > _MAX_JWKS_BYTES:
                raise KeyRingError("JWKS document too large")
            keys = self._parse(body)
        except (httpx.HTTPError, TokenwardError) as exc:
            self.failures += 1
            self.expires_at = now + max(1.0, min(self.cooldown, self._clamp(None)))
            log.warning("jwks_fetch_failed", url=self.url, error=_describe(exc))
            return False
        self._fresh(resp, now)
        self._etag = resp.headers.get("etag")
        fingerprint = orjson.dumps(
            sorted((k.kid, k.alg, orjson.dumps(k.public_jwk()).decode()) for k in keys)
        )
        if fingerprint == self._fingerprint:
            return False
        self._fingerprint = fingerprint
        self.kids = frozenset(k.kid for k in keys)
        self._on_keys(keys)
        log.info("jwks_updated", url=self.url, kids=len(keys))
        return True

    def _fresh(self, resp: httpx.Response, now: float) -> None:
        self.last_success = now
        self.expires_at = now + self._clamp(parse_max_age(resp.headers.get("cache-control")))

    def _parse(self, body: bytes) -> list[SigningKey]:
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise KeyRingError("JWKS is not JSON") from None
        members = doc.get("keys") if isinstance(doc, dict) else None
        if not isinstance(members, list):
            raise KeyRingError("JWKS has no 'keys' array")
        keys: list[SigningKey] = []
        seen: set[str] = set()
        for m in members:
            if not isinstance(m, dict) or m.get("use", "sig") != "sig":
                continue
            if any(p in m for p in ("d", "p", "q", "k")):
                continue  # never accept private or symmetric material from a URL
            try:
                key = key_from_jwk(m)
            except TokenwardError:
                continue
            if key.kid in seen:
                raise KeyRingError("JWKS has duplicate kid values")
            seen.add(key.kid)
            keys.append(key)
        if not keys:
            raise KeyRingError("JWKS has no usable signature keys")
        return keys

    # -- triggers ---------------------------------------------------------------------------
    def cooldown_over(self) -> bool:
        last = self.last_attempt
        return last is None or self.clock.now() - last >= self.cooldown

    async def refetch_for_unknown_kid(self, kid: str) -> bool:
        """One fetch for a ``kid`` we do not know, unless the cooldown forbids it.

        Returns ``True`` when ``kid`` is known afterwards.
        """
        if kid in self.kids:
            return True
        if self._inflight is None and not self.cooldown_over():
            return False
        await self.fetch()
        return kid in self.kids

    def wake(self) -> None:
        """Make the background task re-evaluate its schedule now (call from the loop)."""
        if self._wake is not None:
            self._wake.set()

    async def run(self) -> None:
        """The background task: fetch whenever the cached set has expired."""
        self._wake = asyncio.Event()
        try:
            while True:
                delay = self.expires_at - self.clock.now()
                if delay <= 0:
                    await self.fetch()
                    continue
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(min(delay, 1.0)):
                        await self._wake.wait()
        finally:
            await self.aclose()


def _describe(exc: BaseException) -> str:
    """An error summary that never includes response bodies or key material."""
    if isinstance(exc, TokenwardError):
        return exc.description
    return type(exc).__name__
