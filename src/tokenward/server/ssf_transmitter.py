"""The Shared Signals transmitter (OpenID SSF 1.0): tokenward's security events become Security
Event Tokens (RFC 8417, :mod:`.ssf`) delivered to every stream that asked for them.

**Which events** (:func:`signals_for`):

=================================  ==========================================================
tokenward security event           SET event type (subject)
=================================  ==========================================================
``revoked`` of a session           CAEP ``session-revoked`` (the session, with its user)
``revoked`` of a user              CAEP ``session-revoked`` (the user: all their sessions)
                                   and RISC ``sessions-revoked``
``refresh_token_reuse``            CAEP ``session-revoked`` (reason: reuse detected)
``risk_decision`` that ends one    CAEP ``session-revoked`` with the decision's reason
``risk_decision`` with ``notify``  CAEP ``risk-level-change`` (``current_level`` from the
                                   highest score: HIGH ≥ 0.8, MEDIUM ≥ 0.5, else LOW)
``password_changed``               CAEP ``credential-change`` (``password``, ``update``)
``roles_changed``                  CAEP ``token-claims-change`` (``claims: {"roles": …}``)
``user_disabled`` / ``_enabled``   RISC ``account-disabled`` / ``account-enabled``
=================================  ==========================================================

**When**: :class:`EventGate` (a gate of the request middleware) collects the events a
request emits and, before the response starts, :meth:`Transmitter.publish` signs one SET per
matching stream (``aud`` = the stream's ``aud``, a fresh ``jti``) and writes it to the store:
into the :class:`~.outbox.Outbox` for push (RFC 8935) or into the stream's queue (kind
``ssf_set``) for poll (RFC 8936) and for a paused push stream. A request answers 2xx only once
that is done; if the store refuses, a 2xx becomes 503 (the client retries), so every
acknowledged event is delivered at least once. A request emitting none of these events does
no store I/O for them (the gate sets a context variable, no extra await); with no stream
configured, one read.

**Queues** are bounded (:data:`MAX_QUEUED` per stream; beyond, a SET is dropped with an
``outbound_dropped`` event) and kept :data:`KEEP` seconds; push deliveries are retried with
backoff up to :data:`PUSH_ATTEMPTS` times (about an hour) and stop at a 4xx rejection.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import threading
from collections.abc import Callable, Iterable, Mapping
from contextvars import ContextVar, Token
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..clock import Clock
from ..events import add_listener, emit
from ..keys import KeyRing
from ..store.base import GrantRecord, Store
from .outbox import Outbox
from .ssf import (
    ACCOUNT_DISABLED,
    ACCOUNT_ENABLED,
    CREDENTIAL_CHANGE,
    SESSION_REVOKED,
    SESSIONS_REVOKED,
    TOKEN_CLAIMS_CHANGE,
    build_set,
    sign_set,
)
from .ssf_streams import PUSH, RISK_LEVEL_CHANGE, VERIFICATION, Stream, StreamRegistry

if TYPE_CHECKING:
    from .settings import Settings

__all__ = [
    "KEEP",
    "MAX_QUEUED",
    "PUSH_ATTEMPTS",
    "SET_CONTENT_TYPE",
    "EventGate",
    "Signal",
    "Transmitter",
    "install_listener",
    "publish_offline",
    "signals_for",
]

SET_CONTENT_TYPE = "application/secevent+jwt"  # RFC 8935 §2
QUEUE_KIND = "ssf_set"
MAX_QUEUED = 1000
KEEP = 7 * 86400.0
PUSH_ATTEMPTS = 16
_RECOUNT = 30.0
_ENDING = frozenset({"step_up", "revoke_session", "revoke_subject"})
_RELEVANT = frozenset(
    {
        "revoked",
        "refresh_token_reuse",
        "risk_decision",
        "password_changed",
        "roles_changed",
        "user_disabled",
        "user_enabled",
    }
)
_USER_REASONS = ("logout", "user_revoked", "rp_logout", "refresh_token_revoked", "consent")
_ADMIN_REASONS = ("admin", "client_disabled", "authorization_changed", "cli", "subject_revoked")


@dataclass(slots=True)
class Signal:
    """One SET to build: its event type, subject (user ``sub``, session ``sid``) and members."""

    event_type: str
    sub: str | None
    sid: str | None
    event: dict[str, Any]

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.event_type, self.sid or "", "" if self.sid else self.sub or "")


def _en(text: str) -> dict[str, str]:
    return {"en": text}


def _initiator(reason: str) -> str:
    if reason.startswith(_USER_REASONS):
        return "user"
    if reason.startswith(_ADMIN_REASONS):
        return "admin"
    return "policy"


def _level(scores: Mapping[str, Any]) -> str:
    top = max((float(v) for v in scores.values()), default=0.0)
    return "HIGH" if top >= 0.8 else "MEDIUM" if top >= 0.5 else "LOW"


def signals_for(name: str, fields: Mapping[str, Any]) -> list[Signal]:
    """The SETs announcing one security event (see the module docstring); ``[]`` for others."""
    if name == "revoked":
        reason = str(fields.get("reason", "revoked"))
        body = {"initiating_entity": _initiator(reason), "reason_admin": _en(reason)}
        value = str(fields.get("value", ""))
        if fields.get("kind") == "sid" and value:
            return [Signal(SESSION_REVOKED, None, value, body)]
        if fields.get("kind") == "sub" and value:
            return [
                Signal(SESSION_REVOKED, value, None, body),
                Signal(SESSIONS_REVOKED, value, None, {}),
            ]
        return []
    sub = str(fields["sub"]) if fields.get("sub") else None
    sid = str(fields["sid"]) if fields.get("sid") else None
    if name == "refresh_token_reuse" and (sub or sid):
        body = {"initiating_entity": "policy", "reason_admin": _en("refresh token reuse detected")}
        return [Signal(SESSION_REVOKED, sub, sid, body)]
    if name == "risk_decision" and (sub or sid):
        actions = set(fields.get("actions") or ())
        reason = str(fields.get("reason", ""))
        out = []
        if actions & _ENDING and sid:
            body = {
                "initiating_entity": "policy",
                "reason_admin": _en(reason),
                "reason_user": _en("session ended: suspicious activity"),
            }
            out.append(Signal(SESSION_REVOKED, sub, sid, body))
        if "notify" in actions:
            level = {
                "principal": "SESSION" if sid else "USER",
                "current_level": _level(fields.get("scores") or {}),
                "risk_reason": reason,
            }
            out.append(Signal(RISK_LEVEL_CHANGE, sub, sid, level))
        return out
    if sub is None:
        return []
    if name == "password_changed":
        body = {
            "credential_type": "password",
            "change_type": "update",
            "initiating_entity": "admin" if fields.get("reason") == "admin_reset" else "user",
        }
        return [Signal(CREDENTIAL_CHANGE, sub, None, body)]
    if name == "roles_changed":
        claims = {"roles": list(fields.get("roles") or ())}
        return [Signal(TOKEN_CLAIMS_CHANGE, sub, None, {"claims": claims})]
    if name == "user_disabled":
        return [Signal(ACCOUNT_DISABLED, sub, None, {})]
    if name == "user_enabled":
        return [Signal(ACCOUNT_ENABLED, sub, None, {})]
    return []


# collecting a request's events ----------------------------------------------------------------

_batch: ContextVar[list[tuple[str, dict[str, Any]]] | None] = ContextVar(
    "tokenward_ssf_batch", default=None
)
_installed = threading.Lock()
_listening = False


def _listen(name: str, fields: Mapping[str, Any]) -> None:
    if name not in _RELEVANT:
        return
    batch = _batch.get()
    if batch is not None:
        batch.append((name, dict(fields)))


def install_listener() -> None:
    """Collect the transmitter's events in the request that emits them (once per process)."""
    global _listening
    with _installed:
        if not _listening:
            add_listener(_listen)
            _listening = True


