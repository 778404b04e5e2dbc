"""Shared Signals streams (OpenID SSF 1.0 §8.1): what a receiver configured, kept in the store.

A stream belongs to the client that created it (the ``client_id`` of its bearer token with the
reserved ``ssf`` scope); another client neither sees nor changes it. Each stream is one store
record (kind ``ssf_stream``, indexed under one owner so the transmitter lists every stream in one
read). Its configuration (§8.1.1):

* transmitter-supplied: ``stream_id``, ``iss`` (this server), ``aud`` (the owning client's id),
  ``events_supported`` (:data:`EVENTS_SUPPORTED`), ``events_delivered`` (those of
  ``events_requested`` that are supported), ``min_verification_interval``;
* receiver-supplied: ``events_requested``, ``delivery`` (``method`` push, RFC 8935, with the
  receiver's ``endpoint_url`` and an optional ``authorization_header``; or poll, RFC 8936,
  whose ``endpoint_url`` this server assigns), ``description``.

Subjects (§8.1.3, RFC 9493 subject identifiers): a new stream gets events about every subject
(``default_subjects: ALL``). Adding a subject to such a stream takes it back out of the
exclusions; removing one excludes it. A stream that was given the tokenward extension subject
``{"format": "all"}`` removed gets only the subjects added afterwards. Accepted formats:
``iss_sub`` (``iss`` must be this server), ``opaque`` (a username or a session id) and
``complex`` with a ``user`` (``iss_sub``) or a ``session`` (``opaque``).

Status (§8.1.2): ``enabled`` (events delivered), ``paused`` (events held, delivered once enabled
again), ``disabled`` (events dropped).

Inactivity (§8.1.1 ``inactivity_timeout``): a poll stream whose receiver has not called for
:data:`INACTIVITY_TIMEOUT` seconds (a guard worker that crashed without deleting its stream) is
deleted with what it holds when the next event is published, so dead streams do not cost every
event a write. A poll records the receiver's activity at most once per :data:`_TOUCH_EVERY`.

Bad input raises :class:`StreamError` with a message naming the problem (the routes answer 400);
a push ``endpoint_url`` must pass the outbound rules (https only, no loopback/private address
unless ``TOKENWARD_OUTBOUND_ALLOW_PRIVATE=1``): a stream cannot be used to reach the server's
own network.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import InvalidRequest, NotFound, RateLimited
from ..store.base import GrantRecord, Store
from .outbox import OutboundRefused, check_target
from .ssf import (
    ACCOUNT_DISABLED,
    ACCOUNT_ENABLED,
    CREDENTIAL_CHANGE,
    SESSION_REVOKED,
    SESSIONS_REVOKED,
    TOKEN_CLAIMS_CHANGE,
)

__all__ = [
    "EVENTS_SUPPORTED",
    "INACTIVITY_TIMEOUT",
    "MAX_STREAMS_PER_CLIENT",
    "POLL",
    "PUSH",
    "RISK_LEVEL_CHANGE",
    "STATUSES",
    "VERIFICATION",
    "Stream",
    "StreamError",
    "StreamRegistry",
    "subject_key",
]

PUSH = "urn:ietf:rfc:8935"
POLL = "urn:ietf:rfc:8936"
RISK_LEVEL_CHANGE = "https://schemas.openid.net/secevent/caep/event-type/risk-level-change"
VERIFICATION = "https://schemas.openid.net/secevent/ssf/event-type/verification"
EVENTS_SUPPORTED: tuple[str, ...] = (
    SESSION_REVOKED,
    CREDENTIAL_CHANGE,
    TOKEN_CLAIMS_CHANGE,
    RISK_LEVEL_CHANGE,
    ACCOUNT_DISABLED,
    ACCOUNT_ENABLED,
    SESSIONS_REVOKED,
)
STATUSES = ("enabled", "paused", "disabled")
KIND = "ssf_stream"
_OWNER = "streams"
MAX_STREAMS_PER_CLIENT = 64  # a guard worker polls its own stream
MAX_STREAMS = 1000
MAX_SUBJECTS = 1000
MIN_VERIFICATION_INTERVAL = 10
INACTIVITY_TIMEOUT = 86400
_TOUCH_EVERY = 3600.0
_MAX_TEXT = 256
_MAX_URL = 2048
_RECEIVER_FIELDS = frozenset({"events_requested", "delivery", "description"})
_TRANSMITTER_FIELDS = frozenset(
    {
        "stream_id",
        "iss",
        "aud",
        "events_supported",
        "events_delivered",
        "min_verification_interval",
        "inactivity_timeout",
    }
)


class StreamError(InvalidRequest):
    """A stream request is malformed (400 ``invalid_request``, the message says what)."""


@dataclass(slots=True)
class Stream:
    stream_id: str
    client_id: str
    method: str
    endpoint_url: str | None
    events_requested: list[str] = field(default_factory=list)
    description: str | None = None
    authorization_header: str | None = None
    status: str = "enabled"
    reason: str | None = None
    all_subjects: bool = True
    subjects: list[str] = field(default_factory=list)  # added (all_subjects false)
    excluded: list[str] = field(default_factory=list)  # removed (all_subjects true)
    created_at: float = 0.0
    verified_at: float = 0.0
    iss: str = ""  # the issuer that created it: the SETs' ``iss``, whoever publishes them
    active_at: float = 0.0  # the receiver's last call on it (recorded at most hourly)
    version: int = 0

    def inactive(self, now: float) -> bool:
        """A poll stream nobody has called for :data:`INACTIVITY_TIMEOUT` seconds."""
        last = max(self.active_at, self.created_at)
        return self.method == POLL and now - last > INACTIVITY_TIMEOUT

    @property
    def events_delivered(self) -> list[str]:
        return [e for e in EVENTS_SUPPORTED if e in self.events_requested]

    def wants(self, event_type: str) -> bool:
        return event_type in self.events_requested and event_type in EVENTS_SUPPORTED

    def matches(self, sub: str | None, sid: str | None) -> bool:
        """Does an event about user ``sub`` (and session ``sid``) concern this stream?"""
        keys = set()
        if sub:
            keys |= {"u:" + sub, "o:" + sub}
        if sid:
            keys |= {"s:" + sid, "o:" + sid}
        if self.all_subjects:
            return not keys.intersection(self.excluded)
        return bool(keys.intersection(self.subjects))

    def config(self, *, issuer: str, poll_url: str) -> dict[str, Any]:
        """The stream configuration as SSF 1.0 §8.1.1 shows it (no ``authorization_header``:
        a receiver's secret is never echoed)."""
        delivery: dict[str, Any] = {"method": self.method}
        delivery["endpoint_url"] = self.endpoint_url if self.method == PUSH else poll_url
        out: dict[str, Any] = {
            "stream_id": self.stream_id,
            "iss": issuer,
            "aud": self.client_id,
            "events_supported": list(EVENTS_SUPPORTED),
            "events_requested": list(self.events_requested),
            "events_delivered": self.events_delivered,
            "delivery": delivery,
            "min_verification_interval": MIN_VERIFICATION_INTERVAL,
        }
        if self.method == POLL:
            out["inactivity_timeout"] = INACTIVITY_TIMEOUT
        if self.description is not None:
            out["description"] = self.description
        return out

    def to_data(self) -> dict[str, Any]:
        return {
            "client_id": self.client_id,
            "method": self.method,
            "endpoint_url": self.endpoint_url,
            "events_requested": self.events_requested,
            "description": self.description,
            "authorization_header": self.authorization_header,
            "status": self.status,
            "reason": self.reason,
            "all_subjects": self.all_subjects,
            "subjects": self.subjects,
            "excluded": self.excluded,
            "created_at": self.created_at,
            "verified_at": self.verified_at,
            "iss": self.iss,
            "active_at": self.active_at,
        }

    @classmethod
    def from_record(cls, rec: GrantRecord) -> Stream:
        d = rec.data
        return cls(
            stream_id=rec.key,
            client_id=str(d["client_id"]),
            method=str(d["method"]),
            endpoint_url=d.get("endpoint_url"),
            events_requested=list(d.get("events_requested") or []),
            description=d.get("description"),
            authorization_header=d.get("authorization_header"),
            status=str(d.get("status", "enabled")),
            reason=d.get("reason"),
            all_subjects=bool(d.get("all_subjects", True)),
            subjects=list(d.get("subjects") or []),
            excluded=list(d.get("excluded") or []),
            created_at=float(d.get("created_at", 0.0)),
            verified_at=float(d.get("verified_at", 0.0)),
            iss=str(d.get("iss", "")),
            active_at=float(d.get("active_at", 0.0)),
            version=rec.version,
        )


# input validation ---------------------------------------------------------------------------


def _text(value: Any, name: str, limit: int = _MAX_TEXT) -> str:
    if not isinstance(value, str) or not value or len(value) > limit:
        raise StreamError(f"{name} must be a non-empty string of at most {limit} characters")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise StreamError(f"{name} must not contain control characters")
    return value


def _events(value: Any) -> list[str]:
    if not isinstance(value, list) or len(value) > 32:
        raise StreamError("events_requested must be a list of at most 32 event-type URIs")
    out: list[str] = []
    for v in value:
        uri = _text(v, "each of events_requested")
        if not uri.startswith(("https://", "http://", "urn:")):
            raise StreamError(f"events_requested: {uri!r} is not an event-type URI")
        if uri not in out:
            out.append(uri)
    return out


Delivery = tuple[str, str | None, str | None]  # method, push endpoint, authorization header


def _delivery(value: Any) -> Delivery:
    """The delivery object's shape (the push URL's target is checked by the registry)."""
    if not isinstance(value, dict):
        raise StreamError("delivery must be an object with a method")
    unknown = set(value) - {"method", "endpoint_url", "authorization_header"}
    if unknown:
        raise StreamError(f"delivery: unknown property {sorted(unknown)[0]!r}")
    method = value.get("method")
    if method not in (PUSH, POLL):
        raise StreamError(f"delivery.method must be {PUSH!r} (push) or {POLL!r} (poll)")
    url = value.get("endpoint_url")
    auth = value.get("authorization_header")
    if method == POLL:
        if auth is not None:
            raise StreamError("delivery.authorization_header is for push delivery only")
        return POLL, None, None  # the transmitter assigns the poll endpoint
    url = _text(url, "delivery.endpoint_url", _MAX_URL)
    if auth is not None:
        auth = _text(auth, "delivery.authorization_header", 4096)
    return PUSH, url, auth


def subject_key(subject: Any, *, issuer: str) -> str:
    """The matching key of an RFC 9493 subject identifier (see the module docstring)."""
    if not isinstance(subject, dict):
        raise StreamError("subject must be an object (an RFC 9493 subject identifier)")
    fmt = subject.get("format")
    if fmt == "iss_sub":
        if set(subject) - {"format", "iss", "sub"}:
            raise StreamError("subject: an iss_sub identifier has only iss and sub")
        if subject.get("iss") != issuer:
            raise StreamError(f"subject: iss must be this issuer ({issuer})")
        return "u:" + _text(subject.get("sub"), "subject.sub")
    if fmt == "opaque":
        if set(subject) - {"format", "id"}:
            raise StreamError("subject: an opaque identifier has only id")
        return "o:" + _text(subject.get("id"), "subject.id")
    if fmt == "complex":
        parts = set(subject) - {"format"}
        if parts == {"user"}:
            return subject_key(subject["user"], issuer=issuer)
        if parts == {"session"}:
            inner = subject["session"]
            if not isinstance(inner, dict) or inner.get("format") != "opaque":
                raise StreamError("subject: a complex session must be an opaque identifier")
            return "s:" + _text(inner.get("id"), "subject.session.id")
        raise StreamError("subject: a complex identifier needs exactly one of user or session")
    raise StreamError(
        f"subject: format {fmt!r} is not supported (iss_sub, opaque, complex, or all)"
    )


def is_all(subject: Any) -> bool:
    return isinstance(subject, dict) and subject == {"format": "all"}


# the registry ---------------------------------------------------------------------------------


class StreamRegistry:
    """Streams in the store; every method is scoped to the calling client."""

    def __init__(self, store: Store, *, issuer: str, clock: Any, allow_private: bool) -> None:
        self.store = store
        self.issuer = issuer
        self.clock = clock
        self.allow_private = allow_private

    async def all(self) -> list[Stream]:
        recs = await self.store.list_records(KIND, _OWNER, now=self.clock.now())
        return [Stream.from_record(r) for r in recs]

    async def list_for(self, client_id: str) -> list[Stream]:
        return [s for s in await self.all() if s.client_id == client_id]

    async def get(self, client_id: str, stream_id: Any) -> Stream:
        """The caller's stream, or 404 (another client's stream is not found either)."""
        if not isinstance(stream_id, str) or not stream_id:
            raise StreamError("stream_id is required")
        if len(stream_id) > 64:
            raise StreamError("stream_id is at most 64 characters")
        rec = await self.store.get_record(KIND, stream_id, now=self.clock.now())
        if rec is None or rec.data.get("client_id") != client_id:
            raise NotFound(f"no stream {stream_id!r}")
        return Stream.from_record(rec)

    def _check_body(self, body: Any, *, replace: bool) -> Mapping[str, Any]:
        if not isinstance(body, dict):
            raise StreamError("the body must be a JSON object")
        unknown = set(body) - _RECEIVER_FIELDS - _TRANSMITTER_FIELDS
        if unknown:
            raise StreamError(f"unknown stream property {sorted(unknown)[0]!r}")
        if replace and "delivery" not in body:
            raise StreamError("delivery is required")
        return body

    async def _delivery(self, body: Mapping[str, Any]) -> Delivery | None:
        """The body's delivery, its push URL checked against the outbound rules (resolved off
        the event loop)."""
        if "delivery" not in body:
            return None
        method, url, auth = _delivery(body["delivery"])
        if url is not None:
            try:
                await asyncio.to_thread(check_target, url, allow_private=self.allow_private)
            except OutboundRefused as exc:
                raise StreamError(f"delivery.endpoint_url is refused: {exc}") from None
        return method, url, auth

    def _apply(
        self,
        stream: Stream,
        body: Mapping[str, Any],
        delivery: Delivery | None,
        *,
        replace: bool,
    ) -> None:
        if replace:
            stream.events_requested = []
            stream.description = None
        if "events_requested" in body:
            stream.events_requested = _events(body["events_requested"])
        if "description" in body:
            d = body["description"]
            stream.description = None if d is None else _text(d, "description")
        if delivery is not None:
            method, url, auth = delivery
            if replace or method != stream.method or url is not None:
                stream.method, stream.endpoint_url = method, url
                stream.authorization_header = auth

    async def create(self, client_id: str, body: Any) -> Stream:
        body = self._check_body(body, replace=True)
        if "stream_id" in body:
            raise StreamError("stream_id is assigned by the transmitter")
        now = self.clock.now()
        stream = Stream(
            secrets.token_urlsafe(16), client_id, POLL, None, created_at=now, iss=self.issuer
        )
        self._apply(stream, body, await self._delivery(body), replace=True)
        existing = await self.all()
        if len(existing) >= MAX_STREAMS:
            raise StreamError("this transmitter has as many streams as it keeps")
        if sum(1 for s in existing if s.client_id == client_id) >= MAX_STREAMS_PER_CLIENT:
            raise StreamError(f"a client may have at most {MAX_STREAMS_PER_CLIENT} streams")
        rec = GrantRecord(KIND, stream.stream_id, _OWNER, stream.to_data(), None)
        await self.store.create_record(rec, now=now)
        return stream

    async def update(self, client_id: str, body: Any, *, replace: bool) -> Stream:
        """PATCH (``replace=False``: the given properties) or PUT (the whole configuration)."""
        body = self._check_body(body, replace=replace)
        stream_id = body.get("stream_id")
        await self.get(client_id, stream_id)  # 404 before any other answer
        delivery = await self._delivery(body)

        def change(s: Stream) -> None:
            self._apply(s, body, delivery, replace=replace)

        return await self.modify(client_id, stream_id, change)

    async def modify(self, client_id: str, stream_id: Any, change: Any) -> Stream:
        """Read, ``change(stream)``, compare-and-set; retried when it raced another write."""
        for _ in range(8):
            stream = await self.get(client_id, stream_id)
            change(stream)
            stream.active_at = self.clock.now()
            rec = GrantRecord(KIND, stream.stream_id, _OWNER, stream.to_data(), None)
            rec.version = stream.version
            if await self.store.update_record(rec, now=self.clock.now()):
                stream.version += 1
                return stream
            await asyncio.sleep(0)
        raise StreamError("the stream is being changed concurrently; try again")

    async def touch(self, stream: Stream) -> None:
        """Record that the receiver polled (a write at most once per :data:`_TOUCH_EVERY`)."""
        now = self.clock.now()
        if now - max(stream.active_at, stream.created_at) < _TOUCH_EVERY:
            return
        stream.active_at = now
        rec = GrantRecord(KIND, stream.stream_id, _OWNER, stream.to_data(), None)
        rec.version = stream.version
        if await self.store.update_record(rec, now=now):  # lost a race: another write won
            stream.version += 1

    async def expire(self, stream: Stream) -> bool:
        """Delete an inactive stream (any client's); ``True`` when this call deleted it."""
        return await self.store.delete_record(KIND, stream.stream_id)

    async def delete(self, client_id: str, stream_id: Any) -> Stream:
        stream = await self.get(client_id, stream_id)
        await self.store.delete_record(KIND, stream.stream_id)
        return stream

    async def set_status(
        self, client_id: str, stream_id: Any, status: Any, reason: Any
    ) -> tuple[Stream, str]:
        """The stream after the change, and its status before."""
        if status not in STATUSES:
            raise StreamError(f"status must be one of {', '.join(STATUSES)}")
        if reason is not None:
            reason = _text(reason, "reason")
        before: list[str] = []

        def change(s: Stream) -> None:
            before.append(s.status)
            s.status, s.reason = str(status), reason

        stream = await self.modify(client_id, stream_id, change)
        return stream, before[-1]

    async def subjects(self, client_id: str, body: Any, *, add: bool) -> Stream:
        if not isinstance(body, dict):
            raise StreamError("the body must be a JSON object")
        unknown = set(body) - {"stream_id", "subject", "verified"}
        if unknown:
            raise StreamError(f"unknown property {sorted(unknown)[0]!r}")
        if "verified" in body and not isinstance(body["verified"], bool):
            raise StreamError("verified must be true or false")
        subject = body.get("subject")
        everything = is_all(subject)
        key = None if everything else subject_key(subject, issuer=self.issuer)

        def change(s: Stream) -> None:
            if everything:
                s.all_subjects, s.subjects, s.excluded = add, [], []
                return
            assert key is not None
            # on an ALL stream, adding takes the subject out of the exclusions and removing
            # excludes it; on a NONE stream, adding includes it and removing drops it
            if s.all_subjects:
                (_discard if add else _append)(s.excluded, key)
            else:
                (_append if add else _discard)(s.subjects, key)

        return await self.modify(client_id, body.get("stream_id"), change)

    async def mark_verified(self, client_id: str, stream_id: Any) -> Stream:
        """Record a verification request; 429 when asked within the minimum interval."""
        now = self.clock.now()

        def change(s: Stream) -> None:
            if now - s.verified_at < MIN_VERIFICATION_INTERVAL:
                wait = int(MIN_VERIFICATION_INTERVAL - (now - s.verified_at)) + 1
                raise RateLimited("verification was requested too recently", retry_after=wait)
            s.verified_at = now

        return await self.modify(client_id, stream_id, change)


def _append(items: list[str], key: str) -> None:
    if key in items:
        return
    if len(items) >= MAX_SUBJECTS:
        raise StreamError(f"a stream holds at most {MAX_SUBJECTS} subjects")
    items.append(key)


def _discard(items: list[str], key: str) -> None:
    if key in items:
        items.remove(key)
