"""``GET/POST /authorize``: the authorization code flow (RFC 6749 §4.1 as profiled by OAuth 2.1
and RFC 9700), with the sign-in and consent pages.

* ``response_type=code`` only; PKCE is required for every client, ``S256`` only (RFC 7636;
  RFC 9700 §2.1.1); ``state`` is passed back and ``iss`` is added to every response (RFC 9207).
* Errors found **before** the client and its redirect URI are validated are shown on a page and
  never redirected (RFC 6749 §4.1.2.1: no open redirector); errors after are redirected with
  ``error``, ``error_description``, ``state`` and ``iss``.
* The pending request is kept server-side (kind ``authreq``, ten minutes) while the user signs
  in or consents; the pages' forms carry its id and a ``csrf_token`` bound to it.
* Codes: 256 random bits, stored by SHA-256 (kind ``code``), single use, lifetime
  ``TOKENWARD_AUTHORIZATION_CODE_TTL``, bound to the client, redirect URI, PKCE challenge,
  resources, scope, nonce and the sign-in session (exchanged in :mod:`.code_grant`).
* ``prompt=none|login|consent`` and ``max_age`` (OpenID Connect Core §3.1.2.1).
* ``dpop_jkt`` (RFC 9449 §10): the thumbprint of the client's DPoP key, kept on the code; the
  code is then exchanged only with a DPoP proof made with that key (:mod:`.code_grant`).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from fastapi import APIRouter, Request, Response
from fastapi.responses import RedirectResponse

from ...errors import InvalidGrant, InvalidRequest, InvalidScope, InvalidTarget, RateLimited
from ...events import emit
from ...store.base import Client, GrantRecord, User
from .. import riskwire
from ..authorization import Grant
from ..credentials import session_refusal
from ..deps import client_ip, get_runtime, user_agent
from ..grants.common import parse_scope
from ..pages import form_origin_ok, page
from ..redirect_uris import redirect_uri_matches
from ..runtime import Runtime
from ..signin import SigninSession, read_signin_cookie, set_signin_cookie

__all__ = ["AuthorizationRequest", "compute_grant", "router"]

router = APIRouter(tags=["authorization code"])

REQUEST_KIND = "authreq"
CODE_KIND = "code"
CONSENT_KIND = "consent"
_REQUEST_TTL = 600.0
_CHALLENGE = re.compile(r"^[A-Za-z0-9\-._~]{43,128}$")  # RFC 7636 §4.2 (S256: 43 chars)
_JKT = re.compile(r"^[A-Za-z0-9_-]{43}$")  # base64url SHA-256 JWK thumbprint (RFC 7638)
_MAX_PARAM = 2048
_PROMPTS = frozenset({"none", "login", "consent", "select_account"})


def code_key(code: str) -> str:
    return hashlib.sha256(code.encode("utf-8", "surrogatepass")).hexdigest()


def consent_key(sub: str, client_id: str) -> str:
    return hashlib.sha256(f"{sub}\x00{client_id}".encode()).hexdigest()


async def compute_grant(
    rt: Runtime,
    requested: str | None,
    client: Client,
    user: User,
    resources: list[str] | None = None,
    *,
    max_resources: int | None = None,
) -> Grant:
    """The grant of a user authorization: the one place this flow consults the authorization
    model (requested ∩ client's permissions ∩ user's entitlement, for the requested resources;
    several resources are allowed here). ``invalid_scope`` / ``invalid_target`` otherwise."""
    grant, _ = await rt.authorizer.grant(
        scope=requested,
        resources=resources or [],
        client=client,
        user=user,
        max_resources=max_resources,
    )
    return grant


@dataclass(slots=True)
class AuthorizationRequest:
    client_id: str
    redirect_uri: str
    code_challenge: str
    state: str | None = None
    scope: str | None = None
    nonce: str | None = None
    prompt: list[str] = field(default_factory=list)
    max_age: int | None = None
    resources: list[str] = field(default_factory=list)
    dpop_jkt: str | None = None  # RFC 9449 §10: the code is bound to this DPoP key
    post: bool = False  # received as a POST (answer redirects with 303)


class _PageError(Exception):
    """An error shown on a page: the redirect URI is not (yet) trusted."""

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.error, self.description, self.status = error, description, status


class _RedirectError(Exception):
    def __init__(self, error: str, description: str) -> None:
        super().__init__(description)
        self.error, self.description = error, description


class _BoundRedirectError(_RedirectError):
    """A request error found once the redirect URI is trusted: answered by redirect."""

    def __init__(self, areq: AuthorizationRequest, error: str, description: str) -> None:
        super().__init__(error, description)
        self.areq = areq


# -- parsing and validation ----------------------------------------------------------------
async def _params(request: Request) -> list[tuple[str, str]]:
    if request.method == "GET":
        return parse_qsl(request.url.query, keep_blank_values=True, max_num_fields=64)
    ctype = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if ctype != "application/x-www-form-urlencoded":
        raise _PageError("invalid_request", "the body must be application/x-www-form-urlencoded")
    body = await request.body()
    if len(body) > get_runtime(request).settings.max_body_bytes:
        raise _PageError("invalid_request", "request body too large", 413)
    try:
        return parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=64)
    except (UnicodeDecodeError, ValueError):
        raise _PageError("invalid_request", "the body is not a valid form") from None


def _single(pairs: list[tuple[str, str]], multi: frozenset[str]) -> tuple[dict[str, str], bool]:
    """Parameters as a dict (empty = absent); second item: a parameter was repeated."""
    out: dict[str, str] = {}
    repeated = False
    for k, v in pairs:
        if k in multi or v == "":
            continue
        if k in out:
            repeated = True
        out[k] = v
    return out, repeated


async def _validate(rt: Runtime, request: Request) -> tuple[AuthorizationRequest, Client]:
    pairs = await _params(request)
    p, repeated = _single(pairs, frozenset({"resource"}))
    client_id = p.get("client_id")
    if client_id is None:
        raise _PageError("invalid_request", "client_id is missing")
    client = await rt.clients.get(client_id[:300])
    if client is None or client.disabled:
        raise _PageError("invalid_client", "unknown or disabled client")
    redirect_uri = p.get("redirect_uri")
    if redirect_uri is None:
        raise _PageError("invalid_request", "redirect_uri is missing")
    if not client.redirect_uris or not redirect_uri_matches(client.redirect_uris, redirect_uri):
        raise _PageError(
            "invalid_request", "redirect_uri does not match a URI registered for this client"
        )
    # from here on, errors go back to the client's redirect URI
    state = p.get("state")
    areq = AuthorizationRequest(
        client_id=client.client_id,
        redirect_uri=redirect_uri,
        code_challenge="",
        state=state if state is None or len(state) <= _MAX_PARAM else None,
        post=request.method == "POST",
    )
    try:
        _check(areq, client, p, pairs, repeated)
    except _RedirectError as exc:
        raise _BoundRedirectError(areq, exc.error, exc.description) from None
    return areq, client


def _check(
    areq: AuthorizationRequest,
    client: Client,
    p: dict[str, str],
    pairs: list[tuple[str, str]],
    repeated: bool,
) -> None:
    state = p.get("state")
    if state is not None and len(state) > _MAX_PARAM:
        raise _RedirectError("invalid_request", "state is too long")
    if repeated:
        raise _RedirectError("invalid_request", "a parameter is repeated")
    if "request" in p:
        raise _RedirectError("request_not_supported", "request objects are not supported")
    if "request_uri" in p:
        raise _RedirectError("request_uri_not_supported", "request_uri is not supported")
    if "authorization_code" not in client.grants:
        raise _RedirectError("unauthorized_client", "this client may not use the code flow")
    rtype = p.get("response_type")
    if rtype is None:
        raise _RedirectError("invalid_request", "response_type is missing")
    if rtype != "code":
        raise _RedirectError("unsupported_response_type", "only response_type=code")
    challenge, method = p.get("code_challenge"), p.get("code_challenge_method")
    if challenge is None:
        raise _RedirectError("invalid_request", "PKCE is required: code_challenge is missing")
    if method != "S256":
        raise _RedirectError("invalid_request", "code_challenge_method must be S256")
    if len(challenge) != 43 or not _CHALLENGE.match(challenge):
        raise _RedirectError("invalid_request", "code_challenge is not a S256 challenge")
    areq.code_challenge = challenge
    try:
        areq.scope = " ".join(parse_scope(p.get("scope"))) or None
    except InvalidScope as exc:
        raise _RedirectError("invalid_scope", exc.description) from None
    nonce = p.get("nonce")
    if nonce is not None and len(nonce) > 512:
        raise _RedirectError("invalid_request", "nonce is too long")
    areq.nonce = nonce
    prompt = (p.get("prompt") or "").split()
    if any(x not in _PROMPTS for x in prompt):
        raise _RedirectError("invalid_request", "prompt must be none, login or consent")
    if "none" in prompt and len(prompt) > 1:
        raise _RedirectError("invalid_request", "prompt=none cannot be combined")
    areq.prompt = prompt
    if "max_age" in p:
        raw = p["max_age"]
        if not raw.isdigit() or len(raw) > 9:
            raise _RedirectError("invalid_request", "max_age is a number of seconds")
        areq.max_age = int(raw)
    resources = [v for k, v in pairs if k == "resource" and v]
    for r in resources:
        parts = urlsplit(r)
        if not parts.scheme or parts.fragment or len(r) > _MAX_PARAM:  # RFC 8707 §2
            raise _RedirectError("invalid_target", "resource must be an absolute URI")
    areq.resources = list(dict.fromkeys(resources))[:8]
    jkt = p.get("dpop_jkt")
    if jkt is not None and not _JKT.match(jkt):
        raise _RedirectError(
            "invalid_request",
            "dpop_jkt must be the base64url SHA-256 JWK thumbprint of the DPoP key (RFC 7638)",
        )
    areq.dpop_jkt = jkt


# -- responses -----------------------------------------------------------------------------
def _redirect(rt: Runtime, areq: AuthorizationRequest, params: dict[str, str]) -> Response:
    out = dict(params)
    if areq.state is not None:
        out["state"] = areq.state
    out["iss"] = rt.settings.issuer  # RFC 9207 §2
    sep = "&" if "?" in areq.redirect_uri else "?"
    return RedirectResponse(
        areq.redirect_uri + sep + urlencode(out),
        status_code=303 if areq.post else 302,
        headers={"Cache-Control": "no-store"},
    )


def _error_page(error: str, description: str, status: int = 400) -> Response:
    return page(
        "message.html",
        {"heading": "This request cannot be completed", "message": description, "code": error},
        status=status,
    )


async def _pending(rt: Runtime, areq: AuthorizationRequest) -> tuple[str, str]:
    request_id = secrets.token_urlsafe(24)
    csrf = secrets.token_urlsafe(24)
    now = rt.clock.now()
    data = {"areq": asdict(areq), "csrf": csrf}
    await rt.store.create_record(
        GrantRecord(REQUEST_KIND, request_id, "", data, now + _REQUEST_TTL), now=now
    )
    return request_id, csrf


async def _signin_page(
    rt: Runtime,
    client: Client,
    areq: AuthorizationRequest,
    *,
    error: str | None = None,
    username: str | None = None,
    status: int = 200,
) -> Response:
    request_id, csrf = await _pending(rt, areq)
    return page(
        "signin.html",
        {
            "action": "/authorize/signin",
            "client_name": client.name or client.client_id,
            "request_id": request_id,
            "csrf_token": csrf,
            "error": error,
            "username": username,
        },
        status=status,
        redirect_to=areq.redirect_uri,
    )


async def _issue_code(
    rt: Runtime, areq: AuthorizationRequest, session: SigninSession, grant: Grant
) -> Response:
    scope = grant.scope_text
    code = secrets.token_urlsafe(32)  # 256 bits (RFC 6749 §10.10, RFC 9700 §4.5)
    now = rt.clock.now()
    data: dict[str, Any] = {
        "client_id": areq.client_id,
        "redirect_uri": areq.redirect_uri,
        "code_challenge": areq.code_challenge,
        "scope": scope,
        "resources": list(grant.resources),  # the granted ones, in order
        "nonce": areq.nonce,
        "dpop_jkt": areq.dpop_jkt,
        "sub": session.sub,
        "signin_sid": session.sid,
        "auth_time": session.auth_time,
        "used": False,
        "family": None,
    }
    await rt.store.create_record(
        GrantRecord(
            CODE_KIND,
            code_key(code),
            areq.client_id,
            data,
            now + rt.settings.authorization_code_ttl,
        ),
        now=now,
    )
    emit("authorization_code_issued", sub=session.sub, client_id=areq.client_id, scope=scope)
    return _redirect(rt, areq, {"code": code})


async def _consented(rt: Runtime, sub: str, client_id: str, scope: str) -> bool:
    rec = await rt.store.get_record(CONSENT_KIND, consent_key(sub, client_id), now=rt.clock.now())
    if rec is None:
        return False
    return set(scope.split()) <= set(rec.data.get("scopes", []))


async def remember_consent(rt: Runtime, sub: str, client_id: str, scope: str) -> None:
    key = consent_key(sub, client_id)
    now = rt.clock.now()
    for _ in range(5):
        rec = await rt.store.get_record(CONSENT_KIND, key, now=now)
        if rec is None:
            data = {"client_id": client_id, "scopes": sorted(set(scope.split())), "at": now}
            if await rt.store.create_record(
                GrantRecord(CONSENT_KIND, key, sub, data, None), now=now
            ):
                return
            continue
        scopes = set(rec.data.get("scopes", [])) | set(scope.split())
        rec.data = {"client_id": client_id, "scopes": sorted(scopes), "at": now}
        if await rt.store.update_record(rec, now=now):
            return


async def _active_user(rt: Runtime, session: SigninSession | None) -> User | None:
    if session is None:
        return None
    user = await rt.users.get(session.sub)
    # the credential watermark: a password reset or a disable ends sign-in sessions too
    if session_refusal(user, created_at=session.created_at) is not None:
        await rt.signins.end(session.sid)
        return None
    return user


async def _continue(
    rt: Runtime,
    client: Client,
    areq: AuthorizationRequest,
    session: SigninSession,
    user: User,
    *,
    consented: bool = False,
) -> Response:
    """Signed in: ask consent when needed, else issue the code."""
    try:
        grant = await compute_grant(rt, areq.scope, client, user, areq.resources)
    except (InvalidScope, InvalidTarget) as exc:
        return _redirect(rt, areq, exc.to_dict())
    scope = grant.scope_text
    needs_consent = not client.first_party and (
        "consent" in areq.prompt or not await _consented(rt, user.username, client.client_id, scope)
    )
    if needs_consent and not consented:
        if "none" in areq.prompt:
            return _redirect(
                rt,
                areq,
                {"error": "consent_required", "error_description": "the user has not consented"},
            )
        request_id, csrf = await _pending(rt, areq)
        return page(
            "consent.html",
            {
                "action": "/authorize/consent",
                "client_name": client.name or client.client_id,
                "username": user.username,
                "scopes": scope.split(),
                "resources": list(grant.resources),
                "request_id": request_id,
                "csrf_token": csrf,
            },
            redirect_to=areq.redirect_uri,
        )
    return await _issue_code(rt, areq, session, grant)


# -- routes ----------------------------------------------------------------------------------
async def _authorize_validated(
    rt: Runtime, request: Request, areq: AuthorizationRequest, client: Client
) -> Response:
    session = await rt.signins.from_cookie(read_signin_cookie(request))
    user = await _active_user(rt, session)
    now = rt.clock.now()
    needs_login = (
        user is None
        or "login" in areq.prompt
        or (
            areq.max_age is not None
            and session is not None
            and now - session.auth_time > areq.max_age
        )
    )
    if needs_login:
        if "none" in areq.prompt:
            raise _RedirectError("login_required", "the user is not signed in")
        return await _signin_page(rt, client, areq)
    assert session is not None and user is not None
    return await _continue(rt, client, areq, session, user)


# HTML pages and redirects: documented in docs/server.md, not in the JSON API schema
@router.get("/authorize", include_in_schema=False)
async def authorize_get(request: Request) -> Response:
    return await authorize_entry(request)


@router.post("/authorize", include_in_schema=False)
async def authorize_post(request: Request) -> Response:
    return await authorize_entry(request)


async def authorize_entry(request: Request) -> Response:
    rt = get_runtime(request)
    try:
        areq, client = await _validate(rt, request)
    except _PageError as exc:
        return _error_page(exc.error, exc.description, exc.status)
    except _BoundRedirectError as exc:
        return _redirect(rt, exc.areq, {"error": exc.error, "error_description": exc.description})
    try:
        return await _authorize_validated(rt, request, areq, client)
    except _RedirectError as exc:
        return _redirect(rt, areq, {"error": exc.error, "error_description": exc.description})


async def _form(request: Request) -> dict[str, str]:
    ctype = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if ctype != "application/x-www-form-urlencoded":
        raise InvalidRequest("the body must be application/x-www-form-urlencoded")
    body = await request.body()
    if len(body) > 16384:
        raise InvalidRequest("request body too large")
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=16)
    except (UnicodeDecodeError, ValueError):
        raise InvalidRequest("the body is not a valid form") from None
    return dict(pairs)


async def _take_pending(
    rt: Runtime, request: Request, form: dict[str, str]
) -> tuple[AuthorizationRequest, Client] | Response:
    """The pending request a page form names, after the CSRF check; or an error page."""
    if not form_origin_ok(request, rt.settings.issuer):
        return _error_page("invalid_request", "cross-site form submission refused", 403)
    request_id, csrf = form.get("request_id", ""), form.get("csrf_token", "")
    if not csrf:
        return _error_page("invalid_request", "the form has no csrf_token", 403)
    rec = (
        await rt.store.get_record(REQUEST_KIND, request_id[:64], now=rt.clock.now())
        if request_id
        else None
    )
    if rec is None:
        return _error_page(
            "invalid_request", "this sign-in request has expired; go back to the app and retry"
        )
    if not hmac.compare_digest(str(rec.data.get("csrf", "")).encode(), csrf.encode()):
        return _error_page("invalid_request", "the form's csrf_token is wrong", 403)
    await rt.store.delete_record(REQUEST_KIND, rec.key)  # single use
    areq = AuthorizationRequest(**rec.data["areq"])
    areq.post = True
    client = await rt.clients.get(areq.client_id)
    if client is None:
        return _error_page("invalid_client", "unknown client")
    return areq, client


@router.post("/authorize/signin", include_in_schema=False)
async def signin_submit(request: Request) -> Response:
    rt = get_runtime(request)
    form = await _form(request)
    taken = await _take_pending(rt, request, form)
    if isinstance(taken, Response):
        return taken
    areq, client = taken
    username, password = form.get("username", ""), form.get("password", "")
    if not username or not password:
        return await _signin_page(
            rt, client, areq, error="Enter your username and password.", status=400
        )
    ip = client_ip(request)
    try:
        await riskwire.check_block(rt, ip)  # a network blocked by the risk engine
        await rt.throttle.check(username, ip)
        user = await rt.users.authenticate(username, password)
    except RateLimited:
        return await _signin_page(
            rt, client, areq, error="Too many attempts; wait a minute.", username=username,
            status=429,
        )  # fmt: skip
    except InvalidGrant:
        rt.metrics.login_failures.inc()
        await rt.throttle.failed(username, ip)
        await riskwire.sign_in_failed(rt, username=username, password=password, address=ip)
        return await _signin_page(
            rt, client, areq, error="Wrong username or password.", username=username, status=401
        )
    await rt.throttle.succeeded(username)
    refused = await riskwire.page_signed_in(
        rt, sub=user.username, client_id=client.client_id, address=ip
    )
    if refused is not None:
        return await _signin_page(rt, client, areq, error=refused, status=403)
    session, cookie = await rt.signins.start(user.username, ip=ip, user_agent=user_agent(request))
    emit("signin", sub=user.username, sid=session.sid, ip=ip)
    resp = await _continue(rt, client, areq, session, user)
    set_signin_cookie(resp, cookie, max_age=int(rt.settings.signin_absolute_ttl))
    return resp


@router.post("/authorize/consent", include_in_schema=False)
async def consent_submit(request: Request) -> Response:
    rt = get_runtime(request)
    form = await _form(request)
    taken = await _take_pending(rt, request, form)
    if isinstance(taken, Response):
        return taken
    areq, client = taken
    session = await rt.signins.from_cookie(read_signin_cookie(request))
    user = await _active_user(rt, session)
    if user is None or session is None:
        return await _signin_page(rt, client, areq, error="Your sign-in has ended; sign in again.")
    decision = form.get("decision")
    if decision == "deny":
        emit("consent_denied", sub=user.username, client_id=client.client_id)
        return _redirect(
            rt, areq, {"error": "access_denied", "error_description": "the user denied access"}
        )
    if decision != "allow":
        return _error_page("invalid_request", "decision must be allow or deny")
    try:
        grant = await compute_grant(rt, areq.scope, client, user, areq.resources)
    except (InvalidScope, InvalidTarget) as exc:
        return _redirect(rt, areq, exc.to_dict())
    scope = grant.scope_text
    await remember_consent(rt, user.username, client.client_id, scope)
    emit("consent_granted", sub=user.username, client_id=client.client_id, scope=scope)
    return await _issue_code(rt, areq, session, grant)