class Transmitter:
    """Streams, SET signing and the delivery queues of one server."""

    def __init__(
        self,
        store: Store,
        *,
        clock: Clock,
        outbox: Outbox,
        issuer: str,
        keyring: Callable[[], KeyRing],
        allow_private: bool,
    ) -> None:
        self.store = store
        self.clock = clock
        self.outbox = outbox
        self.issuer = issuer
        self._keyring = keyring
        self.streams = StreamRegistry(
            store, issuer=issuer, clock=clock, allow_private=allow_private
        )
        self._arrived: dict[str, asyncio.Event] = {}
        self._counts: dict[str, tuple[int, float]] = {}  # stream → (queued SETs, counted at)

    def poll_url(self, stream_id: str) -> str:
        return f"{self.issuer}/ssf/poll/{stream_id}"

    def config(self, stream: Stream) -> dict[str, Any]:
        return stream.config(issuer=self.issuer, poll_url=self.poll_url(stream.stream_id))

    # publishing ---------------------------------------------------------------------------
    async def publish(self, events: Iterable[tuple[str, Mapping[str, Any]]]) -> int:
        """Sign and durably queue the SETs announcing ``events``; the number queued."""
        signals: dict[tuple[str, str, str], Signal] = {}
        for name, fields in events:
            for sig in signals_for(name, fields):
                signals.setdefault(sig.key, sig)  # the first (most specific) reason wins
        if not signals:
            return 0
        now = self.clock.now()
        streams = []
        for s in await self.streams.all():
            if s.inactive(now):  # its receiver is gone: it would cost every event a write
                if await self.streams.expire(s):
                    await self.drop_queue(s.stream_id)
                    emit("ssf_stream_expired", stream_id=s.stream_id, client_id=s.client_id)
            elif s.status != "disabled":
                streams.append(s)
        if not streams:
            return 0
        owners: dict[str, str | None] = {}
        for sig in signals.values():
            if sig.sid and not sig.sub:
                if sig.sid not in owners:
                    family = await self.store.get_family(sig.sid)
                    owners[sig.sid] = family.sub if family is not None else None
                sig.sub = owners[sig.sid]
        n = 0
        for stream in streams:
            for sig in signals.values():
                if stream.wants(sig.event_type) and stream.matches(sig.sub, sig.sid):
                    claims = build_set(
                        sig.event_type,
                        issuer=stream.iss or self.issuer,
                        audience=stream.client_id,
                        now=now,
                        sub=sig.sub,
                        sid=sig.sid,
                        event=sig.event,
                    )
                    n += await self._deliver(stream, claims)
        return n

    async def verify(self, stream: Stream, state: str | None) -> None:
        """Send the stream a verification event (SSF 1.0 §8.1.4.2)."""
        now = self.clock.now()
        claims = {
            "iss": stream.iss or self.issuer,
            "jti": secrets.token_urlsafe(16),
            "iat": int(now),
            "aud": stream.client_id,
            "sub_id": {"format": "opaque", "id": stream.stream_id},
            "events": {VERIFICATION: {"state": state} if state is not None else {}},
        }
        await self._deliver(stream, claims)

    async def _deliver(self, stream: Stream, claims: Mapping[str, Any]) -> int:
        token = sign_set(self._keyring(), claims)
        if stream.method == PUSH and stream.status == "enabled" and stream.endpoint_url:
            return int(await self._push(stream, token))
        return int(await self._queue(stream.stream_id, str(claims["jti"]), token))

    async def _push(self, stream: Stream, token: str) -> bool:
        assert stream.endpoint_url is not None
        headers = {"Accept": "application/json"}
        if stream.authorization_header:
            headers["Authorization"] = stream.authorization_header
        return await self.outbox.enqueue(
            stream.endpoint_url,
            token.encode("ascii"),
            SET_CONTENT_TYPE,
            kind="ssf_push",
            headers=headers,
            max_attempts=PUSH_ATTEMPTS,
            final_on_client_error=True,
            ref=stream.stream_id,
        )

    async def _queue(self, stream_id: str, jti: str, token: str) -> bool:
        now = self.clock.now()
        # counted in the store when unknown, stale or near the bound; else this instance's
        # running count (a queue is not read whole for every SET)
        count, counted_at = self._counts.get(stream_id, (MAX_QUEUED, now))
        if count >= MAX_QUEUED - 1 or now - counted_at > _RECOUNT:
            count = len(await self.store.list_records(QUEUE_KIND, stream_id, now=now))
            counted_at = now
        if count >= MAX_QUEUED:
            self._counts[stream_id] = (count, counted_at)
            emit("outbound_dropped", kind="ssf_poll", stream_id=stream_id, reason="queue full")
            return False
        key = f"{stream_id}:{now:017.6f}:{jti}"  # key order = queue order
        rec = GrantRecord(QUEUE_KIND, key, stream_id, {"jti": jti, "set": token}, now + KEEP)
        await self.store.create_record(rec, now=now)
        self._counts[stream_id] = (count + 1, counted_at)
        waiter = self._arrived.get(stream_id)
        if waiter is not None:
            waiter.set()
        return True

    # the stream's queue ---------------------------------------------------------------------
    async def queued(self, stream_id: str) -> list[GrantRecord]:
        return await self.store.list_records(QUEUE_KIND, stream_id, now=self.clock.now())

    async def drop_queue(self, stream_id: str) -> int:
        """Forget what a deleted or disabled stream holds (and its pushes not yet made)."""
        n = await self.outbox.cancel("ssf_push", stream_id)
        for rec in await self.queued(stream_id):
            n += int(await self.store.delete_record(QUEUE_KIND, rec.key))
        self._counts.pop(stream_id, None)
        return n

    async def release(self, stream: Stream) -> int:
        """A push stream enabled again: what it held while paused goes to the outbox."""
        if stream.method != PUSH or stream.status != "enabled":
            return 0
        n = 0
        self._counts.pop(stream.stream_id, None)
        for rec in await self.queued(stream.stream_id):
            if await self._push(stream, str(rec.data["set"])):
                await self.store.delete_record(QUEUE_KIND, rec.key)
                n += 1
        return n

    async def acknowledge(
        self, stream_id: str, ack: Iterable[str], errors: Mapping[str, Mapping[str, Any]]
    ) -> None:
        """RFC 8936 §2.4: acknowledged (and rejected, ``setErrs``) SETs leave the queue."""
        done = set(ack) | set(errors)
        if not done:
            return
        self._counts.pop(stream_id, None)
        for rec in await self.queued(stream_id):
            jti = str(rec.data["jti"])
            if jti in done:
                await self.store.delete_record(QUEUE_KIND, rec.key)
                if jti in errors:
                    err = errors[jti]
                    emit(
                        "ssf_set_error",
                        stream_id=stream_id,
                        jti=jti,
                        err=str(err.get("err", ""))[:64],
                        description=str(err.get("description", ""))[:256],
                    )

    async def take(self, stream_id: str, limit: int) -> tuple[dict[str, str], bool]:
        """Up to ``limit`` unacknowledged SETs, oldest first, and whether more are waiting."""
        recs = await self.queued(stream_id)
        self._counts[stream_id] = (len(recs), self.clock.now())
        sets = {str(r.data["jti"]): str(r.data["set"]) for r in recs[:limit]}
        return sets, len(recs) > limit

    async def wait(self, stream_id: str, timeout: float) -> None:
        """Until a SET is queued for ``stream_id`` on this instance, or ``timeout``."""
        waiter = self._arrived.setdefault(stream_id, asyncio.Event())
        waiter.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(waiter.wait(), timeout)


