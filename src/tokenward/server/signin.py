"""Sign-in sessions at the authorization server: the browser's login for the authorization
code and device flows, distinct from the refresh-token families it starts.

A sign-in session is a server-side record (kind ``signin``, key = its public id ``sid``, which
ID tokens and logout tokens carry) named by the cookie ``__Host-tokenward-signin``
(``HttpOnly; Secure; SameSite=Lax; Path=/``) whose value is ``<sid>.<secret>``; only the
secret's SHA-256 is stored and it is compared in constant time. It has an idle lifetime
(``TOKENWARD_SIGNIN_IDLE_TTL``, pushed forward on use) and an absolute one
(``TOKENWARD_SIGNIN_ABSOLUTE_TTL``). It remembers which clients were issued tokens within it and
the refresh families it started, for logout. "Log out everywhere" ends every sign-in session of
the user; a disabled user's sign-in session is ignored (and ended) on its next use.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request, Response

from ..clock import Clock
from ..store.base import GrantRecord, Store

__all__ = ["SIGNIN_COOKIE", "SigninSession", "SigninSessions"]

SIGNIN_COOKIE = "__Host-tokenward-signin"
KIND = "signin"
_MAX_COOKIE = 200


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(slots=True)
class SigninSession:
    sid: str
    sub: str
    auth_time: float
    created_at: float
    last_seen: float
    ip: str | None = None
    user_agent: str | None = None
    clients: list[str] = field(default_factory=list)
    families: list[str] = field(default_factory=list)
    version: int = 0
    secret_hash: str = ""

    def data(self) -> dict[str, Any]:
        return {
            "secret_hash": self.secret_hash,
            "auth_time": self.auth_time,
            "created_at": self.created_at,
            "last_seen": self.last_seen,
            "ip": self.ip,
            "user_agent": self.user_agent,
            "clients": self.clients,
            "families": self.families,
        }

    @classmethod
    def from_record(cls, r: GrantRecord) -> SigninSession:
        d = r.data
        return cls(
            sid=r.key,
            sub=r.owner,
            auth_time=float(d["auth_time"]),
            created_at=float(d["created_at"]),
            last_seen=float(d["last_seen"]),
            ip=d.get("ip"),
            user_agent=d.get("user_agent"),
            clients=list(d.get("clients", [])),
            families=list(d.get("families", [])),
            version=r.version,
            secret_hash=str(d.get("secret_hash", "")),
        )


class SigninSessions:
    def __init__(self, store: Store, *, clock: Clock, idle: float, absolute: float) -> None:
        self.store = store
        self.clock = clock
        self.idle = float(idle)
        self.absolute = float(absolute)

    def _expires(self, s: SigninSession) -> float:
        return min(s.created_at + self.absolute, s.last_seen + self.idle)

    def _record(self, s: SigninSession) -> GrantRecord:
        return GrantRecord(KIND, s.sid, s.sub, s.data(), self._expires(s), s.version)

    async def start(
        self, sub: str, *, ip: str | None, user_agent: str | None
    ) -> tuple[SigninSession, str]:
        """A new sign-in session; returns it and the cookie value (shown only here)."""
        now = self.clock.now()
        secret = secrets.token_urlsafe(32)
        s = SigninSession(
            sid=secrets.token_urlsafe(16),
            sub=sub,
            auth_time=now,
            created_at=now,
            last_seen=now,
            ip=ip,
            user_agent=user_agent,
            secret_hash=_hash(secret),
        )
        await self.store.create_record(self._record(s), now=now)
        return s, f"{s.sid}.{secret}"

    async def from_cookie(self, value: str | None) -> SigninSession | None:
        """The live session the cookie names (its idle lifetime pushed forward), or None."""
        if not value or len(value) > _MAX_COOKIE or "." not in value:
            return None
        sid, _, secret = value.partition(".")
        now = self.clock.now()
        rec = await self.store.get_record(KIND, sid, now=now)
        if rec is None:
            return None
        s = SigninSession.from_record(rec)
        if not hmac.compare_digest(s.secret_hash.encode(), _hash(secret).encode()):
            return None
        if now - s.last_seen > 60:  # bounded write rate: touch at most once a minute
            s.last_seen = now
            if await self.store.update_record(self._record(s), now=now):
                s.version += 1
        return s

    async def get(self, sid: str) -> SigninSession | None:
        rec = await self.store.get_record(KIND, sid, now=self.clock.now())
        return SigninSession.from_record(rec) if rec is not None else None

    async def note_issue(self, sid: str, client_id: str, family_sid: str | None) -> None:
        """Remember that ``client_id`` was issued tokens within the session (for logout)."""
        for _ in range(5):  # compare-and-set, retried on a concurrent update
            s = await self.get(sid)
            if s is None:
                return
            if client_id not in s.clients:
                s.clients.append(client_id)
            if family_sid is not None and family_sid not in s.families:
                s.families.append(family_sid)
                del s.families[:-64]  # bounded
            if await self.store.update_record(self._record(s), now=self.clock.now()):
                return

    async def end(self, sid: str) -> SigninSession | None:
        s = await self.get(sid)
        if s is None or not await self.store.delete_record(KIND, sid):
            return None
        return s

    async def list_for(self, sub: str) -> list[SigninSession]:
        recs = await self.store.list_records(KIND, sub, now=self.clock.now())
        return [SigninSession.from_record(r) for r in recs]

    async def end_all(self, sub: str) -> list[SigninSession]:
        ended = []
        for s in await self.list_for(sub):
            if await self.store.delete_record(KIND, s.sid):
                ended.append(s)
        return ended


def read_signin_cookie(request: Request) -> str | None:
    return request.cookies.get(SIGNIN_COOKIE)


def set_signin_cookie(response: Response, value: str, *, max_age: int) -> None:
    response.set_cookie(
        SIGNIN_COOKIE,
        value,
        max_age=max(0, max_age),
        path="/",
        secure=True,  # the __Host- prefix requires Secure and Path=/ (RFC 6265bis §4.1.3.2)
        httponly=True,
        samesite="lax",  # sent on the top-level GET /authorize that a client redirects to
    )


def clear_signin_cookie(response: Response) -> None:
    response.delete_cookie(SIGNIN_COOKIE, path="/", secure=True, httponly=True, samesite="lax")
