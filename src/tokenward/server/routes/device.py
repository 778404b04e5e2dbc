"""The device authorization grant (RFC 8628) for CLIs and input-constrained devices.

* ``POST /device_authorization`` (§3.1/§3.2): ``device_code`` (256 random bits, stored by
  SHA-256), ``user_code`` of 8 characters from the base-20 alphabet ``BCDFGHJKLMNPQRSTVWXZ``
  (§6.1: no vowels, no look-alikes) shown ``XXXX-XXXX``, ``verification_uri`` =
  ``{issuer}/device``, ``verification_uri_complete``, ``expires_in`` 600, ``interval`` 5.
* ``/device``: the user enters (or confirms) the code, signs in if needed, and allows or denies
  on the consent page (``decision``); forms carry ``csrf_token``. Wrong codes are throttled like
  passwords (per IP), since a user code has only ~34 bits.
* ``grant_type=urn:ietf:params:oauth:grant-type:device_code`` at ``/token`` (§3.4/§3.5):
  ``authorization_pending``, ``slow_down`` (HTTP 400, the interval grows by 5 s; a different
  error class from sign-in throttling, which is 429), ``access_denied``, ``expired_token``;
  once approved it is exchanged exactly once (compare-and-set) for the usual tokens.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Any

from fastapi import APIRouter, Request, Response

from ...errors import (
    InvalidGrant,
    InvalidRequest,
    InvalidScope,
    InvalidTarget,
    RateLimited,
    TokenwardError,
)
from ...events import emit
from ...store.base import Client, GrantRecord
from .. import riskwire
from ..auth import authenticate_client
from ..clients import DEVICE_CODE_GRANT
from ..code_grant import access_for, asked_resource, start_user_session, token_response
from ..credentials import session_refusal
from ..deps import client_ip, form_openapi, form_resources, get_runtime, read_form, user_agent
from ..errors import JSON, NO_STORE, OAuthError
from ..grants.common import parse_scope
from ..openapi import CLIENT_AUTH_OR_PUBLIC
from ..pages import form_origin_ok, page
from ..runtime import Runtime
from ..signin import read_signin_cookie, set_signin_cookie
from .authorize import compute_grant

__all__ = ["USER_CODE_ALPHABET", "exchange_device_code", "normalize_user_code", "router"]

router = APIRouter(tags=["device authorization"])

USER_CODE_ALPHABET = "BCDFGHJKLMNPQRSTVWXZ"  # RFC 8628 §6.1
DEVICE_KIND = "device"
USER_CODE_KIND = "usercode"
PAGE_KIND = "devpage"
EXPIRES_IN = 600
INTERVAL = 5
_KEEP_AFTER = 600.0  # an expired device code still answers expired_token this long


class AuthorizationPending(TokenwardError):
    error = "authorization_pending"
    status_code = 400


class SlowDown(TokenwardError):
    """RFC 8628 §3.5: polling too fast; HTTP 400 (not the 429 of sign-in throttling)."""

    error = "slow_down"
    status_code = 400


class AccessDenied(TokenwardError):
    error = "access_denied"
    status_code = 400


class ExpiredToken(TokenwardError):
    error = "expired_token"
    status_code = 400


def _hash(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()


def new_user_code() -> str:
    return "".join(secrets.choice(USER_CODE_ALPHABET) for _ in range(8))


def normalize_user_code(value: str) -> str | None:
    """Upper-case, drop dashes and spaces (§6.1: be forgiving in what is typed)."""
    code = "".join(c for c in value.upper() if c not in "- ")
    if len(code) != 8 or any(c not in USER_CODE_ALPHABET for c in code):
        return None
    return code


def show_user_code(code: str) -> str:
    return f"{code[:4]}-{code[4:]}"


_FORM = form_openapi(
    {
        "client_id": {"type": "string"},
        "client_secret": {"type": "string", "format": "password"},
        "scope": {"type": "string"},
    },
    [],
)
_FORM["security"] = CLIENT_AUTH_OR_PUBLIC


@router.post(
    "/device_authorization",
    summary="Device authorization (RFC 8628 §3.1)",
    openapi_extra=_FORM,
    responses={
        200: {
            "description": "RFC 8628 §3.2 device authorization response",
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "required": [
                            "device_code",
                            "user_code",
                            "verification_uri",
                            "expires_in",
                        ],
                        "properties": {
                            "device_code": {"type": "string"},
                            "user_code": {"type": "string"},
                            "verification_uri": {"type": "string"},
                            "verification_uri_complete": {"type": "string"},
                            "expires_in": {"type": "integer"},
                            "interval": {"type": "integer"},
                        },
                    }
                }
            },
        },
        400: {"model": OAuthError},
        401: {"model": OAuthError},
        413: {"model": OAuthError},
        503: {"model": OAuthError},
    },
)
async def device_authorization(request: Request) -> JSON:
    rt = get_runtime(request)
    form = await read_form(request)
    client = (await authenticate_client(request, form)).client
    if DEVICE_CODE_GRANT not in client.grants:
        from ...errors import UnauthorizedClient

        raise UnauthorizedClient("this client may not use the device authorization grant")
    scope = " ".join(parse_scope(form.get("scope"))) or None
    resources = form_resources(request)
    if len(resources) > 1:
        raise InvalidTarget("at most one resource parameter here")
    now = rt.clock.now()
    device_code = secrets.token_urlsafe(32)
    for _ in range(5):
        user_code = new_user_code()
        if await rt.store.create_record(
            GrantRecord(
                USER_CODE_KIND, user_code, "", {"device": _hash(device_code)}, now + EXPIRES_IN
            ),
            now=now,
        ):
            break
    else:  # pragma: no cover - 20^8 codes
        raise InvalidRequest("could not allocate a user code; retry")
    data: dict[str, Any] = {
        "client_id": client.client_id,
        "scope": scope,
        "resources": resources,
        "user_code": user_code,
        "status": "pending",
        "exp": now + EXPIRES_IN,
        "interval": INTERVAL,
        "last_poll": 0.0,
    }
    await rt.store.create_record(
        GrantRecord(
            DEVICE_KIND, _hash(device_code), client.client_id, data, now + EXPIRES_IN + _KEEP_AFTER
        ),
        now=now,
    )
    emit("device_authorization", client_id=client.client_id, scope=scope)
    base = rt.settings.issuer
    shown = show_user_code(user_code)
    return JSON(
        {
            "device_code": device_code,
            "user_code": shown,
            "verification_uri": f"{base}/device",
            "verification_uri_complete": f"{base}/device?user_code={shown}",
            "expires_in": EXPIRES_IN,
            "interval": INTERVAL,
        },
        headers=dict(NO_STORE),
    )


async def _device_page(
    rt: Runtime,
    request: Request,
    *,
    user_code: str | None = None,
    error: str | None = None,
    status: int = 200,
) -> Response:
    session = await rt.signins.from_cookie(read_signin_cookie(request))
    request_id, csrf = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
    now = rt.clock.now()
    await rt.store.create_record(
        GrantRecord(PAGE_KIND, request_id, "", {"csrf": csrf}, now + EXPIRES_IN), now=now
    )
    return page(
        "device.html",
        {
            "request_id": request_id,
            "csrf_token": csrf,
            "user_code": user_code,
            "signed_in": session is not None,
            "username": session.sub if session else None,
            "error": error,
        },
        status=status,
    )


@router.get("/device", include_in_schema=False)
async def device_page(request: Request) -> Response:
    rt = get_runtime(request)
    code = request.query_params.get("user_code")
    return await _device_page(rt, request, user_code=code[:16] if code else None)


async def _check_page_form(rt: Runtime, request: Request, form: dict[str, str]) -> str | None:
    """None when the form's csrf_token matches its page; else the problem."""
    if not form_origin_ok(request, rt.settings.issuer):
        return "cross-site form submission refused"
    csrf = form.get("csrf_token", "")
    if not csrf:
        return "the form has no csrf_token"
    rid = form.get("request_id", "")[:64]
    rec = await rt.store.get_record(PAGE_KIND, rid, now=rt.clock.now()) if rid else None
    if rec is None or not hmac.compare_digest(str(rec.data["csrf"]).encode(), csrf.encode()):
        return "the form's csrf_token is wrong or expired"
    await rt.store.delete_record(PAGE_KIND, rid)
    return None


