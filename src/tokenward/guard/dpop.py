"""DPoP (RFC 9449 §7) at a resource server: the ``DPoP`` scheme, the proof, ``cnf.jkt``.

:class:`DPoPChecker` is what every integration runs after the access token verified:

* a token bound to a key (``cnf.jkt``) must come with the ``DPoP`` scheme: as ``Bearer`` it is
  refused (§7.2), whoever holds a copy;
* with the ``DPoP`` scheme, exactly one ``DPoP`` header with a proof for this request: ``htm``
  the method, ``htu`` the URL the *client* used (``external_url`` + the path, behind a proxy
  that rewrites the host or the scheme), ``ath`` the token's hash, the key whose thumbprint is
  ``cnf.jkt``, and a ``jti`` not seen before;
* replay: a bounded per-process cache (:class:`tokenward.dpop.ReplayCache`) or, for several
  processes, a shared Redis (``replay_url="redis://..."``, imported only then).

It never imports the server or the store.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol
from urllib.parse import urlsplit

from ..claims import AccessTokenClaims
from ..dpop import DEFAULT_MAX_AGE, DEFAULT_PROOF_LEEWAY, DPOP_ALGORITHMS, ReplayCache, verify_proof
from ..errors import ConfigurationError, InvalidDPoPProof, InvalidToken, StoreUnavailable

__all__ = ["DPOP_CHALLENGE", "DPoPChecker", "RedisReplayCache", "Replay", "header_values"]

#: The ``algs`` a resource server announces in ``WWW-Authenticate: DPoP`` (RFC 9449 §7.1).
DPOP_CHALLENGE = f'DPoP algs="{" ".join(DPOP_ALGORITHMS)}"'


def header_values(values: Sequence[str]) -> list[str]:
    """The ``DPoP`` header values of a request; WSGI servers join repeated headers with
    commas, which a compact JWS never contains."""
    return [v.strip() for value in values for v in value.split(",") if v.strip()]


class Replay(Protocol):
    def seen(self, key: str, ttl: float) -> bool: ...


class RedisReplayCache:
    """A replay cache shared by every process through Redis: ``SET key 1 NX EX ttl``. A Redis
    failure refuses the request (503, fail closed)."""

    def __init__(self, url: str, *, prefix: str = "tokenward:dpop:", timeout: float = 0.5):
        try:
            import redis
        except ImportError:  # pragma: no cover - depends on the install
            raise ConfigurationError(
                "a shared DPoP replay cache needs redis: pip install 'tokenward[redis]'"
            ) from None
        self._redis: Any = redis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout
        )
        self._errors: tuple[type[BaseException], ...] = (redis.RedisError, OSError)
        self.prefix = prefix

    def seen(self, key: str, ttl: float) -> bool:
        try:
            created = self._redis.set(self.prefix + key, b"1", nx=True, ex=max(1, int(ttl) + 1))
        except self._errors:
            raise StoreUnavailable("the DPoP replay cache is unreachable") from None
        return not created

    def close(self) -> None:
        self._redis.close()


class DPoPChecker:
    """The DPoP rules of one resource server. ``external_url``: the scheme and host (and a
    path prefix a proxy removes) that clients use, e.g. ``https://api.example.com``; without
    it the URL the framework reports is used."""

    def __init__(
        self,
        *,
        external_url: str | None = None,
        max_age: float = DEFAULT_MAX_AGE,
        leeway: float = DEFAULT_PROOF_LEEWAY,
        replay: Replay | None = None,
        replay_url: str | None = None,
        now: Callable[[], float] = time.time,
    ) -> None:
        if external_url is not None:
            parts = urlsplit(external_url)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise ConfigurationError("external_url must be an absolute http(s) URL")
            if parts.query or parts.fragment:
                raise ConfigurationError("external_url has no query or fragment")
        self.external_url = external_url.rstrip("/") if external_url else None
        self.max_age = float(max_age)
        self.leeway = float(leeway)
        if replay is None:
            replay = RedisReplayCache(replay_url) if replay_url else ReplayCache()
        self.replay = replay
        self._now = now

    def htu(self, url: str) -> str:
        """The URL the client used for the request the framework sees as ``url``."""
        if self.external_url is None:
            return url
        return self.external_url + (urlsplit(url).path or "/")

    def check(
        self,
        claims: AccessTokenClaims,
        *,
        scheme: str,
        token: str,
        method: str | None,
        url: str | None,
        proofs: Sequence[str] = (),
    ) -> None:
        """Raise unless the request presents ``claims`` as RFC 9449 §7 asks."""
        jkt = claims.jkt
        if scheme.lower() != "dpop":
            if jkt is not None:
                raise InvalidToken(
                    "this access token is DPoP-bound: use the DPoP scheme with a proof "
                    "(RFC 9449 §7.2)"
                )
            return
        if jkt is None:
            raise InvalidToken("the DPoP scheme needs a DPoP-bound access token")
        if not proofs:
            raise InvalidDPoPProof("a DPoP proof is required with the DPoP scheme")
        if len(proofs) > 1:
            raise InvalidDPoPProof("exactly one DPoP header is allowed")
        if method is None or url is None:
            raise InvalidDPoPProof("this integration cannot check DPoP proofs (no request URL)")
        proof = verify_proof(
            proofs[0],
            htm=method,
            htu=self.htu(url),
            now=self._now(),
            max_age=self.max_age,
            leeway=self.leeway,
            access_token=token,
        )
        if not hmac.compare_digest(proof.jkt.encode(), jkt.encode()):
            raise InvalidDPoPProof("the DPoP proof's key is not the key the token is bound to")
        # RFC 9449 §11.1: one use per proof; after max_age its iat is refused anyway
        if self.replay.seen(proof.replay_key(), self.max_age + 2 * self.leeway):
            raise InvalidDPoPProof("the DPoP proof was already used (jti replay)")
