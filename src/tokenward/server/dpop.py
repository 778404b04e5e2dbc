"""DPoP (RFC 9449) at the server: proofs at ``/token`` and at its own protected resources.

* The request URI a proof must name (``htu``) is the issuer URL (``TOKENWARD_ISSUER``, the URL
  clients use, also behind a proxy) followed by the request path.
* Replay: every accepted proof's replay key goes to the store (``dpop_jti_seen``), so a proof
  is accepted once by all instances sharing the store, until ``TOKENWARD_DPOP_MAX_AGE`` plus the
  leeway has passed (after that its ``iat`` is refused anyway).
* Nonces (``TOKENWARD_DPOP_NONCE``, §8): stateless, ``HMAC(secret, time window)`` with a secret
  shared through the store, so every instance issues and accepts the same nonces; the current
  and the previous window are accepted. Every answer to a request with a proof carries the
  current ``DPoP-Nonce``.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import TYPE_CHECKING

from fastapi import Request

from ..claims import AccessTokenClaims
from ..dpop import DEFAULT_PROOF_LEEWAY, DPOP_ALGORITHMS, DPoPProof, verify_proof
from ..errors import InvalidDPoPProof, InvalidToken
from ..jws import b64url_encode

if TYPE_CHECKING:
    from ..store.base import Client
    from .runtime import Runtime

__all__ = ["DPOP_ALGS_CHALLENGE", "NONCE_SECRET_NAME", "DPoPService"]

NONCE_SECRET_NAME = "dpop-nonce"  # noqa: S105 - the name of a secret
NONCE_WINDOW = 300.0
#: ``algs`` of the ``WWW-Authenticate: DPoP`` challenge (RFC 9449 §7.1).
DPOP_ALGS_CHALLENGE = f'DPoP algs="{" ".join(DPOP_ALGORITHMS)}"'


class DPoPService:
    """The server's DPoP checks; one per runtime."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self._nonce_secret = b""

    async def start(self) -> None:
        if self.rt.settings.dpop_nonce:
            self._nonce_secret = await self.rt.store.get_or_create_secret(
                NONCE_SECRET_NAME, lambda: secrets.token_bytes(32)
            )

    # -- nonces ----------------------------------------------------------------------------
    def _nonce_for(self, window: int) -> str:
        mac = hmac.new(self._nonce_secret, str(window).encode(), hashlib.sha256).digest()
        return b64url_encode(mac[:18])

    def current_nonce(self) -> str:
        return self._nonce_for(int(self.rt.clock.now() // NONCE_WINDOW))

    def nonce_ok(self, nonce: str | None) -> bool:
        if nonce is None:
            return False
        window = int(self.rt.clock.now() // NONCE_WINDOW)
        return any(
            hmac.compare_digest(nonce.encode(), self._nonce_for(w).encode())
            for w in (window, window - 1)
        )

    @property
    def nonces(self) -> bool:
        return bool(self.rt.settings.dpop_nonce)

    # -- proofs ----------------------------------------------------------------------------
    def htu(self, request: Request) -> str:
        return self.rt.settings.issuer + request.url.path

    async def verify(
        self, request: Request, *, access_token: str | None = None
    ) -> DPoPProof | None:
        """The verified proof of the request, ``None`` when it has no ``DPoP`` header."""
        values = request.headers.getlist("dpop")
        if not values:
            return None
        if len(values) > 1:  # RFC 9449 §4.3 item 1
            raise InvalidDPoPProof("exactly one DPoP header is allowed")
        request.state.dpop_nonce = self.current_nonce() if self.nonces else None
        s = self.rt.settings
        now = self.rt.clock.now()
        proof = verify_proof(
            values[0],
            htm=request.method,
            htu=self.htu(request),
            now=now,
            max_age=s.dpop_max_age,
            access_token=access_token,
            nonce=self.nonce_ok if self.nonces else None,
            current_nonce=self.current_nonce,
        )
        # RFC 9449 §11.1: a proof is accepted once, by every instance on this store
        until = now + s.dpop_max_age + 2 * DEFAULT_PROOF_LEEWAY
        if await self.rt.store.dpop_jti_seen(proof.replay_key(), now=now, until=until):
            raise InvalidDPoPProof("the DPoP proof was already used (jti replay)")
        return proof

    async def for_token_request(self, request: Request, client: Client) -> str | None:
        """The one DPoP check of ``/token`` for every grant: the thumbprint the tokens are
        bound to, or ``None``. A client registered with ``dpop_bound_access_tokens`` must
        send a proof (RFC 9449 §5.2)."""
        proof = await self.verify(request)
        if proof is None:
            if client.dpop_bound_access_tokens:
                raise InvalidDPoPProof("this client must send a DPoP proof (RFC 9449 §5.2)")
            return None
        return proof.jkt

    async def for_resource(self, request: Request, scheme: str, token: str) -> AccessTokenClaims:
        """Verify the access token of a protected-resource request and, for the ``DPoP``
        scheme, its proof (RFC 9449 §7): ``ath``, the key in ``cnf.jkt``, replay."""
        dpop_scheme = scheme.lower() == "dpop"
        if dpop_scheme:
            request.state.auth_scheme = "DPoP"
        claims = self.rt.verifier.verify(token)
        jkt = claims.jkt
        if not dpop_scheme:
            if jkt is not None:
                request.state.auth_scheme = "DPoP"
                raise InvalidToken(
                    "this access token is DPoP-bound: use the DPoP scheme with a proof "
                    "(RFC 9449 §7.2)"
                )
            return claims
        if jkt is None:
            raise InvalidToken("the DPoP scheme needs a DPoP-bound access token")
        proof = await self.verify(request, access_token=token)
        if proof is None:
            raise InvalidDPoPProof("a DPoP proof is required with the DPoP scheme")
        if not hmac.compare_digest(proof.jkt.encode(), jkt.encode()):
            raise InvalidDPoPProof("the DPoP proof's key is not the key the token is bound to")
        return claims