async def _page_form(request: Request) -> dict[str, str]:
    from .authorize import _form

    return await _form(request)


@router.post("/device", include_in_schema=False)
async def device_submit(request: Request) -> Response:
    rt = get_runtime(request)
    form = await _page_form(request)
    problem = await _check_page_form(rt, request, form)
    if problem is not None:
        return page(
            "message.html",
            {"heading": "This request cannot be completed", "message": problem},
            status=403,
        )
    ip = client_ip(request)
    typed = form.get("user_code", "")
    code = normalize_user_code(typed)
    # a user code has ~34 bits: wrong codes count against the per-IP login limit
    try:
        await rt.throttle.check("device-code", ip)
    except RateLimited:
        return await _device_page(
            rt, request, user_code=typed, error="Too many attempts; wait a minute.", status=429
        )
    now = rt.clock.now()
    link = await rt.store.get_record(USER_CODE_KIND, code, now=now) if code else None
    device = await rt.store.get_record(DEVICE_KIND, link.data["device"], now=now) if link else None
    if device is None or device.data["status"] != "pending" or now >= device.data["exp"]:
        await rt.throttle.failed("device-code", ip)
        return await _device_page(
            rt, request, user_code=typed, error="That code is not valid or has expired.", status=400
        )
    session = await rt.signins.from_cookie(read_signin_cookie(request))
    cookie: str | None = None
    if session is None:
        username, password = form.get("username", ""), form.get("password", "")
        try:
            await riskwire.check_block(rt, ip)  # a network blocked by the risk engine
            await rt.throttle.check(username, ip)
            who = await rt.users.authenticate(username, password)
        except RateLimited:
            return await _device_page(
                rt, request, user_code=typed, error="Too many attempts; wait a minute.", status=429
            )
        except InvalidGrant:
            rt.metrics.login_failures.inc()
            await rt.throttle.failed(username, ip)
            await riskwire.sign_in_failed(rt, username=username, password=password, address=ip)
            return await _device_page(
                rt, request, user_code=typed, error="Wrong username or password.", status=401
            )
        await rt.throttle.succeeded(username)
        refused = await riskwire.page_signed_in(
            rt, sub=who.username, client_id=device.data["client_id"], address=ip
        )
        if refused is not None:
            return await _device_page(rt, request, user_code=typed, error=refused, status=403)
        session, cookie = await rt.signins.start(
            who.username, ip=ip, user_agent=user_agent(request)
        )
    client = await rt.clients.get(device.data["client_id"])
    user = await rt.users.get(session.sub)
    if client is None or user is None or user.disabled:
        return await _device_page(rt, request, error="This sign-in is no longer valid.")
    try:
        grant = await compute_grant(
            rt, device.data["scope"], client, user, device.data.get("resources"), max_resources=1
        )
    except (InvalidScope, InvalidTarget) as exc:
        return page(
            "message.html",
            {"heading": "This request cannot be completed", "message": exc.description},
            status=400,
        )
    request_id, csrf = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
    await rt.store.create_record(
        GrantRecord(
            PAGE_KIND,
            request_id,
            "",
            {"csrf": csrf, "device": device.key, "sid": session.sid},
            now + EXPIRES_IN,
        ),
        now=now,
    )
    resp = page(
        "consent.html",
        {
            "action": "/device/consent",
            "client_name": _name(client),
            "username": user.username,
            "scopes": list(grant.scope),
            "resources": list(grant.resources),
            "request_id": request_id,
            "csrf_token": csrf,
        },
    )
    if cookie is not None:
        set_signin_cookie(resp, cookie, max_age=int(rt.settings.signin_absolute_ttl))
    return resp


