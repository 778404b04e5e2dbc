"""The token lifecycle: sessions (refresh-token families), rotation with an idempotent grace
window, reuse detection, revocation and retention. See ``docs/lifecycle.md``.

Refresh tokens are ``"twr_" + sid + "." + base64url(32 random bytes)`` (70 characters; ``sid``
is the family's 22-character id, so a partitioned store finds the token in its family's
partition). Tokens issued before that form, ``"twr_" + base64url(32 random bytes)`` (47
characters), are still accepted until they expire. Only ``sha256(token)`` reaches the store.
The successor of a token ``T`` is derived, not drawn:
``"twr_" + sid + "." + base64url(HMAC-SHA256(successor_secret, raw(T)))`` where ``raw(T)`` are
the 32 random bytes ``T`` encodes. So a grace replay of ``T`` re-derives the *same* successor
without storing it, and a leak of the store (hashes plus the secret) still cannot produce a
live token.

Policy lives here (format, client binding, expiry, scope); the store decides atomically what
must be atomic (:meth:`tokenward.store.base.Store.rotate`).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import dataclasses
import hashlib
import hmac
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from ._logging import get_logger
from .clock import Clock
from .errors import (
    ConfigurationError,
    InvalidDPoPProof,
    InvalidGrant,
    InvalidScope,
    RefreshTokenReused,
    RiskRefused,
    UnauthorizedClient,
)
from .events import SecurityEvent, emit, log_quietly
from .feed import RevocationEvent, RevocationKind
from .issuer import IssuedAccessToken, Issuer
from .revocation import Denylist
from .store.base import (
    Family,
    PurgeCounts,
    RefreshTokenRecord,
    RotationOutcome,
    SessionStore,
)
from .verifier import DEFAULT_LEEWAY, Verifier

__all__ = [
    "DEFAULT_ABSOLUTE_LIFETIME",
    "DEFAULT_GRACE_PERIOD",
    "DEFAULT_IDLE_TIMEOUT",
    "DEFAULT_RETENTION_MARGIN",
    "REFRESH_TOKEN_PREFIX",
    "SUCCESSOR_SECRET_NAME",
    "AccessSpec",
    "SessionInfo",
    "SessionManager",
    "TokenPair",
    "hash_refresh_token",
    "new_refresh_token",
    "new_sid",
    "parse_refresh_token",
    "refresh_token_sid",
]

REFRESH_TOKEN_PREFIX = "twr_"  # noqa: S105 - a prefix, not a secret
SUCCESSOR_SECRET_NAME = "refresh-successor"  # noqa: S105 - the name of a secret
DEFAULT_GRACE_PERIOD = 10.0
DEFAULT_IDLE_TIMEOUT = 14 * 86400.0
DEFAULT_ABSOLUTE_LIFETIME = 30 * 86400.0
DEFAULT_RETENTION_MARGIN = 7 * 86400.0

_TOKEN_LEN = len(REFRESH_TOKEN_PREFIX) + 43
_SID_LEN = 22  # secrets.token_urlsafe(16)
_TAGGED_LEN = len(REFRESH_TOKEN_PREFIX) + _SID_LEN + 1 + 43
_ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
_log = get_logger("tokenward.sessions")


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(body: str, size: int) -> bytes | None:
    """The ``size`` bytes of canonical unpadded base64url ``body``, or ``None``."""
    if not _ALPHABET.issuperset(body):
        return None
    try:
        raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    except (binascii.Error, ValueError):
        return None
    if len(raw) != size or _b64(raw) != body:
        return None
    return raw


def _encode(raw: bytes, sid: str | None = None) -> str:
    if sid is None:
        return REFRESH_TOKEN_PREFIX + _b64(raw)
    return f"{REFRESH_TOKEN_PREFIX}{sid}.{_b64(raw)}"


def new_sid() -> str:
    """A family id: 128 random bits, base64url (22 characters)."""
    return secrets.token_urlsafe(16)


def new_refresh_token(sid: str | None = None) -> str:
    """A fresh refresh token of family ``sid``: ``twr_<sid>.`` + 256 random bits, base64url
    without padding (``twr_`` + 256 bits, the untagged form, when ``sid`` is ``None``)."""
    if sid is not None and _unb64(sid, 16) is None:
        raise ConfigurationError("a refresh token's sid is 16 bytes in canonical base64url")
    return _encode(secrets.token_bytes(32), sid)


def _parse(token: object) -> tuple[str | None, bytes] | None:
    if type(token) is not str or not token.startswith(REFRESH_TOKEN_PREFIX):
        return None
    body = token[len(REFRESH_TOKEN_PREFIX) :]
    if len(token) == _TOKEN_LEN:
        raw = _unb64(body, 32)
        return None if raw is None else (None, raw)
    if len(token) != _TAGGED_LEN or body[_SID_LEN] != ".":
        return None
    sid, secret = body[:_SID_LEN], body[_SID_LEN + 1 :]
    raw = _unb64(secret, 32)
    if raw is None or _unb64(sid, 16) is None:
        return None
    return sid, raw


def parse_refresh_token(token: object) -> bytes | None:
    """The 32 random bytes a well-formed refresh token encodes, or ``None`` (strict: prefix,
    length, alphabet, the ``.`` separator and canonical base64url, i.e. zero trailing bits)."""
    parsed = _parse(token)
    return None if parsed is None else parsed[1]


def refresh_token_sid(token: object) -> str | None:
    """The family id a well-formed tagged refresh token carries (``None`` for the untagged
    form and for malformed tokens)."""
    parsed = _parse(token)
    return None if parsed is None else parsed[0]


def hash_refresh_token(token: str) -> bytes:
    """What the store keeps: ``sha256(token)``."""
    return hashlib.sha256(token.encode("ascii")).digest()


@dataclass(frozen=True, slots=True)
class AccessSpec:
    """What an access token of a session carries beyond the session's facts: its ``scope``,
    its ``aud`` (``None``: the issuer's default), its lifetime (``None``: the issuer's) and
    its JWE wrapping (``True``: the issuer's own)."""

    scope: str
    audience: str | list[str] | None = None
    ttl: int | None = None
    encryption: Any = True


# Decides the access token of a refresh from the session (may narrow it, or raise).
RefreshDecision = Callable[[Family], Awaitable[AccessSpec]]


@dataclass(frozen=True, slots=True)
class TokenPair:
    """An access token and its refresh token (RFC 6749 §5.1)."""

    access_token: str
    refresh_token: str
    expires_in: int
    expires_at: int  # access-token expiry
    session_id: str
    scope: str
    refresh_expires_at: float
    token_type: str = "Bearer"  # noqa: S105 - "DPoP" when bound (RFC 9449 §5)

    def to_response(self) -> dict[str, Any]:
        """The RFC 6749 §5.1 response body."""
        body: dict[str, Any] = {
            "access_token": self.access_token,
            "token_type": self.token_type,
            "expires_in": self.expires_in,
            "refresh_token": self.refresh_token,
        }
        if self.scope:
            body["scope"] = self.scope
        return body

    def __repr__(self) -> str:  # never print token values
        return (
            f"TokenPair(session_id={self.session_id!r}, scope={self.scope!r}, "
            f"expires_at={self.expires_at}, refresh_expires_at={self.refresh_expires_at})"
        )


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """A session as shown to users and admins (a family without its hashes)."""

    session_id: str
    sub: str
    client_id: str
    scope: str
    created_at: float
    last_used_at: float
    expires_at: float
    idle_expires_at: float
    user_agent: str | None
    ip: str | None
    device: str | None
    revoked_at: float | None
    revoked_reason: str | None
    dpop_jkt: str | None = None
    #: when the refresh token this was looked up by was issued (introspection only)
    token_issued_at: float | None = None

    @classmethod
    def from_family(cls, family: Family) -> SessionInfo:
        return cls(
            session_id=family.sid,
            sub=family.sub,
            client_id=family.client_id,
            scope=family.scope,
            created_at=family.created_at,
            last_used_at=family.last_used_at,
            expires_at=family.expires_at,
            idle_expires_at=min(family.idle_expires_at, family.expires_at),
            user_agent=family.user_agent,
            ip=family.ip,
            device=family.device,
            revoked_at=family.revoked_at,
            revoked_reason=family.revoked_reason,
            dpop_jkt=family.dpop_jkt,
        )

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}


