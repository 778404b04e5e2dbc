"""The risk engine in the server: it runs on every sign-in, refresh and ``/userinfo`` call, and
the server carries out what its :class:`~tokenward.server.risk.Decision` says.

* refresh: :func:`refresh_check` runs inside the session manager's family check, right after
  the credential watermark (before rotating), with the caller's address and user-agent that the
  refresh grant put in :data:`request_context`;
* ``/userinfo``: :func:`access_used`, the route's one call (in memory unless a decision fires);
* sign-in: :func:`check_block` before the login throttle, :func:`sign_in_failed` after a
  wrong password, :func:`signed_in` after the session started (:func:`page_signed_in` at the
  browser sign-in pages, before their sign-in session starts).

Actions: ``log`` a log line; ``flag`` (and every stronger action) a ``risk_decision`` security
event with the signals, scores, reasons and actions (the console's live view shows it);
``notify`` is recorded in that event (no outbound transmitter is wired yet); ``step_up``
revokes the family's refresh tokens *without* denylisting its ``sid`` (access tokens live out
their lifetime) and fails the refresh with ``invalid_grant`` saying why; ``revoke_session``
revokes the family and denylists its ``sid``; both end the browser sign-in session that started
the family (the next ``prompt=none`` answers ``login_required``); ``revoke_subject`` ends every
session and browser sign-in session of the user; ``block_prefix`` refuses sign-ins from the
address prefix for ``risk_block_seconds`` (kept in the store's attempt counters, so every
instance sharing the store refuses them).
"""

from __future__ import annotations

import hashlib
from contextvars import ContextVar
from typing import TYPE_CHECKING

import structlog

from ..errors import InvalidToken, RateLimited, RiskRefused
from ..events import emit, log_quietly
from ..store.base import Family
from .risk import Decision, RiskPolicy

if TYPE_CHECKING:
    from ..claims import AccessTokenClaims
    from .runtime import Runtime
    from .settings import Settings

__all__ = [
    "RISK_EVENT",
    "access_used",
    "check_block",
    "page_signed_in",
    "policy_from_settings",
    "refresh_check",
    "request_context",
    "sign_in_failed",
    "signed_in",
]

RISK_EVENT = "risk_decision"
_log = structlog.get_logger("tokenward.risk")

#: ``(address, user_agent)`` of the request being handled (set by the refresh grant).
request_context: ContextVar[tuple[str | None, str | None] | None] = ContextVar(
    "tokenward_risk_request", default=None
)


def policy_from_settings(s: Settings) -> RiskPolicy:
    from .risk import SIGNALS, parse_actions

    return RiskPolicy(
        actions={name: parse_actions(getattr(s, f"risk_{name}")) for name in SIGNALS},
        concurrent_window=s.risk_concurrent_window,
        velocity_window=s.risk_velocity_window,
        velocity_max=s.risk_velocity_max,
        stuffing_window=s.risk_stuffing_window,
        stuffing_usernames=s.risk_stuffing_usernames,
        spraying_window=s.risk_spraying_window,
        spraying_usernames=s.risk_spraying_usernames,
        block_seconds=s.risk_block_seconds,
        retention=s.risk_retention,
    )


def _block_key(prefix: str) -> str:
    return "risk-block:" + hashlib.sha256(prefix.encode()).hexdigest()[:32]


async def check_block(rt: Runtime, address: str | None) -> None:
    """Refuse a sign-in from a blocked prefix (429 with ``Retry-After``)."""
    if rt.risk is None or not address:
        return
    prefix = rt.risk.prefix_of(address)
    now = rt.clock.now()
    n, oldest = await rt.store.rate_window(
        _block_key(prefix), now=now, window=rt.risk.policy.block_seconds
    )
    if n:
        retry = max(1, int(oldest - now) + 1)
        raise RateLimited(
            "sign-ins from this network are blocked for a while (many failed sign-ins)",
            retry_after=retry,
        )