def _name(client: Client) -> str:
    return client.name or client.client_id


@router.post("/device/consent", include_in_schema=False)
async def device_consent(request: Request) -> Response:
    rt = get_runtime(request)
    form = await _page_form(request)
    now = rt.clock.now()
    rid = form.get("request_id", "")[:64]
    rec = await rt.store.get_record(PAGE_KIND, rid, now=now) if rid else None
    problem = await _check_page_form(rt, request, form)
    if problem is not None or rec is None or "device" not in rec.data:
        return page(
            "message.html",
            {"heading": "This request cannot be completed", "message": problem or "expired"},
            status=403,
        )
    session = await rt.signins.from_cookie(read_signin_cookie(request))
    if session is None or session.sid != rec.data["sid"]:
        return await _device_page(rt, request, error="Your sign-in has ended; sign in again.")
    decision = form.get("decision")
    if decision not in ("allow", "deny"):
        return page(
            "message.html",
            {"heading": "This request cannot be completed", "message": "allow or deny"},
            status=400,
        )
    granted: dict[str, Any] = {}
    for _ in range(5):
        device = await rt.store.get_record(DEVICE_KIND, rec.data["device"], now=now)
        if device is None or device.data["status"] != "pending" or now >= device.data["exp"]:
            return await _device_page(rt, request, error="That code has expired.")
        user = await rt.users.get(session.sub)
        client = await rt.clients.get(device.data["client_id"])
        if user is None or client is None:
            return await _device_page(rt, request, error="This sign-in is no longer valid.")
        if decision == "allow":
            try:
                grant = await compute_grant(
                    rt,
                    device.data["scope"],
                    client,
                    user,
                    device.data.get("resources"),
                    max_resources=1,
                )
            except (InvalidScope, InvalidTarget) as exc:
                return page(
                    "message.html",
                    {"heading": "This request cannot be completed", "message": exc.description},
                    status=400,
                )
            granted = {"scope": grant.scope_text, "resources": list(grant.resources)}
        device.data.update(
            status="approved" if decision == "allow" else "denied",
            sub=session.sub,
            signin_sid=session.sid,
            auth_time=session.auth_time,
            **granted,
        )
        if await rt.store.update_record(device, now=now):
            await rt.store.delete_record(USER_CODE_KIND, device.data["user_code"])
            break
    emit("device_" + ("approved" if decision == "allow" else "denied"), sub=session.sub)
    heading = "Device connected" if decision == "allow" else "Access denied"
    message = "You can return to your device." if decision == "allow" else "The device was refused."
    return page("message.html", {"heading": heading, "message": message})


