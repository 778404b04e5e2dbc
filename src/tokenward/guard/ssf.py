"""Shared Signals by poll (RFC 8936): the guard's other revocation source.

Instead of a tokenward server's ``GET /revocations`` feed, the guard's mirror can read Security
Event Tokens from an SSF transmitter's poll endpoint (OpenID SSF 1.0, delivery method
``urn:ietf:rfc:8936``), so a tokenward guard can sit behind any transmitter::

    Verifier(jwks_url=..., issuer=..., audience=...,
             revocation=SSFPoll(issuer=TRANSMITTER, token_url=..., client_id=...,
                                client_secret=...))

**One poll** (RFC 8936 §2.4) is ``POST poll_url`` with a bearer token (a static ``token``, or
one obtained by ``client_credentials`` at ``token_url``, renewed before it expires and once more
on a 401) and ``{"maxEvents", "returnImmediately", "ack", "setErrs"}``; the answer is ``{"sets":
{jti: SET}, "moreAvailable"}``. Each SET is checked by :func:`tokenward.secevent.verify_set`
(signature by a key of the transmitter's JWK Set — ``jwks_url``, or the ``jwks_uri`` of its
``/.well-known/ssf-configuration`` — ``typ``, ``iss``, ``aud``, one event), applied to the
mirror's :class:`~tokenward.revocation.Denylist`, and only then acknowledged, in the next poll;
a refused SET is reported in ``setErrs`` with its RFC 8935 §2.3 code. Acks and errors are kept
until a poll carrying them is answered 200, so a failed poll loses none. ``jti`` values seen
recently (bounded) are acknowledged again without being applied twice.

**What each event does** (the subject is matched as tokenward's tokens carry it: a session's
opaque id is the token's ``sid``; an ``iss_sub`` user whose ``iss`` is the access tokens'
issuer is the token's ``sub``; any other subject is acknowledged and ignored):

* CAEP ``session-revoked`` → deny the ``sid``; without a session, deny the user's tokens issued
  before ``event_timestamp`` (every session of that user);
* RISC ``sessions-revoked``, ``account-disabled``, CAEP ``credential-change`` and
  ``token-claims-change`` → deny the user's tokens issued before ``event_timestamp`` (the
  subject watermark of the feed's ``sub`` revocation); a session-only subject denies the
  ``sid``. For ``token-claims-change`` this makes clients refresh: an access token carries the
  claims that changed, and the guard cannot re-evaluate them;
* RISC ``account-enabled`` → nothing: tokens issued after the disabling were never denied, and
  tokens from before it stay denied (a watermark is never lifted);
* any other event type → acknowledged, nothing applied.

A denial is kept ``token_lifetime`` plus the verifier's leeway (an access token issued just
before the event lives at most that long). The watermark is ``min(event_timestamp, now)``: a
transmitter's clock ahead of ours cannot refuse tokens issued after the event. ``iat`` has
one-second resolution: the events that end a user's sessions (``session-revoked`` of a user,
``sessions-revoked``, ``account-disabled``) refuse the tokens of the event's own second too —
SSF carries no per-session events that would cover them, as the feed's ``sid`` events do — so a
sign-in within that same second is refused until the next one; ``credential-change`` and
``token-claims-change`` keep the feed's rule, so the tokens a user gets right after changing a
password are accepted.

**Staleness.** Every poll answered 200 whose SETs were all applied or refused is a heartbeat
(:meth:`~tokenward.mirror.RevocationMirror.mark_synced`), even an empty one: the one rule of
:mod:`tokenward.mirror` then makes the guard answer 503 past ``max_staleness`` without one.
A SET signed with a key the transmitter's JWKS does not (yet) list is left unacknowledged and
the poll is not a heartbeat, until the key set is fetched again (at most once per cooldown);
if the key is still unknown after a successful fetch the SET is refused with ``invalid_key``.

**Pacing.** The first poll asks ``returnImmediately: true``; the next ones ``false`` (the
transmitter may hold the request until events arrive, RFC 8936 §2.4) unless
``return_immediately``. RFC 8936 gives the receiver no way to say how long it may be held, so
the read timeout allows ``wait`` seconds (half of ``max_staleness``: 30 s, what tokenward's
transmitter holds by default) plus ``http_timeout``; a transmitter that holds longer makes that
poll time out (a failure, not a heartbeat: unacknowledged SETs are delivered again) and the
source switches to ``returnImmediately: true`` for good. A poll answered with no SETs sooner
than ``interval`` seconds waits out the rest of the interval, so a transmitter that never holds
polls is asked once per ``interval``.

**One stream per process.** A stream's SETs are a queue: the first poller to acknowledge a SET
removes it (RFC 8936 §2.4), so workers sharing one stream would each see only some of the
revocations. Without ``poll_url`` every process therefore creates its own poll stream at the
transmitter's ``configuration_endpoint`` (SSF 1.0 §8.1.1; ``events_requested`` = the event
types above) on its first poll, polls it with no state shared with other processes, and deletes
it when the guard closes (a stream the transmitter dropped — a poll answered 404 — is created
again). ``poll_url`` names a stream made beforehand, for an application of one process; at
close the pending acks are sent with ``maxEvents: 0`` (RFC 8936 §2.4.1).

SSF has no snapshot: a new stream carries only the events after its creation, so a process that
starts after a revocation does not learn it (its tokens live until ``exp``), unlike the
tokenward feed, whose first answer is every live revocation.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import KW_ONLY, dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import httpx
import orjson

from .._logging import get_logger
from ..clock import Clock, system_clock
from ..errors import ConfigurationError, StoreUnavailable, TokenwardError
from ..events import log_quietly
from ..feed import RevocationEvent, RevocationKind
from ..jws import JWSVerifier, b64url_decode, parse_json_object
from ..keys import SigningKey
from ..mirror import RevocationMirror, RevocationSource
from ..secevent import (
    ACCOUNT_DISABLED,
    CREDENTIAL_CHANGE,
    SESSION_REVOKED,
    SESSIONS_REVOKED,
    TOKEN_CLAIMS_CHANGE,
    InvalidSET,
    set_verifier,
    subject_of,
    verify_set,
)
from .jwks import JWKSFetcher

__all__ = ["POLL_DELIVERY", "SSFPoll", "SSFPollSource"]

_log = get_logger("tokenward.guard.ssf")

#: the SSF 1.0 delivery method of RFC 8936 poll
POLL_DELIVERY = "urn:ietf:rfc:8936"

_USER_EVENTS = frozenset(
    {SESSIONS_REVOKED, ACCOUNT_DISABLED, CREDENTIAL_CHANGE, TOKEN_CLAIMS_CHANGE}
)
_ENDING_USER_EVENTS = frozenset({SESSION_REVOKED, SESSIONS_REVOKED, ACCOUNT_DISABLED})
#: the event types this source acts on (requested when it creates its own stream)
_REQUESTED = _USER_EVENTS | {SESSION_REVOKED}
_SEEN_MAX = 10_000
_MAX_BODY = 4 * 1024 * 1024


def _http_url(url: str, name: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.netloc:
        raise ConfigurationError(f"{name} must be an http(s) URL")
    return url


@dataclass(frozen=True)
class SSFPoll:
    """How the guard reads Shared Signals by poll: ``Verifier(..., revocation=SSFPoll(...))``
    (or, in a Flask/Django settings dict, ``"revocation": {"poll_url": ..., ...}``).

    * ``poll_url`` — the RFC 8936 endpoint of a stream made for this guard (its
      ``delivery.endpoint_url``), for an application of ONE process: a stream's SETs go to
      whoever polls and acknowledges them first. Without it each process creates its own
      poll stream at the transmitter's ``configuration_endpoint`` (SSF 1.0 §8.1.1) when it
      starts and deletes it when it closes — what a multi-worker application needs;
    * ``issuer`` — the transmitter's issuer, the ``iss`` of its SETs;
    * ``audience`` — this receiver, as the stream's SETs name it in ``aud`` (required with
      ``poll_url``; by default the ``aud`` of the stream the guard creates);
    * ``jwks_url`` — the transmitter's JWK Set; by default the ``jwks_uri`` of
      ``<issuer>/.well-known/ssf-configuration`` (SSF 1.0 §7.2);
    * ``token`` — a static bearer token for the poll endpoint; or ``token_url``,
      ``client_id``, ``client_secret`` (and ``scope``, ``ssf`` by default): a
      ``client_credentials`` grant (RFC 6749 §4.4, ``client_secret_basic``);
    * ``max_events`` per poll; ``return_immediately`` (never hold a poll); ``interval`` —
      seconds between two polls that found nothing; ``token_lifetime`` — the longest lifetime
      of the access tokens this guard accepts (how long a denial is kept, plus the leeway).
    """

    poll_url: str | None = None
    _: KW_ONLY
    issuer: str
    audience: str | None = None
    jwks_url: str | None = None
    token: str | None = field(default=None, repr=False)
    token_url: str | None = None
    client_id: str | None = None
    client_secret: str | None = field(default=None, repr=False)
    scope: str = "ssf"
    max_events: int = 100
    return_immediately: bool = False
    interval: float = 1.0
    token_lifetime: float = 3600.0

    def __post_init__(self) -> None:
        if self.poll_url is not None:
            _http_url(self.poll_url, "poll_url")
            if not self.audience:
                raise ConfigurationError("SSFPoll with a poll_url needs our audience")
        if self.jwks_url is not None:
            _http_url(self.jwks_url, "the SSF jwks_url")
        if not self.issuer:
            raise ConfigurationError("SSFPoll needs the transmitter's issuer")
        _http_url(self.issuer, "the SSF issuer")
        grant = (self.token_url, self.client_id, self.client_secret)
        if self.token is not None:
            if not self.token or any(v is not None for v in grant):
                raise ConfigurationError("SSFPoll: give either token or client credentials")
        elif not all(grant):
            raise ConfigurationError(
                "SSFPoll needs a token, or token_url, client_id and client_secret"
            )
        else:
            _http_url(str(self.token_url), "token_url")
        if type(self.max_events) is not int or not 1 <= self.max_events <= 10_000:
            raise ConfigurationError("max_events must be an integer from 1 to 10000")
        if not (self.interval > 0 and math.isfinite(self.interval)):
            raise ConfigurationError("interval must be a positive number of seconds")
        if not (self.token_lifetime > 0 and math.isfinite(self.token_lifetime)):
            raise ConfigurationError("token_lifetime must be a positive number of seconds")

    @classmethod
    def of(cls, value: SSFPoll | Mapping[str, Any]) -> SSFPoll:
        """An :class:`SSFPoll`, or one built from a mapping of its fields (settings files)."""
        if isinstance(value, SSFPoll):
            return value
        if isinstance(value, Mapping):
            try:
                return cls(**value)
            except TypeError as exc:
                raise ConfigurationError(f"revocation settings: {exc}") from None
        raise ConfigurationError("revocation must be an SSFPoll (or a mapping of its fields)")


class SSFPollSource(RevocationSource):
    """The :class:`~tokenward.mirror.RevocationSource` polling one SSF stream (RFC 8936)."""

    def __init__(
        self,
        config: SSFPoll,
        *,
        token_issuer: str,
        leeway: float,
        wait: float,
        clock: Clock = system_clock,
        http_timeout: float = 2.0,
        jwks_cooldown: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if http_timeout <= 0 or wait < 0:
            raise ConfigurationError("http_timeout must be positive and wait not negative")
        self.config = config
        self.token_issuer = token_issuer
        self.keep = config.token_lifetime + max(0.0, leeway)
        self.wait = float(wait)
        #: ``False`` once a held poll outlasted ``wait``: every poll returns immediately then
        self.holding = not config.return_immediately
        self.clock = clock
        self.http_timeout = float(http_timeout)
        self.jwks_cooldown = float(jwks_cooldown)
        self._transport = transport
        self._client: httpx.AsyncClient | None = None
        self._jwks: JWKSFetcher | None = None
        self._ssf_configuration: dict[str, Any] | None = None
        #: the stream this process created (``None`` with a configured ``poll_url``)
        self.stream_id: str | None = None
        self._closing = False  # set by finish(): no new stream, no new poll
        self._poll_url = config.poll_url
        self._audience = config.audience
        self._keys: JWSVerifier | None = None
        self._bearer: str | None = None
        self._bearer_until = -math.inf
        # RFC 8936 §2.4: what the next poll acknowledges / reports as refused
        self._acks: dict[str, None] = {}
        self._errs: dict[str, dict[str, str]] = {}
        # recent jti -> None (acknowledged) or its setErrs entry, for redeliveries
        self._seen: OrderedDict[str, dict[str, str] | None] = OrderedDict()
        self.polls = 0
        self.sets_applied = 0
        self.sets_ignored = 0
        self.sets_refused = 0
        self.duplicates = 0
        self.acks_sent = 0

    @property
    def url(self) -> str | None:
        return self._poll_url

    @property
    def pending_acks(self) -> list[str]:
        return list(self._acks)

    @property
    def pending_errors(self) -> dict[str, dict[str, str]]:
        return dict(self._errs)

    def status(self) -> dict[str, Any]:
        return {
            "stream_id": self.stream_id,
            "polls": self.polls,
            "sets_applied": self.sets_applied,
            "sets_ignored": self.sets_ignored,
            "sets_refused": self.sets_refused,
            "duplicates": self.duplicates,
            "acks_sent": self.acks_sent,
            "held_polls": self.holding,
            "pending_acks": len(self._acks),
        }

    # -- the mirror's step -----------------------------------------------------------------
    async def sync(self, mirror: RevocationMirror) -> int:
        was_synced = mirror.synced
        immediate = not self.holding or not was_synced
        started = time.monotonic()
        sets, more = await self.poll_once(immediate=immediate)
        applied, deferred = await self._handle(mirror, sets)
        if deferred:
            raise StoreUnavailable(
                f"{deferred} SET(s) signed with a key the transmitter's JWKS does not list yet"
            )
        mirror.mark_synced()  # the heartbeat: every SET of this answer applied or refused
        if not sets and not more and was_synced:
            rest = self.config.interval - (time.monotonic() - started)
            if rest > 0:
                await asyncio.sleep(rest)
        return applied

    # -- HTTP ------------------------------------------------------------------------------
    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                transport=self._transport, timeout=self.http_timeout, follow_redirects=False
            )
        return self._client

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()
        if self._jwks is not None:
            await self._jwks.aclose()

    async def poll_once(self, *, immediate: bool = True) -> tuple[dict[str, Any], bool]:
        """One RFC 8936 poll carrying the pending acks and errors; returns the ``sets``
        object and ``moreAvailable``. Raises on any answer but a well-formed 200."""
        if self._closing:
            raise StoreUnavailable("the guard is closing")
        url = self._poll_url or await self._create_stream()
        acks, errs = list(self._acks), dict(self._errs)
        body: dict[str, Any] = {
            "maxEvents": self.config.max_events,
            "returnImmediately": immediate,
        }
        if acks:
            body["ack"] = acks
        if errs:
            body["setErrs"] = errs
        read = self.http_timeout if immediate else self.wait + self.http_timeout
        try:
            resp = await self._authorized("POST", url, orjson.dumps(body), read)
        except httpx.ReadTimeout:
            if not immediate:  # held longer than we may wait: ask to be answered at once
                self.holding = False
                log_quietly(_log, "warning", "ssf_poll_held_too_long", wait=self.wait)
            raise
        self.polls += 1
        if resp.status_code == 404 and self.stream_id is not None:
            self._forget_stream()  # the transmitter dropped our stream: a new one next time
            raise StoreUnavailable("the SSF stream is gone; creating a new one")
        if resp.status_code != 200:
            raise StoreUnavailable(f"SSF poll endpoint answered HTTP {resp.status_code}")
        for jti in acks:
            self._acks.pop(jti, None)
        for jti in errs:
            self._errs.pop(jti, None)
        self.acks_sent += len(acks)
        if len(resp.content) > _MAX_BODY:
            raise ValueError("poll answer too large")
        doc = orjson.loads(resp.content)
        if not isinstance(doc, dict) or not isinstance(doc.get("sets"), dict):
            raise ValueError("poll answer has no 'sets' object")
        more = doc.get("moreAvailable", False)
        if type(more) is not bool:
            raise ValueError("poll answer's 'moreAvailable' is not a boolean")
        return doc["sets"], more

    async def _authorized(
        self, method: str, url: str, content: bytes | None = None, read: float | None = None
    ) -> httpx.Response:
        timeout = httpx.Timeout(self.http_timeout, read=read or self.http_timeout)
        headers = {"Accept": "application/json"}
        if content is not None:
            headers["Content-Type"] = "application/json"
        for attempt in (1, 2):
            bearer = await self._bearer_token(renew=attempt == 2)
            headers["Authorization"] = "Bearer " + bearer
            resp = await self._http().request(
                method, url, content=content, headers=headers, timeout=timeout
            )
            if resp.status_code not in (401, 403):
                return resp
            if attempt == 1 and self.config.token is None and resp.status_code == 401:
                continue  # the token may have been revoked or expired early: a new one
            break
        raise ConfigurationError(
            f"the SSF transmitter refused the bearer token (HTTP {resp.status_code})"
        )

    async def _bearer_token(self, *, renew: bool) -> str:
        if self.config.token is not None:
            return self.config.token
        if not renew and self._bearer is not None and self.clock.now() < self._bearer_until:
            return self._bearer
        cfg = self.config
        form = {"grant_type": "client_credentials"}
        if cfg.scope:
            form["scope"] = cfg.scope
        resp = await self._http().post(
            str(cfg.token_url),
            data=form,
            headers={"Accept": "application/json"},
            # RFC 6749 §2.3.1: client_secret_basic form-urlencodes both parts
            auth=httpx.BasicAuth(
                quote(str(cfg.client_id), safe=""), quote(str(cfg.client_secret), safe="")
            ),
        )
        if resp.status_code >= 500 or resp.status_code == 429:
            raise StoreUnavailable(f"token endpoint answered HTTP {resp.status_code}")
        doc = _json_or_none(resp)
        if resp.status_code != 200 or not isinstance(doc, dict):
            code = doc.get("error") if isinstance(doc, dict) else None
            raise ConfigurationError(
                f"token endpoint refused the SSF client credentials (HTTP {resp.status_code}"
                + (f", {code}" if type(code) is str else "")
                + ")"
            )
        token, kind, ttl = doc.get("access_token"), doc.get("token_type"), doc.get("expires_in")
        if type(token) is not str or not token or str(kind).lower() != "bearer":
            raise ValueError("token endpoint answer has no bearer access_token")
        lifetime = 300.0
        if isinstance(ttl, int | float) and not isinstance(ttl, bool) and ttl > 0:
            lifetime = float(ttl)
        self._bearer = token
        self._bearer_until = self.clock.now() + lifetime * 0.8  # renew before it expires
        return token

    # -- the transmitter's keys ------------------------------------------------------------
    async def _ensure_keys(self) -> JWKSFetcher:
        if self._jwks is None:
            url = self.config.jwks_url or await self._discover_jwks_uri()
            self._jwks = JWKSFetcher(
                url,
                on_keys=self._set_keys,
                clock=self.clock,
                http_timeout=self.http_timeout,
                cooldown=self.jwks_cooldown,
                transport=self._transport,
            )
        jwks = self._jwks
        if self.clock.now() >= jwks.expires_at:  # a failed fetch is retried after a pause
            await jwks.fetch()
        if self._keys is None:
            raise StoreUnavailable("the SSF transmitter's JWKS could not be fetched")
        return jwks

    def _set_keys(self, keys: list[SigningKey]) -> None:
        self._keys = set_verifier(keys)

    async def _configuration(self) -> dict[str, Any]:
        """The transmitter's SSF configuration (SSF 1.0 §7.2.1: the well-known segment goes
        between the host and the issuer's path), fetched once; its ``issuer`` must be ours."""
        if self._ssf_configuration is not None:
            return self._ssf_configuration
        parts = urlsplit(self.config.issuer)
        path = "/.well-known/ssf-configuration" + parts.path.rstrip("/")
        url = urlunsplit((parts.scheme, parts.netloc, path, "", ""))
        resp = await self._http().get(url, headers={"Accept": "application/json"})
        if resp.status_code != 200:
            raise StoreUnavailable(f"SSF configuration answered HTTP {resp.status_code}")
        doc = _json_or_none(resp)
        if not isinstance(doc, dict) or doc.get("issuer") != self.config.issuer:
            raise ConfigurationError("the SSF configuration does not name the configured issuer")
        self._ssf_configuration = doc
        return doc

    async def _discover_jwks_uri(self) -> str:
        jwks_uri = (await self._configuration()).get("jwks_uri")
        if type(jwks_uri) is not str:
            raise ConfigurationError("the SSF configuration has no jwks_uri")
        return _http_url(jwks_uri, "the SSF configuration's jwks_uri")

    # -- this process's own stream (SSF 1.0 §8.1.1) ----------------------------------------
    async def _create_stream(self) -> str:
        """Create a poll stream for this process; returns its poll URL."""
        endpoint = (await self._configuration()).get("configuration_endpoint")
        if type(endpoint) is not str:
            raise ConfigurationError(
                "the SSF configuration has no configuration_endpoint: set poll_url"
            )
        _http_url(endpoint, "the SSF configuration_endpoint")
        request = {
            "delivery": {"method": POLL_DELIVERY},
            "events_requested": sorted(_REQUESTED),
            "description": "tokenward guard",
        }
        resp = await self._authorized("POST", endpoint, orjson.dumps(request))
        if resp.status_code >= 500 or resp.status_code == 429:
            raise StoreUnavailable(f"SSF stream creation answered HTTP {resp.status_code}")
        doc = _json_or_none(resp)
        if resp.status_code not in (200, 201) or not isinstance(doc, dict):
            raise ConfigurationError(
                f"the SSF transmitter refused a poll stream ({resp.status_code})"
            )
        stream_id, delivery = doc.get("stream_id"), doc.get("delivery")
        url = delivery.get("endpoint_url") if isinstance(delivery, dict) else None
        if type(stream_id) is not str or not stream_id or type(url) is not str:
            raise ValueError("stream configuration without stream_id or delivery.endpoint_url")
        aud = doc.get("aud")
        auds = [aud] if type(aud) is str else aud if isinstance(aud, list) else []
        if self._audience is None:
            if not auds or type(auds[0]) is not str:
                raise ConfigurationError("the SSF stream names no aud: set audience")
            self._audience = auds[0]
        elif auds and self._audience not in auds:
            raise ConfigurationError("the SSF stream's aud does not contain our audience")
        self.stream_id, self._poll_url = stream_id, _http_url(url, "the stream's endpoint_url")
        if self._closing:  # finish() ran while this stream was being created
            await self.delete_stream()
            raise StoreUnavailable("the guard is closing")
        self._acks.clear()  # acknowledgements belong to the stream they came from
        self._errs.clear()
        log_quietly(_log, "info", "ssf_stream_created", stream_id=stream_id)
        return url

    def _forget_stream(self) -> None:
        self.stream_id = None
        self._poll_url = None
        self._acks.clear()
        self._errs.clear()

    async def finish(self) -> None:
        """At close: delete the stream this process created, or else send the pending
        acknowledgements (``maxEvents: 0``, RFC 8936 §2.4.1); never raises."""
        self._closing = True
        if self.stream_id is not None:
            await self.delete_stream()
            return
        if not (self._acks or self._errs) or self._poll_url is None:
            return
        body: dict[str, Any] = {"maxEvents": 0, "returnImmediately": True}
        acks, errs = list(self._acks), dict(self._errs)
        if acks:
            body["ack"] = acks
        if errs:
            body["setErrs"] = errs
        try:
            resp = await self._authorized("POST", self._poll_url, orjson.dumps(body))
        except Exception as exc:  # unacknowledged SETs are delivered again: harmless
            log_quietly(_log, "warning", "ssf_final_ack_failed", error=type(exc).__name__)
            return
        if resp.status_code == 200:
            self.acks_sent += len(acks)
            for jti in acks:
                self._acks.pop(jti, None)
            for jti in errs:
                self._errs.pop(jti, None)

    async def delete_stream(self) -> None:
        """Delete the stream this process created; never raises."""
        stream_id, endpoint = (
            self.stream_id,
            (self._ssf_configuration or {}).get("configuration_endpoint"),
        )
        if stream_id is None or type(endpoint) is not str:
            return
        self._forget_stream()
        url = str(httpx.URL(endpoint).copy_merge_params({"stream_id": stream_id}))
        try:
            resp = await self._authorized("DELETE", url)
        except Exception as exc:  # the transmitter expires inactive streams anyway
            log_quietly(_log, "warning", "ssf_stream_delete_failed", error=type(exc).__name__)
            return
        log_quietly(
            _log, "info", "ssf_stream_deleted", stream_id=stream_id, status=resp.status_code
        )

    async def _known_kid(self, jwks: JWKSFetcher, token: str, fetches: int) -> bool | None:
        """``True``: the SET's key is known (or its header is bad: the verify says why);
        ``False``: unknown to a key set fetched since the poll was answered (``jwks.fetches``
        was ``fetches`` then); ``None``: cannot tell yet (the cooldown forbids a fetch, or it
        failed)."""
        kid = _kid(token)
        if kid is None or kid in jwks.kids:
            return True
        if jwks.fetches == fetches or jwks.last_success != jwks.last_attempt:
            if not jwks.cooldown_over():
                return None
            await jwks.fetch()
            if kid in jwks.kids:
                return True
        return False if jwks.last_success == jwks.last_attempt else None

    # -- SETs -> the denylist --------------------------------------------------------------
    async def _handle(self, mirror: RevocationMirror, sets: Mapping[str, Any]) -> tuple[int, int]:
        """Verify and apply a poll's SETs; returns (denylist entries added, SETs deferred)."""
        if not sets:
            return 0, 0
        fetches = self._jwks.fetches if self._jwks is not None else -1
        jwks = await self._ensure_keys()
        if self._audience is None:
            raise StoreUnavailable("SETs arrived before the stream's audience was known")
        now = self.clock.now()
        events: list[RevocationEvent] = []
        deferred = 0
        for jti, token in sets.items():
            if not jti or len(jti) > 256:
                continue  # cannot be acknowledged by that name either
            if jti in self._seen:
                self.duplicates += 1
                self._answer(jti, self._seen[jti])
                continue
            if type(token) is not str:
                self._refuse(jti, InvalidSET("the SET is not a string"))
                continue
            known = await self._known_kid(jwks, token, fetches)
            if known is None:
                deferred += 1
                continue
            assert self._keys is not None  # _ensure_keys
            try:
                claims = verify_set(
                    self._keys,
                    token,
                    issuer=self.config.issuer,
                    audience=self._audience,
                )
                if claims["jti"] != jti:
                    raise InvalidSET("the SET's jti is not the name it was delivered under")
            except InvalidSET as exc:
                self._refuse(jti, exc)
                continue
            found = self._revocations(claims, now)
            if found:
                events.extend(found)
                self.sets_applied += 1
            else:
                self.sets_ignored += 1
            self._answer(jti, None)
        if events:
            mirror.denylist.apply(events, advance=False)
            mirror.events_applied += len(events)
            mirror.last_lag = now - min(e.at for e in events)
        return len(events), deferred

    def _answer(self, jti: str, err: dict[str, str] | None) -> None:
        if err is None:
            self._acks[jti] = None
        else:
            self._errs[jti] = err
        self._seen[jti] = err
        self._seen.move_to_end(jti)
        while len(self._seen) > _SEEN_MAX:
            self._seen.popitem(last=False)

    def _refuse(self, jti: str, exc: InvalidSET) -> None:
        self.sets_refused += 1
        log_quietly(_log, "warning", "ssf_set_refused", err=exc.set_error, reason=exc.description)
        self._answer(jti, {"err": exc.set_error, "description": exc.description})

    def _revocations(self, claims: Mapping[str, Any], now: float) -> list[RevocationEvent]:
        ((event_type, body),) = claims["events"].items()
        subject = subject_of(claims)
        user = (
            subject.user[1]
            if subject.user is not None and subject.user[0] == self.token_issuer
            else None
        )
        stamp = body.get("event_timestamp")
        if (
            not isinstance(stamp, int | float)
            or isinstance(stamp, bool)
            or not math.isfinite(stamp)
        ):
            stamp = claims["iat"]
        at = min(float(stamp), now)
        until = now + self.keep
        sid = RevocationEvent(0, RevocationKind.SID, subject.sid or "", until, at)
        # the watermark refuses iat < int(at); an event that ends sessions covers its own
        # second too (iat <= int(at)): SSF sends no per-session events for the tokens a user's
        # sessions minted in that second, which the feed's sid events cover
        ending = event_type in _ENDING_USER_EVENTS
        mark = math.floor(at) + 1 if ending else at
        sub = RevocationEvent(0, RevocationKind.SUB, user or "", until, mark)
        if event_type == SESSION_REVOKED:
            return [sid] if subject.sid else [sub] if user else []
        if event_type in _USER_EVENTS:
            return [sub] if user else [sid] if subject.sid else []
        return []  # account-enabled and event types that revoke nothing


def _kid(token: str) -> str | None:
    try:
        header = parse_json_object(b64url_decode(token.partition(".")[0]), "JOSE header")
    except TokenwardError:
        return None
    kid = header.get("kid")
    return kid if type(kid) is str and kid and len(kid) <= 256 else None


def _json_or_none(resp: httpx.Response) -> Any:
    try:
        return orjson.loads(resp.content)
    except orjson.JSONDecodeError:
        return None
