"""The risk engine: signals → scores and reasons → policy → actions, explainable and pure.

Each call (:meth:`RiskEngine.on_refresh`, :meth:`~RiskEngine.on_access`,
:meth:`~RiskEngine.on_sign_in`, :meth:`~RiskEngine.on_sign_in_failure`) looks at one request,
updates a small amount of per-family / per-user / per-network context, and returns a
:class:`Decision`: the signals that fired (name, score in ``[0, 1]``, a sentence saying why)
and the union of the actions the :class:`RiskPolicy` maps them to. The engine does no I/O and
never acts itself; the server applies the decision (:mod:`tokenward.server.riskwire`). Time
comes from an injected clock.

Signals (the names are part of the settings contract):

* ``concurrent_use`` — one family used from two address prefixes less than
  ``concurrent_window`` seconds apart, a use being a refresh or an access token presented by
  its holder (``/userinfo``): a copied token used beside the real one.
* ``context_change`` — between two refreshes of one family, the user-agent family or platform
  changed (score 0.8), or only the address prefix changed, outside the concurrent window
  (score 0.2: phones move between Wi-Fi and mobile networks all day).
* ``refresh_velocity`` — more than ``velocity_max`` refreshes of one family within
  ``velocity_window`` seconds (a client refreshes once per access-token lifetime).
* ``new_device`` — a sign-in from a device (cookie) *and* address prefix this user has not
  signed in from before (score 0.6; one of the two new: 0.3). The very first sign-in of a user
  is not a signal.
* ``credential_stuffing`` — failed sign-ins for at least ``stuffing_usernames`` different
  usernames from one prefix within ``stuffing_window`` seconds.
* ``password_spraying`` — one password failing for at least ``spraying_usernames`` different
  usernames within ``spraying_window`` seconds. Passwords are compared by an HMAC keyed with a
  server secret, truncated to 16 bytes; the password itself is never kept.

What is kept, and for how long (everything in process memory, bounded by ``max_entries`` per
table, least recently used first out, and dropped by :meth:`RiskEngine.purge` once past
their time): per family the address prefix of its last refresh and of its last use, the
user-agent family and platform (``"Firefox"``, ``"Linux"`` — never the full user-agent) and
the times of recent refreshes, for ``retention`` seconds after its last use; per user (a keyed
hash of the name) the device ids and prefixes seen at sign-in, for ``retention``; per prefix and per
password hash the keyed hashes of failed usernames, for the stuffing/spraying window; per user
the last 10 notices shown on their sessions screen (the reason text), for ``retention``. No
password, token or full user-agent is stored.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from ..clock import Clock, system_clock
from .addresses import address_prefix

__all__ = [
    "ACTIONS",
    "DEFAULT_ACTIONS",
    "SIGNALS",
    "Decision",
    "RiskEngine",
    "RiskPolicy",
    "Signal",
    "parse_actions",
    "ua_context",
]

SIGNALS = (
    "concurrent_use",
    "context_change",
    "refresh_velocity",
    "new_device",
    "credential_stuffing",
    "password_spraying",
)
ACTIONS = (
    "log",
    "flag",
    "notify",
    "step_up",
    "revoke_session",
    "revoke_subject",
    "block_prefix",
)
#: Defaults that never end a session on their own: a phone that moves between Wi-Fi and a
#: mobile network changes prefix between refreshes (``context_change``: logged only), and
#: may even refresh twice within a minute across the switch (``concurrent_use``: flagged for
#: an operator, not acted on). Only the sign-in attacks, which no single user produces (20
#: different usernames failing from one network in 10 minutes), block — a network, for
#: ``block_seconds``, and never an account.
DEFAULT_ACTIONS: Mapping[str, tuple[str, ...]] = {
    "concurrent_use": ("flag",),
    "context_change": ("log",),
    "refresh_velocity": ("flag",),
    "new_device": ("log",),
    "credential_stuffing": ("flag", "block_prefix"),
    "password_spraying": ("flag",),
}


def parse_actions(text: str) -> tuple[str, ...]:
    """``"flag, revoke_session"`` → ``("flag", "revoke_session")``; ``""``/``"none"`` → no
    action; raises ``ValueError`` naming an unknown action."""
    out: list[str] = []
    for part in text.split(","):
        name = part.strip().lower()
        if not name or name == "none":
            continue
        if name not in ACTIONS:
            raise ValueError(f"unknown action {name!r}; use any of {', '.join(ACTIONS)}")
        if name not in out:
            out.append(name)
    return tuple(out)


@dataclass(frozen=True, slots=True)
class Signal:
    name: str
    score: float
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "score": round(self.score, 3), "reason": self.reason}


@dataclass(frozen=True, slots=True)
class Decision:
    """What one request showed and what the policy says to do (empty: nothing seen)."""

    signals: tuple[Signal, ...] = ()
    actions: tuple[str, ...] = ()
    prefix: str | None = None

    def __bool__(self) -> bool:
        return bool(self.signals)

    @property
    def reason(self) -> str:
        return "; ".join(s.reason for s in self.signals)

    @property
    def score(self) -> float:
        return max((s.score for s in self.signals), default=0.0)

    def has(self, action: str) -> bool:
        return action in self.actions

    def event_fields(self) -> dict[str, Any]:
        """The structured fields of the security event that records this decision."""
        return {
            "signals": [s.as_dict() for s in self.signals],
            "scores": {s.name: round(s.score, 3) for s in self.signals},
            "actions": list(self.actions),
            "reason": self.reason,
            "prefix": self.prefix,
        }


@dataclass(frozen=True, slots=True)
class RiskPolicy:
    """Which actions each signal triggers, and the windows and thresholds of the signals."""

    actions: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: dict(DEFAULT_ACTIONS))
    concurrent_window: float = 120.0
    velocity_window: float = 300.0
    velocity_max: int = 20
    stuffing_window: float = 600.0
    stuffing_usernames: int = 20
    spraying_window: float = 3600.0
    spraying_usernames: int = 10
    block_seconds: float = 900.0
    retention: float = 30 * 86400.0

    def __post_init__(self) -> None:
        for name, acts in self.actions.items():
            if name not in SIGNALS:
                raise ValueError(f"unknown signal {name!r}; signals are {', '.join(SIGNALS)}")
            for a in acts:
                if a not in ACTIONS:
                    raise ValueError(f"{name}: unknown action {a!r}")
        for attr in ("velocity_max", "stuffing_usernames", "spraying_usernames"):
            if getattr(self, attr) < 1:
                raise ValueError(f"{attr} must be at least 1")

    def decide(self, signals: Iterable[Signal], prefix: str | None = None) -> Decision:
        fired = tuple(signals)
        acts: list[str] = []
        for s in fired:
            for a in self.actions.get(s.name, DEFAULT_ACTIONS[s.name]):
                if a not in acts:
                    acts.append(a)
        return Decision(fired, tuple(sorted(acts, key=ACTIONS.index)), prefix)


# -- user agents: the family and platform only -------------------------------------------------
_BROWSERS = (
    ("Edge", re.compile(r"\bEdg(?:e|A|iOS)?/")),
    ("Opera", re.compile(r"\bOPR/|\bOpera\b")),
    ("Chrome", re.compile(r"\b(?:Chrome|CriOS)/")),
    ("Firefox", re.compile(r"\b(?:Firefox|FxiOS)/")),
    ("Safari", re.compile(r"\bSafari/")),
    ("curl", re.compile(r"^curl/")),
    ("python", re.compile(r"^python-|\bhttpx/|^aiohttp/")),
    ("okhttp", re.compile(r"^okhttp/")),
)
_PLATFORMS = (
    ("Android", re.compile(r"\bAndroid\b")),
    ("iOS", re.compile(r"\b(?:iPhone|iPad|iPod)\b")),
    ("Windows", re.compile(r"\bWindows\b")),
    ("macOS", re.compile(r"\bMac OS X\b|\bMacintosh\b")),
    ("ChromeOS", re.compile(r"\bCrOS\b")),
    ("Linux", re.compile(r"\bLinux\b")),
)


def ua_context(user_agent: str | None) -> tuple[str, str]:
    """``(family, platform)`` of a user-agent (``"other"`` when unknown); the rest of the
    string is dropped at once."""
    ua = (user_agent or "")[:512]
    family = next((n for n, rx in _BROWSERS if rx.search(ua)), "other")
    platform = next((n for n, rx in _PLATFORMS if rx.search(ua)), "other")
    return family, platform


# -- bounded tables ------------------------------------------------------------------------------
K = TypeVar("K")
V = TypeVar("V")


class _Table(Generic[K, V]):
    """An LRU dict with at most ``limit`` entries."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.data: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K) -> V | None:
        value = self.data.get(key)
        if value is not None:
            self.data.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        self.data[key] = value
        self.data.move_to_end(key)
        while len(self.data) > self.limit:
            self.data.popitem(last=False)

    def pop(self, key: K) -> None:
        self.data.pop(key, None)

    def __len__(self) -> int:
        return len(self.data)