async def exchange_device_code(
    rt: Runtime,
    request: Request,
    client: Client,
    form: dict[str, str],
    *,
    dpop_jkt: str | None = None,
) -> dict[str, Any]:
    device_code = form.get("device_code")
    if device_code is None:
        raise InvalidRequest("device_code is required")
    now = rt.clock.now()
    rec = await rt.store.get_record(DEVICE_KIND, _hash(device_code[:256]), now=now)
    if rec is None:
        raise InvalidGrant("unknown device_code")
    d = rec.data
    if not hmac.compare_digest(str(d["client_id"]).encode(), client.client_id.encode()):
        raise InvalidGrant("the device_code was issued to another client")
    if now >= d["exp"]:
        raise ExpiredToken("the device_code has expired; start again")
    status = d["status"]
    if status == "denied":
        raise AccessDenied("the user denied the request")
    if status == "used":
        raise InvalidGrant("the device_code was already exchanged")
    if status == "pending":
        too_fast = now - float(d["last_poll"]) < float(d["interval"])
        d["interval"] = int(d["interval"]) + (5 if too_fast else 0)  # §3.5: +5 s
        d["last_poll"] = now
        await rt.store.update_record(rec, now=now)
        if too_fast:
            raise SlowDown(f"poll at most every {d['interval']} seconds")
        raise AuthorizationPending("the user has not finished yet")
    granted_resources = [str(r) for r in d.get("resources") or []]
    asked = asked_resource(request, granted_resources)  # checked before the code is used
    d["status"] = "used"
    if not await rt.store.update_record(rec, now=now):
        raise InvalidGrant("the device_code was already exchanged")
    user = await rt.users.get(d["sub"])
    why = session_refusal(user, created_at=float(d["auth_time"]))
    if user is None or why is not None:
        raise InvalidGrant(f"the approval of this device_code is void ({why})")
    signin = await rt.signins.get(d["signin_sid"])
    scope = str(d["scope"] or "")
    access = await access_for(rt, client, user, scope, granted_resources, asked)
    pair = await start_user_session(
        rt, request, client, user, scope, access, dpop_jkt, device="device flow"
    )
    if signin is not None:
        await rt.signins.note_issue(signin.sid, client.client_id, pair.session_id)
    rt.metrics.tokens_issued.labels(grant="device_code").inc()
    return token_response(
        rt, client, user, pair, scope, auth_time=float(d["auth_time"]), sid=d["signin_sid"]
    )
