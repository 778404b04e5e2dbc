"""RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0) and back-channel logout
(OpenID Connect Back-Channel Logout 1.0).

``GET/POST /end_session`` (the metadata's ``end_session_endpoint``): with a valid
``id_token_hint`` (an ID token this server issued; an expired one is still a valid hint) the
sign-in session it names ends at once; without one the user confirms on a page (a form with
``csrf_token``), so a cross-site link cannot log anyone out. ``post_logout_redirect_uri`` must be
registered for the client (``client_id`` or the hint's ``aud``) and matched exactly; ``state`` is
passed back. Otherwise a "signed out" page is shown.

Ending a sign-in session revokes the refresh families started within it and sends a logout
token to each client that was issued tokens within it and registered a
``backchannel_logout_uri`` (through the :mod:`.outbox`). "Log out everywhere" and an admin's
revocation of a user do the same for each of the user's sign-in sessions.
"""

from __future__ import annotations

import hmac
import secrets
from urllib.parse import parse_qsl, urlencode

from fastapi import APIRouter, Request, Response
from fastapi.responses import RedirectResponse

from ...events import emit
from ...store.base import Family, GrantRecord
from ..deps import get_runtime
from ..pages import form_origin_ok, page
from ..runtime import Runtime
from ..signin import SigninSession, clear_signin_cookie, read_signin_cookie

__all__ = ["end_family", "notify_ended", "notify_family_ended", "router"]

router = APIRouter(tags=["logout"])

CONFIRM_KIND = "logoutreq"


async def notify_ended(rt: Runtime, sessions: list[SigninSession], *, reason: str) -> None:
    """Revoke the families of ended sign-in sessions and queue back-channel logout tokens."""
    for s in sessions:
        for family in s.families:
            await rt.sessions.revoke_session(family, reason=reason)
        for client_id in s.clients:
            client = await rt.clients.get(client_id)
            if client is None or not client.backchannel_logout_uri:
                continue
            token = rt.id_tokens.logout_token(sub=s.sub, sid=s.sid, client_id=client_id)
            await rt.outbox.enqueue(
                client.backchannel_logout_uri,
                urlencode({"logout_token": token}).encode(),
                "application/x-www-form-urlencoded",
                kind="backchannel_logout",
            )
        emit("signin_ended", sub=s.sub, sid=s.sid, reason=reason, clients=len(s.clients))


async def notify_family_ended(rt: Runtime, family: Family) -> None:
    """A refresh family ended alone (reuse detection, logout, a revoke of that session): send its
    client a logout token for each sign-in session that started it; the sign-in session itself
    goes on."""
    client = await rt.clients.get(family.client_id)
    if client is None or not client.backchannel_logout_uri:
        return
    for s in await rt.signins.list_for(family.sub):
        if family.sid not in s.families:
            continue
        token = rt.id_tokens.logout_token(sub=s.sub, sid=s.sid, client_id=client.client_id)
        await rt.outbox.enqueue(
            client.backchannel_logout_uri,
            urlencode({"logout_token": token}).encode(),
            "application/x-www-form-urlencoded",
            kind="backchannel_logout",
        )


async def end_family(rt: Runtime, sid: str, *, reason: str) -> bool:
    """End one refresh family (logout, a user's or an admin's revoke) and tell its client over
    the back channel; ``False`` when there was nothing live to end."""
    if not await rt.sessions.revoke_session(sid, reason=reason):
        return False
    family = await rt.store.get_family(sid)
    if family is not None:
        await notify_family_ended(rt, family)
    return True


async def _params(request: Request) -> dict[str, str]:
    if request.method == "GET":
        pairs = parse_qsl(request.url.query, keep_blank_values=False, max_num_fields=16)
    else:
        body = await request.body()
        try:
            pairs = parse_qsl(body.decode("utf-8")[:16384], max_num_fields=16)
        except (UnicodeDecodeError, ValueError):
            pairs = []
    return {k: v for k, v in pairs}


def _message(heading: str, message: str, status: int = 200) -> Response:
    return page("message.html", {"heading": heading, "message": message}, status=status)


async def _finish(
    rt: Runtime, session: SigninSession | None, redirect: str | None, state: str | None
) -> Response:
    if session is not None:
        ended = await rt.signins.end(session.sid)
        if ended is not None:
            await notify_ended(rt, [ended], reason="rp_logout")
    resp: Response
    if redirect is not None:
        params = {"state": state} if state else {}
        sep = "&" if "?" in redirect else "?"
        target = redirect + (sep + urlencode(params) if params else "")
        resp = RedirectResponse(target, status_code=303, headers={"Cache-Control": "no-store"})
    else:
        resp = _message("You are signed out", "You can close this window.")
    clear_signin_cookie(resp)
    return resp


@router.api_route("/end_session", methods=["GET", "POST"], include_in_schema=False)
async def end_session(request: Request) -> Response:
    rt = get_runtime(request)
    p = await _params(request)
    hint = rt.id_tokens.verify_hint(p["id_token_hint"]) if "id_token_hint" in p else None
    if "id_token_hint" in p and hint is None:
        return _message("Cannot sign out", "id_token_hint is not an ID token of this server", 400)
    client_id = p.get("client_id") or (str(hint["aud"]) if hint else None)
    if hint and p.get("client_id") and p["client_id"] != hint.get("aud"):
        return _message("Cannot sign out", "client_id does not match the id_token_hint", 400)
    redirect = p.get("post_logout_redirect_uri")
    if redirect is not None:
        client = await rt.clients.get(client_id) if client_id else None
        if client is None or redirect not in client.post_logout_redirect_uris:
            # never an open redirector: shown on a page
            return _message(
                "Cannot sign out",
                "post_logout_redirect_uri is not registered for this client",
                400,
            )
    state = p.get("state")
    cookie_session = await rt.signins.from_cookie(read_signin_cookie(request))
    if hint is not None:
        session = await rt.signins.get(str(hint.get("sid", "")))
        if session is not None and session.sub != hint["sub"]:
            session = None
        if cookie_session is not None and session is not None and cookie_session.sid != session.sid:
            session = None  # the hint names another browser's sign-in: end neither blindly
        return await _finish(rt, session, redirect, state)
    if cookie_session is None:
        return await _finish(rt, None, redirect, state)
    if request.method == "POST" and "csrf_token" in p:
        rid = p.get("request_id", "")[:64]
        rec = await rt.store.get_record(CONFIRM_KIND, rid, now=rt.clock.now()) if rid else None
        if (
            rec is None
            or not form_origin_ok(request, rt.settings.issuer)
            or not hmac.compare_digest(str(rec.data["csrf"]).encode(), p["csrf_token"].encode())
            or rec.data["sid"] != cookie_session.sid
        ):
            return _message("Cannot sign out", "the form's csrf_token is wrong or expired", 403)
        await rt.store.delete_record(CONFIRM_KIND, rid)
        return await _finish(rt, cookie_session, rec.data.get("redirect"), rec.data.get("state"))
    # no hint: the user confirms (a cross-site link alone cannot sign anyone out)
    rid, csrf = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
    now = rt.clock.now()
    data = {"csrf": csrf, "sid": cookie_session.sid, "redirect": redirect, "state": state}
    await rt.store.create_record(GrantRecord(CONFIRM_KIND, rid, "", data, now + 600), now=now)
    return page(
        "logout.html",
        {"username": cookie_session.sub, "request_id": rid, "csrf_token": csrf},
        redirect_to=redirect,
    )
