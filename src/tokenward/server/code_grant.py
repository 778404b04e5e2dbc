"""``grant_type=authorization_code`` at ``/token`` (RFC 6749 §4.1.3, RFC 7636 §4.5/§4.6).

The code is looked up by its SHA-256; it must be unexpired, issued to the authenticated client,
for the same ``redirect_uri``, and ``S256(code_verifier)`` must equal its challenge. It is then
consumed by compare-and-set, so exactly one exchange wins. A second use of a code is
``invalid_grant`` **and** revokes the session (refresh family, with its access tokens through
the ``sid`` feed event) issued from it (RFC 6749 §4.1.2, RFC 9700 §4.5.3): a code presented
twice means it leaked. A code whose authorization request carried ``dpop_jkt`` is exchanged
only with a DPoP proof made with that key (RFC 9449 §10.1); otherwise ``invalid_grant``,
before the code is consumed, so its rightful client can still use it. The exchange starts a
refresh-token family like every user grant (rotation, grace window, reuse detection) and,
with ``openid`` granted, adds an ID token.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from typing import Any

from fastapi import Request

from ..errors import InvalidGrant, InvalidRequest, InvalidTarget
from ..events import emit
from ..sessions import AccessSpec, TokenPair
from ..store.base import Client, GrantRecord, User
from .authorization import OIDC_SCOPES, Grant
from .credentials import confirm_session, session_refusal
from .deps import client_ip, form_resources, user_agent
from .routes.authorize import CODE_KIND, code_key
from .runtime import Runtime

__all__ = ["access_for", "exchange_code"]

_VERIFIER = re.compile(r"^[A-Za-z0-9\-._~]{43,128}$")  # RFC 7636 §4.1
_USED_KEEP = 3600.0  # a consumed code is remembered this long to detect its reuse


def s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


async def _reused(rt: Runtime, rec: GrantRecord) -> None:
    """Mark the code reused and revoke what was issued from it."""
    now = rt.clock.now()
    for _ in range(5):
        rec.data["reused"] = True
        if await rt.store.update_record(rec, now=now):
            break
        fresh = await rt.store.get_record(CODE_KIND, rec.key, now=now)
        if fresh is None:
            break
        rec = fresh
    family = rec.data.get("family")
    emit(
        "authorization_code_reuse",
        client_id=rec.data.get("client_id"),
        sub=rec.data.get("sub"),
        sid=family,
    )
    if family:
        await rt.sessions.revoke_session(family, reason="authorization_code_reuse")


def asked_resource(request: Request, granted_resources: list[str]) -> str | None:
    """The ``resource`` asked at ``/token`` (RFC 8707 §2.2): at most one, among the granted
    ones; ``None`` when none is asked (the first granted one is then used)."""
    asked = form_resources(request)
    if len(asked) > 1:
        raise InvalidTarget("at most one resource parameter here")
    if asked and asked[0] not in granted_resources:
        raise InvalidTarget(f"the grant does not cover {asked[0][:200]!r}")
    return asked[0] if asked else None


async def access_for(
    rt: Runtime,
    client: Client,
    user: User,
    scope: str,
    granted_resources: list[str],
    asked: str | None,
) -> AccessSpec:
    """The first access token of a session granted ``scope`` for ``granted_resources`` (at
    the authorization or device approval): for the ``asked`` resource, else the first
    granted one; with that resource's scopes (and the OIDC ones) as the client and the user
    may still have them. ``aud`` is that resource, plus the issuer when ``openid`` is
    granted."""
    catalog = await rt.authorizer.catalog()
    target = asked or (granted_resources[0] if granted_resources else catalog.issuer)
    client = rt.authorizer.effective(client)
    entitled = await rt.authorizer.entitled(user) or frozenset()
    kept: list[str] = []
    for s in dict.fromkeys(scope.split()):
        owner = catalog.owner.get(s)
        oidc = s in OIDC_SCOPES
        if (
            owner is not None
            and (owner == target or oidc)
            and s in client.scopes
            and (owner in client.resources or oidc)
            and s in entitled
        ):
            kept.append(s)
    if not kept or catalog.get(target) is None:
        raise InvalidGrant("nothing of this grant is allowed any more for this resource")
    return rt.access_spec(Grant(tuple(kept), (target,), catalog.issuer), catalog)


async def start_user_session(
    rt: Runtime,
    request: Request,
    client: Client,
    user: User,
    scope: str,
    access: AccessSpec,
    dpop_jkt: str | None,
    *,
    device: str | None = None,
) -> TokenPair:
    """Start the refresh-token family of a user's approved grant (code or device), then make
    sure no password reset or disable raced it."""
    pair = await rt.sessions.start(
        sub=user.username,
        client_id=client.client_id,
        scope=scope,
        user_agent=user_agent(request),
        ip=client_ip(request),
        access=access,
        dpop_jkt=dpop_jkt,
        bind_refresh=client.public,  # RFC 9449 §5: public clients' refresh tokens are bound
        device=device,
    )
    await confirm_session(rt.sessions, user, pair.session_id)
    return pair


def token_response(
    rt: Runtime,
    client: Client,
    user: User,
    pair: TokenPair,
    scope: str,
    *,
    auth_time: float,
    sid: str,
    nonce: str | None = None,
) -> dict[str, Any]:
    """The token response of a user grant: no refresh token for a client without the
    refresh_token grant, an ID token when ``openid`` was granted."""
    body = pair.to_response()
    if "refresh_token" not in client.grants:
        del body["refresh_token"]
    if "openid" in scope.split():
        body["id_token"] = rt.id_tokens.sign(
            sub=user.username,
            client_id=client.client_id,
            auth_time=auth_time,
            sid=sid,
            nonce=nonce,
            access_token=pair.access_token,
        )
    return body


async def exchange_code(
    rt: Runtime,
    request: Request,
    client: Client,
    form: dict[str, str],
    *,
    dpop_jkt: str | None = None,
) -> dict[str, Any]:
    code, redirect_uri, verifier = (
        form.get("code"),
        form.get("redirect_uri"),
        form.get("code_verifier"),
    )
    if code is None:
        raise InvalidRequest("code is required")
    if redirect_uri is None:
        raise InvalidRequest("redirect_uri is required")
    if verifier is None:
        raise InvalidRequest("code_verifier is required (PKCE)")
    if len(code) > 256:
        raise InvalidGrant("unknown, expired or used authorization code")
    now = rt.clock.now()
    rec = await rt.store.get_record(CODE_KIND, code_key(code), now=now)
    if rec is None:
        raise InvalidGrant("unknown, expired or used authorization code")
    d = rec.data
    if not hmac.compare_digest(str(d["client_id"]).encode(), client.client_id.encode()):
        raise InvalidGrant("the code was issued to another client")
    if d.get("used"):
        await _reused(rt, rec)
        raise InvalidGrant("the authorization code was already used; its tokens are revoked")
    if redirect_uri != d["redirect_uri"]:
        raise InvalidGrant("redirect_uri differs from the authorization request")
    if not _VERIFIER.match(verifier) or not hmac.compare_digest(
        s256(verifier).encode(), str(d["code_challenge"]).encode()
    ):
        raise InvalidGrant("code_verifier does not match the code_challenge")
    granted_resources = [str(r) for r in d.get("resources") or []]
    asked = asked_resource(request, granted_resources)  # checked before the code is consumed
    bound = d.get("dpop_jkt")
    if bound:  # RFC 9449 §10.1
        if dpop_jkt is None:
            raise InvalidGrant("the code is bound to a DPoP key (dpop_jkt): send a DPoP proof")
        if not hmac.compare_digest(str(bound).encode(), dpop_jkt.encode()):
            raise InvalidGrant("the DPoP proof's key is not the one the code is bound to")
    # consume (compare-and-set): exactly one exchange wins
    rec.data = {**d, "used": True}
    rec.expires_at = max(rec.expires_at or now, now + _USED_KEEP)
    if not await rt.store.update_record(rec, now=now):
        fresh = await rt.store.get_record(CODE_KIND, rec.key, now=now)
        if fresh is not None:
            await _reused(rt, fresh)
        raise InvalidGrant("the authorization code was already used; its tokens are revoked")
    rec.version += 1
    user = await rt.users.get(d["sub"])
    signin = await rt.signins.get(d["signin_sid"])
    if signin is None:
        raise InvalidGrant("the sign-in session of this code has ended")
    why = session_refusal(user, created_at=signin.created_at)
    if user is None or why is not None:
        await rt.signins.end(signin.sid)
        raise InvalidGrant(f"the sign-in session of this code has ended ({why})")
    scope = str(d["scope"])
    access = await access_for(rt, client, user, scope, granted_resources, asked)
    pair = await start_user_session(rt, request, client, user, scope, access, dpop_jkt)
    # record the family on the code; a reuse that raced us flagged it meanwhile
    rec.data = {**rec.data, "family": pair.session_id}
    if not await rt.store.update_record(rec, now=now):
        await rt.sessions.revoke_session(pair.session_id, reason="authorization_code_reuse")
        raise InvalidGrant("the authorization code was already used; its tokens are revoked")
    await rt.signins.note_issue(signin.sid, client.client_id, pair.session_id)
    rt.metrics.tokens_issued.labels(grant="authorization_code").inc()
    return token_response(
        rt, client, user, pair, scope,
        auth_time=float(d["auth_time"]), sid=signin.sid, nonce=d.get("nonce"),
    )  # fmt: skip