@dataclass(slots=True)
class _FamilyContext:
    place: str  # the prefix of the last use: a refresh or an access-token use
    seen: float  # when
    prefix: str | None = None  # the prefix of the last refresh (None: none seen here yet)
    ua_family: str | None = None
    platform: str | None = None
    refreshes: deque[float] = field(default_factory=deque)
    reported: tuple[str, float] | None = None  # the two places an access last reported, when
    ended: bool = False  # a decision ended the family: its access tokens are not judged again


@dataclass(slots=True)
class _UserContext:
    devices: dict[str, float] = field(default_factory=dict)
    prefixes: dict[str, float] = field(default_factory=dict)


class RiskEngine:
    """The signals of one server instance (see the module docstring).

    ``secret`` keys the hashes of usernames and attempted passwords; ``prefix`` maps an
    address to its network (the server's address-prefix helper with its settings)."""

    def __init__(
        self,
        policy: RiskPolicy | None = None,
        *,
        secret: bytes,
        clock: Clock = system_clock,
        prefix: Callable[[str], str] = address_prefix,
        max_entries: int = 100_000,
    ) -> None:
        if len(secret) < 16:
            raise ValueError("the risk secret must be at least 16 bytes")
        self.policy = policy or RiskPolicy()
        self._secret = secret
        self._clock = clock
        self._prefix = prefix
        self._families: _Table[str, _FamilyContext] = _Table(max_entries)
        self._users: _Table[bytes, _UserContext] = _Table(max_entries)
        self._by_prefix: _Table[str, dict[bytes, float]] = _Table(max_entries)
        self._by_password: _Table[bytes, dict[bytes, float]] = _Table(max_entries)
        self._notices: _Table[bytes, deque[tuple[float, str]]] = _Table(max_entries)
        self._prefixes: dict[str, str] = {}  # address → prefix, for the hot path

    # -- helpers -----------------------------------------------------------------------------
    def _hash(self, kind: bytes, value: str) -> bytes:
        msg = kind + b"\x00" + value.encode("utf-8", "surrogatepass")
        return hmac.new(self._secret, msg, hashlib.sha256).digest()[:16]

    def prefix_of(self, address: str | None) -> str:
        return self._prefix(address) if address else "unknown"

    def _cached_prefix(self, address: str) -> str:
        prefix = self._prefix(address)
        if len(self._prefixes) >= 4096:  # bounded: start again
            self._prefixes.clear()
        self._prefixes[address] = prefix
        return prefix

    def _expired(self, seen: float, now: float) -> bool:
        return now - seen > self.policy.retention

    # -- refresh -----------------------------------------------------------------------------
    def on_refresh(self, *, sid: str, address: str | None, user_agent: str | None) -> Decision:
        """A refresh of family ``sid`` from ``address`` with ``user_agent``."""
        p, now = self.policy, self._clock.now()
        prefix = self.prefix_of(address)
        family, platform = ua_context(user_agent)
        ctx = self._families.get(sid)
        if ctx is None or ctx.ended or self._expired(ctx.seen, now):
            ctx = _FamilyContext(prefix, now)
            self._families.put(sid, ctx)
        signals: list[Signal] = []
        gap = now - ctx.seen
        if prefix != ctx.place and gap < p.concurrent_window:
            signals.append(_two_places(ctx.place, prefix, gap))
        elif ctx.prefix is not None and prefix != ctx.prefix:
            signals.append(
                Signal("context_change", 0.2, f"network changed: {ctx.prefix} → {prefix}")
            )
        if ctx.ua_family is not None and (family, platform) != (ctx.ua_family, ctx.platform):
            signals.append(
                Signal(
                    "context_change",
                    0.8,
                    f"device changed: {ctx.ua_family} on {ctx.platform} → {family} on {platform}",
                )
            )
        while ctx.refreshes and now - ctx.refreshes[0] >= p.velocity_window:
            ctx.refreshes.popleft()
        ctx.refreshes.append(now)
        if len(ctx.refreshes) > p.velocity_max:
            n = len(ctx.refreshes)
            signals.append(
                Signal(
                    "refresh_velocity",
                    min(1.0, n / (2 * p.velocity_max)),
                    f"{n} refreshes in {p.velocity_window:.0f} s (at most {p.velocity_max} "
                    "expected)",
                )
            )
        ctx.place = ctx.prefix = prefix
        ctx.ua_family, ctx.platform, ctx.seen = family, platform, now
        return p.decide(_merge(signals), prefix) if signals else Decision(prefix=prefix)

    def on_access(self, *, sid: str, address: str | None) -> Decision:
        """An access token of family ``sid`` presented by a caller at ``address`` (the token's
        holder: ``/userinfo``). Only ``concurrent_use`` is judged — a use from another prefix
        than the family's last use (refresh or access) within ``concurrent_window`` — and one
        pair of places is reported once per window. O(1) and allocation-light: it runs on
        every request of the endpoint."""
        now = self._clock.now()
        if address:
            prefix = self._prefixes.get(address) or self._cached_prefix(address)
        else:
            prefix = "unknown"
        families = self._families.data  # the table's get, inlined: this runs per request
        ctx = families.get(sid)
        if ctx is None or now - ctx.seen > self.policy.retention:
            self._families.put(sid, _FamilyContext(prefix, now))
            return _NOTHING
        families.move_to_end(sid)
        if ctx.ended:
            return _NOTHING
        place, gap = ctx.place, now - ctx.seen
        ctx.place, ctx.seen = prefix, now
        if prefix == place or gap >= self.policy.concurrent_window:
            return _NOTHING
        pair = f"{min(place, prefix)} {max(place, prefix)}"
        last = ctx.reported
        if last is not None and last[0] == pair and now - last[1] < self.policy.concurrent_window:
            return _NOTHING
        ctx.reported = (pair, now)
        return self.policy.decide([_two_places(place, prefix, gap)], prefix)

    def forget_family(self, sid: str) -> None:
        """A decision ended family ``sid``: its context is dropped, and its access tokens (which
        may live on, after ``step_up``) are not judged again."""
        self._families.put(sid, _FamilyContext("", self._clock.now(), ended=True))

    # -- sign-in -------------------------------------------------------------------------------
    def on_sign_in(self, *, sub: str, address: str | None, device: str | None = None) -> Decision:
        """A successful sign-in of ``sub``; ``device`` is the device cookie's id, if any."""
        now = self._clock.now()
        prefix = self.prefix_of(address)
        key = self._hash(b"user", sub)
        ctx = self._users.get(key)
        first = ctx is None
        if ctx is None:
            ctx = _UserContext()
            self._users.put(key, ctx)
        for table in (ctx.devices, ctx.prefixes):
            for k in [k for k, seen in table.items() if self._expired(seen, now)]:
                del table[k]
        first = first or not (ctx.devices or ctx.prefixes)
        new_prefix = prefix not in ctx.prefixes
        new_device = device is not None and device not in ctx.devices
        ctx.prefixes[prefix] = now
        if device is not None:
            ctx.devices[device] = now
        for table in (ctx.devices, ctx.prefixes):  # a bounded memory per user
            while len(table) > 32:
                del table[min(table, key=table.__getitem__)]
        if first or not (new_prefix or new_device):
            return Decision(prefix=prefix)
        if new_prefix and (new_device or device is None):
            score, why = 0.6, f"new sign-in from {prefix}"
        elif new_prefix:
            score, why = 0.3, f"new sign-in from {prefix} (known device)"
        else:
            score, why = 0.3, f"new device from {prefix}"
        return self.policy.decide([Signal("new_device", score, why)], prefix)

    def on_sign_in_failure(self, *, username: str, password: str, address: str | None) -> Decision:
        """A failed sign-in: counts the username per prefix and per (keyed hash of the)
        password. The password is hashed here and dropped."""
        p, now = self.policy, self._clock.now()
        prefix = self.prefix_of(address)
        user = self._hash(b"user", username)
        signals: list[Signal] = []
        n = self._count(self._by_prefix, prefix, user, now, p.stuffing_window)
        if n >= p.stuffing_usernames:
            signals.append(
                Signal(
                    "credential_stuffing",
                    min(1.0, n / (2 * p.stuffing_usernames) + 0.5),
                    f"failed sign-ins for {n} usernames from {prefix} in {p.stuffing_window:.0f} s",
                )
            )
        m = self._count(
            self._by_password, self._hash(b"password", password), user, now, p.spraying_window
        )
        if m >= p.spraying_usernames:
            signals.append(
                Signal(
                    "password_spraying",
                    min(1.0, m / (2 * p.spraying_usernames) + 0.5),
                    f"one password tried against {m} usernames in {p.spraying_window:.0f} s",
                )
            )
        return p.decide(signals, prefix)

    @staticmethod
    def _count(
        table: _Table[Any, dict[bytes, float]], key: Any, user: bytes, now: float, window: float
    ) -> int:
        seen = table.get(key)
        if seen is None:
            seen = {}
            table.put(key, seen)
        for k in [k for k, t in seen.items() if now - t >= window]:
            del seen[k]
        seen[user] = now
        while len(seen) > 10_000:  # bounded: far above any threshold
            del seen[next(iter(seen))]
        return len(seen)

    # -- what the user is told ------------------------------------------------------------
    def notify_user(self, sub: str, text: str) -> None:
        """Remember a notice for ``sub``'s own sessions screen (the last 10, for
        ``retention``): "new sign-in from …", "session ended: used from two places …"."""
        key = self._hash(b"user", sub)
        notes = self._notices.get(key)
        if notes is None:
            notes = deque(maxlen=10)
            self._notices.put(key, notes)
        notes.append((self._clock.now(), text))

    def notices(self, sub: str) -> list[tuple[float, str]]:
        """``sub``'s notices within the retention, newest first."""
        notes = self._notices.get(self._hash(b"user", sub))
        now = self._clock.now()
        return [(t, text) for t, text in reversed(notes or ()) if not self._expired(t, now)]

    def purge(self) -> int:
        """Drop everything past its keeping time (the server runs this with its store purge):
        family and user context and notices ``retention`` after their last use, the hashes
        of failed usernames after the stuffing/spraying window. Returns how many entries
        went."""
        p, now = self.policy, self._clock.now()
        gone = 0
        for sid in [k for k, c in self._families.data.items() if self._expired(c.seen, now)]:
            self._families.pop(sid)
            gone += 1
        for key, user in list(self._users.data.items()):
            for table in (user.devices, user.prefixes):
                for k in [k for k, seen in table.items() if self._expired(seen, now)]:
                    del table[k]
            if not (user.devices or user.prefixes):
                self._users.pop(key)
                gone += 1
        gone += _drop_older(self._by_prefix, now - p.stuffing_window)
        gone += _drop_older(self._by_password, now - p.spraying_window)
        for nkey, notes in list(self._notices.data.items()):
            while notes and self._expired(notes[0][0], now):
                notes.popleft()
            if not notes:
                self._notices.pop(nkey)
                gone += 1
        return gone

    def sizes(self) -> dict[str, int]:
        """How many entries each table holds (for tests and metrics)."""
        return {
            "families": len(self._families),
            "users": len(self._users),
            "prefixes": len(self._by_prefix),
            "passwords": len(self._by_password),
            "notices": len(self._notices),
        }


_NOTHING = Decision()


def _drop_older(table: _Table[Any, dict[bytes, float]], cutoff: float) -> int:
    """Forget the usernames counted at or before ``cutoff``; returns the keys emptied."""
    gone = 0
    for key, seen in list(table.data.items()):
        for k in [k for k, t in seen.items() if t <= cutoff]:
            del seen[k]
        if not seen:
            table.pop(key)
            gone += 1
    return gone


def _two_places(before: str, now: str, gap: float) -> Signal:
    return Signal(
        "concurrent_use", 1.0, f"used from two places: {before} and {now} {gap:.0f} s apart"
    )


def _merge(signals: list[Signal]) -> list[Signal]:
    """One signal per name: the highest score, reasons joined."""
    out: dict[str, Signal] = {}
    for s in signals:
        if s.name in out:
            o = out[s.name]
            out[s.name] = Signal(s.name, max(o.score, s.score), f"{o.reason}; {s.reason}")
        else:
            out[s.name] = s
    return list(out.values())