async def _apply(
    rt: Runtime,
    decision: Decision,
    *,
    stage: str,
    sid: str | None = None,
    sub: str | None = None,
    client_id: str | None = None,
) -> str | None:
    """Carry out ``decision``; returns the refusal text when the request must fail."""
    if not decision:
        return None
    fields = decision.event_fields()
    acts = set(decision.actions)
    if acts - {"log"}:
        emit(RISK_EVENT, stage=stage, sid=sid, sub=sub, client_id=client_id, **fields)
    else:
        log_quietly(_log, "info", "risk_signal", stage=stage, sid=sid, sub=sub, **fields)
    now = rt.clock.now()
    if "block_prefix" in acts and decision.prefix and decision.prefix != "unknown":
        await rt.store.rate_hit(
            _block_key(decision.prefix),
            now=now,
            window=rt.risk.policy.block_seconds if rt.risk else 900.0,
            limit=1,
        )
    first = decision.signals[0].name
    ending = acts & {"step_up", "revoke_session", "revoke_subject"}
    if rt.risk is not None and sub is not None:
        if ending:
            rt.risk.notify_user(sub, f"session ended: {decision.reason}")
        elif stage == "sign_in" and first == "new_device":
            rt.risk.notify_user(sub, decision.reason)
    if ending and rt.risk is not None and sid is not None:
        rt.risk.forget_family(sid)
    if "revoke_subject" in acts and sub is not None:
        # every family and every browser sign-in session of the user, with back-channel logout
        await rt.end_user_sessions(sub)
        return f"session ended: {decision.reason}"
    if "revoke_session" in acts and sid is not None:
        await rt.sessions.revoke_session(sid, reason=f"risk_{first}")
        await _end_signin(rt, sid, sub, reason=f"risk_{first}")
        return f"session ended: {decision.reason}"
    if "step_up" in acts and sid is not None:
        # the family ends; the sid is not denylisted (until=now): access tokens live on
        event = await rt.store.revoke_family(sid, now=now, reason=f"step_up_{first}", until=now)
        if event is not None:
            emit("revoked", kind="sid", value=sid, reason=f"step_up_{first}", seq=event.seq)
        await _end_signin(rt, sid, sub, reason=f"step_up_{first}")
        return f"sign in again: {decision.reason}"
    return None


async def _end_signin(rt: Runtime, sid: str, sub: str | None, *, reason: str) -> None:
    """End the browser sign-in session that started family ``sid``, so that the next
    ``prompt=none`` answers ``login_required`` (OpenID Connect Core §3.1.2.6) instead of
    silently starting a new family, and send the family's client a back-channel logout token.
    The other families that sign-in session started are not touched: each is judged on its
    own use. A store read only when a decision ends a session."""
    from .routes.logout import notify_family_ended

    if sub is None:
        return
    family = await rt.store.get_family(sid)
    if family is not None:  # before the sign-in session goes: that is where it is looked up
        await notify_family_ended(rt, family)
    for s in await rt.signins.list_for(sub):
        if sid in s.families and await rt.signins.end(s.sid) is not None:
            emit("signin_ended", sub=s.sub, sid=s.sid, reason=reason, clients=len(s.clients))


async def access_used(rt: Runtime, claims: AccessTokenClaims, address: str | None) -> None:
    """An access token presented at ``/userinfo`` by its holder at ``address``: an input of
    ``concurrent_use`` (the one call the route makes). In memory and O(1) unless a decision
    fires; then the decision is carried out like a refresh's, and one that ends the session
    (``revoke_session``, ``revoke_subject``) fails this request too, ``invalid_token`` saying
    why (after ``step_up`` access tokens live out their lifetime: the request goes on)."""
    risk = rt.risk
    if risk is None or not claims.sid:
        return
    decision = risk.on_access(sid=claims.sid, address=address)
    if not decision:
        return
    why = await _apply(
        rt, decision, stage="access", sid=claims.sid, sub=claims.sub, client_id=claims.client_id
    )
    if why is not None and (decision.has("revoke_session") or decision.has("revoke_subject")):
        raise InvalidToken(why)


async def refresh_check(rt: Runtime, family: Family) -> None:
    """The risk check of one refresh (a no-op outside a request the grant marked)."""
    ctx = request_context.get()
    if rt.risk is None or ctx is None:
        return
    address, user_agent = ctx
    decision = rt.risk.on_refresh(sid=family.sid, address=address, user_agent=user_agent)
    why = await _apply(
        rt, decision, stage="refresh", sid=family.sid, sub=family.sub, client_id=family.client_id
    )
    if why is not None:
        raise RiskRefused(why)


async def sign_in_failed(rt: Runtime, *, username: str, password: str, address: str | None) -> None:
    if rt.risk is None:
        return
    decision = rt.risk.on_sign_in_failure(username=username, password=password, address=address)
    await _apply(rt, decision, stage="sign_in_failure")


async def signed_in(
    rt: Runtime,
    *,
    sub: str,
    sid: str,
    client_id: str,
    address: str | None,
    device: str | None,
) -> None:
    """After a successful sign-in; a policy that ends the new session fails the sign-in."""
    if rt.risk is None:
        return
    decision = rt.risk.on_sign_in(sub=sub, address=address, device=device)
    why = await _apply(rt, decision, stage="sign_in", sid=sid, sub=sub, client_id=client_id)
    if why is not None:
        raise RiskRefused(why)


async def page_signed_in(
    rt: Runtime, *, sub: str, client_id: str, address: str | None
) -> str | None:
    """A correct password at a browser sign-in page (authorization code, device), before its
    sign-in session starts: judged like a sign-in at ``/login`` (no device id: there is no
    device cookie). Returns the text to show when the policy ends sessions (``step_up``,
    ``revoke_session``, ``revoke_subject``): then no sign-in session may start."""
    if rt.risk is None:
        return None
    decision = rt.risk.on_sign_in(sub=sub, address=address, device=None)
    await _apply(rt, decision, stage="sign_in", sub=sub, client_id=client_id)
    if set(decision.actions) & {"step_up", "revoke_session", "revoke_subject"}:
        return f"This sign-in was refused: {decision.reason}."
    return None