async def publish_offline(
    settings: Settings,
    store: Store,
    events: Iterable[tuple[str, Mapping[str, Any]]],
    *,
    clock: Clock,
) -> int:
    """Publish ``events`` from outside the server (the CLI, which changes the store directly):
    the same SETs, signed with the stored keys; pushes go into the store's outbox, which a
    running server delivers. The number queued (0, without loading any key, when there is no
    stream)."""
    from .keystore import kek_for_store, load_or_create_keyring

    events = list(events)
    if not events:
        return 0
    streams = StreamRegistry(
        store, issuer=settings.issuer, clock=clock, allow_private=settings.outbound_allow_private
    )
    if not any(s.status != "disabled" for s in await streams.all()):
        return 0
    kek = await kek_for_store(settings, store)
    ring, _ = await load_or_create_keyring(store, kek, alg=settings.signing_alg, clock=clock)
    outbox = Outbox(store, clock=clock, allow_private=settings.outbound_allow_private)
    transmitter = Transmitter(
        store,
        clock=clock,
        outbox=outbox,
        issuer=settings.issuer,
        keyring=lambda: ring,
        allow_private=settings.outbound_allow_private,
    )
    return await transmitter.publish(events)


# the gate: a request's events are stored before its response starts --------------------------


_State = tuple[list[tuple[str, dict[str, Any]]], Token[Any]]


