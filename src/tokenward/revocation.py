"""Revocation of access tokens: the in-memory :class:`Denylist` (kept live from a feed by
:class:`tokenward.mirror.RevocationMirror`).

A :class:`Denylist` mirrors the store's revocation feed (events ``{seq, kind, value, until, at}``)
and answers, without I/O and in O(1), whether an access token is revoked:

* ``jti`` — that one token (until its ``exp`` plus the verifier leeway);
* ``sid`` — every access token of that session (until the longest one it issued has expired);
* ``sub`` — "log out everywhere": every token of the subject with ``iat < int(at)``. ``iat`` has
  one-second resolution, so a token minted in the very second of the logout is *not* covered by
  the watermark; tokens of a session are covered by that session's ``sid`` event anyway (a
  subject revocation revokes every family first), so only session-less tokens minted in that
  same second survive the watermark.

Layout (measured in ``bench/lifecycle.py``): one ``set`` per kind (``jti``, ``sid``), a small
``dict`` for subject watermarks, and expiry *buckets* (``ceil(until)`` second → list of values)
drained from a heap, so a live entry costs its string, one set slot and one list pointer — no
per-entry float or tuple. A value added twice (e.g. the same ``jti`` revoked twice) is reference
counted, so the earlier bucket never removes it early.

Freshness: ``max_staleness`` (seconds, ``None`` = never stale). When set, :meth:`Denylist.check`
*fails closed* by the one staleness rule (:func:`staleness_error`) — raises
:class:`~tokenward.errors.StoreUnavailable` (503 + ``Retry-After``, never a 401) for every token
— once it has not synced (:meth:`Denylist.mark_synced`, called by the mirror after every
successful read, including an empty long-poll) for longer than that, and before the first
sync. A :class:`~tokenward.mirror.RevocationMirror` judges staleness itself with the same rule.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ._logging import get_logger
from .clock import Clock, system_clock
from .errors import RevokedToken, StoreUnavailable
from .feed import RevocationEvent, RevocationKind

if TYPE_CHECKING:
    from .claims import AccessTokenClaims
    from .store.base import RevocationFeedStore

__all__ = ["Denylist", "staleness_error"]

_log = get_logger("tokenward.revocation")

REASON_JTI = "token revoked"
REASON_SID = "session revoked"
REASON_SUB = "subject logged out"

_PAGE = 1000


def staleness_error(
    *, now: float, last_sync: float | None, max_staleness: float
) -> StoreUnavailable | None:
    """The one staleness rule of every revocation mirror: ``None`` while it may be trusted,
    else the 503 to raise (``Retry-After`` 1 s before the first sync, a quarter of the limit
    after)."""
    if last_sync is None:
        return StoreUnavailable("revocation list not loaded yet", retry_after=1)
    if now - last_sync > max_staleness:
        return StoreUnavailable(
            f"revocation list not refreshed for more than {max_staleness:g} s",
            retry_after=max(1, int(max_staleness / 4)),
        )
    return None


class Denylist:
    """The in-memory mirror of revocations; implements ``verifier.RevocationCheck``."""

    __slots__ = (
        "_buckets",
        "_clock",
        "_heap",
        "_jti",
        "_max_staleness",
        "_refs",
        "_sid",
        "_sub",
        "_sub_until",
        "_synced_at",
        "cursor",
    )

    def __init__(self, *, clock: Clock = system_clock, max_staleness: float | None = None) -> None:
        self._clock = clock
        self._max_staleness = None if max_staleness is None else float(max_staleness)
        self._jti: set[str] = set()
        self._sid: set[str] = set()
        self._sub: dict[str, int] = {}  # subject -> not-before watermark (whole seconds)
        self._sub_until: dict[str, float] = {}
        # expiry second -> ([jti values], [sid values], [subjects]); heap of expiry seconds
        self._buckets: dict[int, tuple[list[str], list[str], list[str]]] = {}
        self._heap: list[int] = []
        self._refs: dict[tuple[bool, str], int] = {}  # (is_sid, value) -> extra references
        self._synced_at: float | None = None
        #: the highest feed ``seq`` applied with ``advance=True``
        self.cursor = 0

    def __len__(self) -> int:
        return len(self._jti) + len(self._sid) + len(self._sub)

    def __repr__(self) -> str:
        return (
            f"Denylist(jti={len(self._jti)}, sid={len(self._sid)}, sub={len(self._sub)}, "
            f"cursor={self.cursor})"
        )

    @property
    def clock(self) -> Clock:
        return self._clock

    @property
    def max_staleness(self) -> float | None:
        return self._max_staleness

    @property
    def synced_at(self) -> float | None:
        return self._synced_at

    # -- the verify path -------------------------------------------------------------------
    def check(self, claims: AccessTokenClaims) -> None:
        """Raise :class:`RevokedToken` when ``claims`` are revoked, ``StoreUnavailable`` when
        the denylist is stale."""
        if self._max_staleness is not None:
            error = staleness_error(
                now=self._clock.now(), last_sync=self._synced_at, max_staleness=self._max_staleness
            )
            if error is not None:
                raise error
        if claims.jti in self._jti:
            raise RevokedToken(REASON_JTI)
        sid = claims.sid
        if sid is not None and sid in self._sid:
            raise RevokedToken(REASON_SID)
        if self._sub:
            mark = self._sub.get(claims.sub)
            if mark is not None and claims.iat < mark:
                raise RevokedToken(REASON_SUB)

    def is_revoked(
        self, *, jti: str | None, sid: str | None, sub: str | None, iat: float
    ) -> str | None:
        """The reason the token described would be refused, or ``None``."""
        if jti is not None and jti in self._jti:
            return REASON_JTI
        if sid is not None and sid in self._sid:
            return REASON_SID
        if sub is not None:
            mark = self._sub.get(sub)
            if mark is not None and iat < mark:
                return REASON_SUB
        return None

    # -- updates ---------------------------------------------------------------------------
    def mark_synced(self, now: float | None = None) -> None:
        """Record a successful read of the feed (resets the staleness clock)."""
        self._synced_at = self._clock.now() if now is None else float(now)

    def apply(self, events: Iterable[RevocationEvent], *, advance: bool = True) -> None:
        """Add ``events``. With ``advance`` (the feed), events at or below :attr:`cursor` are
        skipped and the cursor moves to the highest ``seq``; without it (an instance mirroring
        its own revocation at once) the cursor is left alone, so the feed still delivers every
        event in between."""
        now = self._clock.now()
        cursor = self.cursor
        for event in events:
            if advance:
                if event.seq <= cursor:
                    continue
                cursor = event.seq
            if event.until <= now:
                continue
            kind = event.kind
            if kind == RevocationKind.SUB:
                self._add_sub(event.value, event.at, event.until)
            else:
                self._add(kind == RevocationKind.SID, event.value, event.until)
        self.cursor = cursor
        self.sweep(now)

    def _add(self, is_sid: bool, value: str, until: float) -> None:
        members = self._sid if is_sid else self._jti
        if value in members:
            key = (is_sid, value)
            self._refs[key] = self._refs.get(key, 0) + 1
        else:
            members.add(value)
        self._bucket(until)[1 if is_sid else 0].append(value)

    def _bucket(self, until: float) -> tuple[list[str], list[str], list[str]]:
        second = math.ceil(until)
        bucket = self._buckets.get(second)
        if bucket is None:
            bucket = self._buckets[second] = ([], [], [])
            heapq.heappush(self._heap, second)
        return bucket

    def _add_sub(self, sub: str, at: float, until: float) -> None:
        mark = int(at)
        if mark > self._sub.get(sub, -1):
            self._sub[sub] = mark
        if until > self._sub_until.get(sub, -math.inf):
            self._sub_until[sub] = until
            self._bucket(until)[2].append(sub)

    def sweep(self, now: float | None = None) -> int:
        """Forget entries whose ``until`` has passed; returns how many were dropped."""
        if now is None:
            now = self._clock.now()
        dropped = 0
        heap = self._heap
        refs = self._refs
        while heap and heap[0] <= now:
            second = heapq.heappop(heap)
            jtis, sids, subs = self._buckets.pop(second)
            for is_sid, values, members in ((False, jtis, self._jti), (True, sids, self._sid)):
                for value in values:
                    if refs:
                        key = (is_sid, value)
                        extra = refs.get(key)
                        if extra is not None:
                            if extra <= 1:
                                del refs[key]
                            else:
                                refs[key] = extra - 1
                            continue
                    members.discard(value)
                    dropped += 1
            for sub in subs:  # a later event may have extended it: the latest until wins
                if self._sub_until.get(sub, math.inf) <= now:
                    del self._sub_until[sub]
                    self._sub.pop(sub, None)
                    dropped += 1
        return dropped

    def clear(self) -> None:
        """Forget everything (cursor back to 0, not synced)."""
        self._jti.clear()
        self._sid.clear()
        self._sub.clear()
        self._sub_until.clear()
        self._buckets.clear()
        self._heap.clear()
        self._refs.clear()
        self._synced_at = None
        self.cursor = 0

    async def load(self, store: RevocationFeedStore) -> None:
        """Snapshot: every live event of ``store``, then set :attr:`cursor` to the store's.

        Entries already present are kept (at worst they outlive a store reset until their
        ``until`` — the fail-closed direction). The cursor is *set*, not maxed, so following
        a store that was reset or restored resumes at the store's own position.
        """
        start = await store.revocation_cursor()
        cursor = 0
        self.cursor = 0
        while True:
            page = await store.revocations_after(cursor, now=self._clock.now(), limit=_PAGE)
            self.apply(page)
            if len(page) < _PAGE:
                break
            cursor = page[-1].seq
        self.cursor = max(start, self.cursor)
        self.mark_synced()


def __getattr__(name: str) -> Any:
    if name == "DenylistFollower":  # kept for one release; it moved to tokenward.mirror
        from .mirror import DenylistFollower

        return DenylistFollower
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