class SessionManager:
    """Start, refresh (rotate) and revoke sessions over a :class:`SessionStore`.

    ``grace_period`` (seconds, ``0`` disables it): how long the immediate parent of the live
    refresh token may be re-presented and get the same successor. ``idle_timeout`` and
    ``absolute_lifetime`` bound a family. ``revocation_margin`` (default: the verifier
    leeway, 30 s) is added to every revocation's ``until``, because verifiers accept a token
    until ``exp + leeway``. ``retention_margin`` (7 days) keeps expired families around for
    reuse detection before :meth:`purge` deletes them. ``family_check`` (optional) runs on
    every refresh before rotating; an ``InvalidGrant`` from it revokes the session (the server
    uses it to end the sessions of a disabled user or one whose credentials changed).
    """

    def __init__(
        self,
        issuer: Issuer,
        store: SessionStore,
        *,
        clock: Clock | None = None,
        grace_period: float = DEFAULT_GRACE_PERIOD,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        absolute_lifetime: float = DEFAULT_ABSOLUTE_LIFETIME,
        successor_secret: bytes | None = None,
        denylist: Denylist | None = None,
        revocation_margin: float = DEFAULT_LEEWAY,
        retention_margin: float = DEFAULT_RETENTION_MARGIN,
        family_check: Callable[[Family], Awaitable[None]] | None = None,
    ) -> None:
        if grace_period < 0 or idle_timeout <= 0 or absolute_lifetime <= 0:
            raise ConfigurationError("grace_period >= 0, idle_timeout > 0, absolute_lifetime > 0")
        if revocation_margin < 0 or retention_margin < 0:
            raise ConfigurationError("revocation_margin and retention_margin must be >= 0")
        if successor_secret is not None and len(successor_secret) < 32:
            raise ConfigurationError("successor_secret must be at least 32 bytes")
        self.issuer = issuer
        self.store = store
        self.clock: Clock = clock if clock is not None else issuer.clock
        self.grace_period = float(grace_period)
        self.idle_timeout = float(idle_timeout)
        self.absolute_lifetime = float(absolute_lifetime)
        self.revocation_margin = float(revocation_margin)
        self.retention_margin = float(retention_margin)
        self._secret = successor_secret
        self._family_check = family_check
        self._denylist = denylist if denylist is not None else Denylist(clock=self.clock)

    # -- helpers ---------------------------------------------------------------------------
    @property
    def denylist(self) -> Denylist:
        return self._denylist

    def verifier(self, **kw: Any) -> Verifier:
        """A :class:`Verifier` over the issuer's key ring and this manager's denylist."""
        kw.setdefault("clock", self.clock)
        kw.setdefault("revocation", self._denylist)
        return Verifier(
            self.issuer.keyring, issuer=self.issuer.issuer, audience=self.issuer.audience, **kw
        )

    async def _successor_secret(self) -> bytes:
        if self._secret is None:
            self._secret = await self.store.get_or_create_secret(
                SUCCESSOR_SECRET_NAME, lambda: secrets.token_bytes(32)
            )
        return self._secret

    async def successor_of(self, refresh_token: str, *, sid: str | None = None) -> str:
        """The deterministic successor of ``refresh_token`` (raises ``InvalidGrant`` if
        malformed); tagged with ``sid`` (default: the family id the token carries)."""
        parsed = _parse(refresh_token)
        if parsed is None:
            raise InvalidGrant("malformed refresh token")
        tagged, raw = parsed
        secret = await self._successor_secret()
        return _encode(hmac.new(secret, raw, hashlib.sha256).digest(), sid or tagged)

    def _sid_until(self, now: float) -> float:
        return now + self.issuer.access_token_ttl + self.revocation_margin

    def _issue(self, family: Family, spec: AccessSpec, jkt: str | None = None) -> IssuedAccessToken:
        return self.issuer.issue(
            sub=family.sub,
            client_id=family.client_id,
            scope=spec.scope or None,
            sid=family.sid,
            audience=spec.audience,
            ttl=spec.ttl,
            encryption=spec.encryption,
            extra={"cnf": {"jkt": jkt}} if jkt else None,  # RFC 9449 §6.1
        )

    def _pair(
        self,
        access: IssuedAccessToken,
        refresh_token: str,
        family: Family,
        scope: str,
        jkt: str | None = None,
    ) -> TokenPair:
        return TokenPair(
            token_type="DPoP" if jkt else "Bearer",
            access_token=access.token,
            refresh_token=refresh_token,
            expires_in=access.expires_in,
            expires_at=access.exp,
            session_id=family.sid,
            scope=scope,
            refresh_expires_at=min(family.expires_at, family.idle_expires_at),
        )

    def _mirror(self, events: list[RevocationEvent] | RevocationEvent | None) -> None:
        if events is None:
            return
        batch = events if isinstance(events, list) else [events]
        self._denylist.apply(batch, advance=False)

    # -- the lifecycle ---------------------------------------------------------------------
    async def start(
        self,
        *,
        sub: str,
        client_id: str,
        scope: str = "",
        user_agent: str | None = None,
        ip: str | None = None,
        device: str | None = None,
        access: AccessSpec | None = None,
        dpop_jkt: str | None = None,
        bind_refresh: bool = True,
    ) -> TokenPair:
        """Start a session: a new family, its first refresh token and an access token.
        ``scope`` is the session's grant; ``access`` what its first access token carries
        (default: that scope for the issuer's audience).

        ``dpop_jkt``: the thumbprint of the client's DPoP key (RFC 9449): the access token
        carries it in ``cnf.jkt``, and with ``bind_refresh`` (public clients, §5) the session
        is bound to it for its whole life."""
        if not sub or not client_id:
            raise ConfigurationError("sub and client_id must be non-empty")
        scope = " ".join(scope.split())
        now = self.clock.now()
        sid = new_sid()
        token = new_refresh_token(sid)
        token_hash = hash_refresh_token(token)
        family = Family(
            sid=sid,
            sub=sub,
            client_id=client_id,
            scope=scope,
            created_at=now,
            last_used_at=now,
            expires_at=now + self.absolute_lifetime,
            idle_expires_at=now + self.idle_timeout,
            current_hash=token_hash,
            user_agent=user_agent,
            ip=ip,
            device=device,
            dpop_jkt=dpop_jkt if bind_refresh else None,
        )
        await self.store.create_family(family, RefreshTokenRecord(token_hash, family.sid, now))
        spec = access if access is not None else AccessSpec(scope)
        issued = self._issue(family, spec, dpop_jkt)
        emit(
            SecurityEvent.ISSUED,
            sid=family.sid,
            sub=sub,
            client_id=client_id,
            scope=scope,
            ip=ip,
            user_agent=user_agent,
        )
        return self._pair(issued, token, family, spec.scope, dpop_jkt)

    async def refresh(
        self,
        refresh_token: str,
        *,
        client_id: str | None = None,
        scope: str | None = None,
        ip: str | None = None,
        user_agent: str | None = None,
        decide: RefreshDecision | None = None,
        dpop_jkt: str | None = None,
    ) -> TokenPair:
        """Exchange ``refresh_token`` for a new pair (RFC 6749 §6), rotating it.

        ``client_id`` is the authenticated client; ``None`` skips the binding check (library
        use only — the server always passes it). ``scope`` may narrow, never widen.
        ``decide`` (instead of ``scope``) computes the new access token from the session
        before anything rotates, e.g. re-checking what the user may still have; it raises
        to refuse the refresh.
        ``dpop_jkt``: the thumbprint of the verified DPoP proof of the request, if any. A
        session bound to a key (RFC 9449 §5) needs a proof of that key: without one the
        answer is ``invalid_dpop_proof``, with another key's ``invalid_grant``; neither
        consumes the token nor revokes the session (whoever holds a stolen copy must not be
        able to log the user out) — a ``dpop_key_mismatch`` security event records it.
        """
        raw = parse_refresh_token(refresh_token)
        if raw is None:
            raise InvalidGrant("malformed refresh token")
        token_hash = hash_refresh_token(refresh_token)
        found = await self.store.get_refresh_token(token_hash, sid=refresh_token_sid(refresh_token))
        if found is None:
            raise InvalidGrant("unknown refresh token")
        _, family = found
        if client_id is not None and not hmac.compare_digest(
            client_id.encode(), family.client_id.encode()
        ):
            raise InvalidGrant("refresh token was issued to another client")
        if family.revoked:
            raise InvalidGrant("refresh token revoked")
        now = self.clock.now()
        if family.expired(now):
            raise InvalidGrant("refresh token expired")
        bound = family.dpop_jkt
        if bound is not None and (
            dpop_jkt is None or not hmac.compare_digest(bound.encode(), dpop_jkt.encode())
        ):
            emit(
                SecurityEvent.DPOP_KEY_MISMATCH,
                sid=family.sid,
                sub=family.sub,
                client_id=family.client_id,
                reason="no_proof" if dpop_jkt is None else "other_key",
                ip=ip,
                user_agent=user_agent,
            )
            if dpop_jkt is None:
                raise InvalidDPoPProof("this refresh token is DPoP-bound: a DPoP proof is required")
            raise InvalidGrant("the DPoP proof is made with another key than the session's")
        jkt = bound or dpop_jkt
        if self._family_check is not None:
            try:
                await self._family_check(family)
            except RiskRefused:  # the risk policy already acted on the family
                raise
            except InvalidGrant:
                await self.revoke_session(family.sid, reason="credentials_changed")
                raise
        if decide is not None:
            spec = await decide(family)
        else:
            granted = family.scope.split()
            if scope is not None and scope.split():
                wanted = set(scope.split())
                if not wanted.issubset(granted):
                    raise InvalidScope("requested scope exceeds the granted scope")
                spec = AccessSpec(" ".join(s for s in granted if s in wanted))
            else:
                spec = AccessSpec(family.scope)
        successor = await self.successor_of(refresh_token, sid=family.sid)
        child = RefreshTokenRecord(
            hash_refresh_token(successor), family.sid, now, parent_hash=token_hash
        )
        result = await self.store.rotate(
            token_hash,
            child,
            now=now,
            grace=self.grace_period,
            idle_expires_at=now + self.idle_timeout,
            revocation_until=self._sid_until(now),
        )
        outcome = result.outcome
        fam = result.family or family
        if outcome is RotationOutcome.ROTATED or outcome is RotationOutcome.GRACE:
            access = self._issue(fam, spec, jkt)
            emit(
                SecurityEvent.REFRESHED
                if outcome is RotationOutcome.ROTATED
                else SecurityEvent.GRACE_REPLAY,
                sid=fam.sid,
                sub=fam.sub,
                client_id=fam.client_id,
                generation=fam.generation,
                ip=ip,
                user_agent=user_agent,
            )
            return self._pair(access, successor, fam, spec.scope, jkt)
        if outcome is RotationOutcome.REUSED:
            self._mirror(result.event)
            emit(
                SecurityEvent.REFRESH_TOKEN_REUSE,
                sid=fam.sid,
                sub=fam.sub,
                client_id=fam.client_id,
                ip=ip,
                user_agent=user_agent,
                seq=result.event.seq if result.event else None,
            )
            raise RefreshTokenReused("refresh token reuse detected; the session was revoked")
        if outcome is RotationOutcome.REVOKED:
            raise InvalidGrant("refresh token revoked")
        raise InvalidGrant("unknown refresh token")

    # -- revocation ------------------------------------------------------------------------
    async def revoke_refresh_token(
        self, refresh_token: str, *, client_id: str | None = None
    ) -> bool:
        """Revoke the family of ``refresh_token`` (RFC 7009). ``False`` for malformed, unknown
        or already revoked tokens; ``UnauthorizedClient`` when it belongs to another client."""
        if parse_refresh_token(refresh_token) is None:
            return False
        found = await self.store.get_refresh_token(
            hash_refresh_token(refresh_token), sid=refresh_token_sid(refresh_token)
        )
        if found is None:
            return False
        _, family = found
        if client_id is not None and not hmac.compare_digest(
            client_id.encode(), family.client_id.encode()
        ):
            raise UnauthorizedClient("the token was issued to another client")
        return await self.revoke_session(family.sid, reason="refresh_token_revoked")

    async def revoke_session(self, session_id: str, *, reason: str = "revoked") -> bool:
        """Revoke one session: its refresh tokens and (via ``sid``) its access tokens."""
        now = self.clock.now()
        event = await self.store.revoke_family(
            session_id, now=now, reason=reason, until=self._sid_until(now)
        )
        if event is None:
            return False
        self._mirror(event)
        emit(SecurityEvent.REVOKED, kind="sid", value=session_id, reason=reason, seq=event.seq)
        return True

    async def revoke_subject(self, sub: str) -> int:
        """ "Log out everywhere": revoke every session of ``sub`` and set its watermark.
        Returns the number of sessions revoked."""
        now = self.clock.now()
        events = await self.store.revoke_subject(sub, now=now, until=self._sid_until(now))
        self._mirror(events)
        sessions = sum(1 for e in events if e.kind == RevocationKind.SID)
        emit(
            SecurityEvent.REVOKED,
            kind="sub",
            value=sub,
            reason="subject_revoked",
            sessions=sessions,
            seq=events[-1].seq if events else None,
        )
        return sessions

    async def revoke_access_token(self, jti: str, *, exp: float | None = None) -> None:
        """Revoke one access token until ``exp`` (plus the margin); without ``exp`` until
        the longest access-token lifetime from now."""
        if not jti:
            raise ConfigurationError("jti must be non-empty")
        now = self.clock.now()
        until = self._sid_until(now) if exp is None else float(exp) + self.revocation_margin
        if until <= now:
            return  # already expired everywhere: nothing to remember
        event = await self.store.add_revocation(RevocationKind.JTI, jti, now=now, until=until)
        self._mirror(event)
        emit(SecurityEvent.REVOKED, kind="jti", value=jti, reason="revoked", seq=event.seq)

    # -- queries ---------------------------------------------------------------------------
    async def list_sessions(self, sub: str) -> list[SessionInfo]:
        """The subject's live (not revoked, not expired) sessions, newest first."""
        now = self.clock.now()
        families = await self.store.list_families(sub)
        return [
            SessionInfo.from_family(f) for f in families if not f.revoked and not f.expired(now)
        ]

    async def get_session(self, session_id: str) -> SessionInfo | None:
        family = await self.store.get_family(session_id)
        return SessionInfo.from_family(family) if family is not None else None

    async def introspect_refresh_token(self, refresh_token: str) -> SessionInfo | None:
        """The session of an *active* refresh token (the live leaf of a live family)."""
        if parse_refresh_token(refresh_token) is None:
            return None
        token_hash = hash_refresh_token(refresh_token)
        found = await self.store.get_refresh_token(token_hash, sid=refresh_token_sid(refresh_token))
        if found is None:
            return None
        record, family = found
        if record.consumed_at is not None or family.revoked or family.expired(self.clock.now()):
            return None
        if not hmac.compare_digest(family.current_hash, token_hash):
            return None
        return dataclasses.replace(
            SessionInfo.from_family(family), token_issued_at=record.created_at
        )

    # -- retention -------------------------------------------------------------------------
    async def purge(self) -> PurgeCounts:
        """Delete what has expired (families after the retention margin)."""
        counts = await self.store.purge(now=self.clock.now(), margin=self.retention_margin)
        self._denylist.sweep()
        emit(
            SecurityEvent.PURGED,
            refresh_tokens=counts.refresh_tokens,
            families=counts.families,
            revocations=counts.revocations,
        )
        return counts

    def start_sweeper(self, interval: float = 3600.0) -> asyncio.Task[None]:
        """Run :meth:`purge` every ``interval`` seconds in a task; cancel the task to stop."""
        if interval <= 0:
            raise ConfigurationError("interval must be positive")

        async def sweep() -> None:
            while True:
                try:
                    await self.purge()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    log_quietly(_log, "warning", "purge_failed", error=type(exc).__name__)
                await asyncio.sleep(interval)

        return asyncio.get_running_loop().create_task(sweep(), name="tokenward-sweeper")