class EventGate:
    """The :class:`~.middleware.ResponseGate` of the transmitter: collects the events a request
    emits and publishes them before its response starts (see the module docstring)."""

    def __init__(self, transmitter: Transmitter) -> None:
        self.transmitter = transmitter
        self._late_tasks: set[asyncio.Task[None]] = set()

    def open(self) -> _State:
        batch: list[tuple[str, dict[str, Any]]] = []
        return batch, _batch.set(batch)

    def waiting(self, state: _State) -> bool:
        return bool(state[0])

    async def before_start(self, state: _State, status: int) -> bool:
        batch = state[0]
        taken = batch[:]
        batch.clear()
        try:
            await self.transmitter.publish(taken)
        except Exception as exc:
            emit("outbound_dropped", kind="ssf", reason=type(exc).__name__)
            return not 200 <= status < 300  # a 2xx must not claim what was not stored
        return True

    def close(self, state: _State) -> None:
        batch, token = state
        with contextlib.suppress(ValueError):  # reset from another context: nothing to undo
            _batch.reset(token)
        if batch:  # emitted after the response started (a background task): best effort
            task = asyncio.get_running_loop().create_task(self._late(batch[:]))
            self._late_tasks.add(task)
            task.add_done_callback(self._late_tasks.discard)

    async def _late(self, batch: list[tuple[str, dict[str, Any]]]) -> None:
        try:
            await self.transmitter.publish(batch)
        except Exception as exc:
            emit("outbound_dropped", kind="ssf", reason=type(exc).__name__)
