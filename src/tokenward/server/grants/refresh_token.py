"""``grant_type=refresh_token`` (RFC 6749 §6): rotate a refresh token. The token comes from
the form, or (browser mode) from the ``HttpOnly`` cookie together with a CSRF header."""

from __future__ import annotations

from ...errors import InvalidRequest, InvalidTarget, RefreshTokenReused
from ...sessions import AccessSpec, hash_refresh_token, parse_refresh_token, refresh_token_sid
from ...store.base import Family
from ..cookies import check_csrf, csrf_token, read_refresh_cookie, set_refresh_cookie
from ..credentials import users_read
from ..deps import client_ip, form_resources, user_agent
from ..errors import JSON
from ..riskwire import request_context
from .base import Grant, GrantContext
from .common import token_response

__all__ = ["RefreshTokenGrant"]


class RefreshTokenGrant(Grant):
    name = "refresh_token"
    form_fields = {"refresh_token": {"type": "string"}}  # noqa: RUF012 - read-only class data

    async def handle(self, ctx: GrantContext) -> JSON:
        rt, request, client, form = ctx.runtime, ctx.request, ctx.client, ctx.form
        path = rt.settings.cookie_path
        refresh_token = form.get("refresh_token")
        from_cookie = False
        if refresh_token is None:
            refresh_token = read_refresh_cookie(request, path)
            if refresh_token is None:
                raise InvalidRequest("refresh_token is required")
            from_cookie = True
            if parse_refresh_token(refresh_token) is not None:
                found = await rt.store.get_refresh_token(
                    hash_refresh_token(refresh_token), sid=refresh_token_sid(refresh_token)
                )
                if found is not None:  # unknown tokens fail below with invalid_grant
                    check_csrf(request, rt.csrf_secret, found[1].sid)
        resources = form_resources(request)
        if len(resources) > 1:
            raise InvalidTarget("at most one resource parameter here")

        async def decide(family: Family) -> AccessSpec:
            # the session's grant, narrowed by what the client and user may have now: the
            # client authenticated by this request, the user the credential check just read
            grant, catalog = await rt.authorizer.refresh(
                family,
                scope=form.get("scope"),
                resource=resources[0] if resources else None,
                client=client,
                user=seen.get(family.sub),
            )
            return rt.access_spec(grant, catalog)

        ip, agent = client_ip(request), user_agent(request)
        token = request_context.set((ip, agent))  # read by the risk check of this refresh
        try:
            with users_read() as seen:
                pair = await rt.sessions.refresh(
                    refresh_token,
                    client_id=client.client_id,
                    ip=ip,
                    user_agent=agent,
                    decide=decide,
                    dpop_jkt=ctx.dpop_jkt,
                )
        except RefreshTokenReused:
            # the family is revoked: tell its client by back-channel logout (OIDC BCL 1.0)
            from ..routes.logout import notify_family_ended

            found = await rt.store.get_refresh_token(
                hash_refresh_token(refresh_token), sid=refresh_token_sid(refresh_token)
            )
            if found is not None:
                await notify_family_ended(rt, found[1])
            raise
        finally:
            request_context.reset(token)
        rt.metrics.tokens_issued.labels(grant="refresh_token").inc()
        if not from_cookie:
            return token_response(pair.to_response())
        body = pair.to_response()
        del body["refresh_token"]
        body["csrf_token"] = csrf_token(rt.csrf_secret, pair.session_id)
        resp = token_response(body)
        set_refresh_cookie(
            request,
            resp,
            pair.refresh_token,
            path=path,
            max_age=int(pair.refresh_expires_at - rt.clock.now()),
            secure=rt.settings.cookie_secure,
        )
        return resp
