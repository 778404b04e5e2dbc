"""``tokenward demo``: the whole token lifecycle against an in-process server, as a timeline.

The server is the real app (:func:`tokenward.server.create_app`) on a throwaway store
(``memory://`` by default, or e.g. a temp ``sqlite:///...``) with a frozen clock that the demo
moves forward, driven over HTTP in-process (``httpx.ASGITransport``). Each step checks what it
shows; a step that does not behave stops the demo with exit code 1.

keys generated → login → access token verified → access token expired (clock moved) →
refresh (rotation) → grace replay (same successor) → reuse detected (family revoked, its access
token rejected) → log out everywhere → key rotation (old and new tokens both verify).

Token values are never printed: only their kind, size and key id.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import secrets
from collections.abc import Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Annotated, Any

import orjson
import structlog
import typer
from rich.table import Table

from ..clock import FrozenClock
from ._common import cli_errors, fail, get_clock, out_console

__all__ = ["STEPS", "demo"]

#: The timeline's steps, in order (the test asserts each one is printed).
STEPS = (
    "keys generated",
    "login",
    "access token verified",
    "access token expired",
    "refresh (rotation)",
    "grace replay",
    "reuse detected",
    "log out everywhere",
    "key rotation",
)
_PASSWORD = secrets.token_urlsafe(12)
_CLIENT = "tokenward-console"


class DemoFailed(Exception):
    """A step did not behave as the lifecycle says it must."""


@dataclass
class Timeline:
    clock: FrozenClock
    start: float
    rows: list[tuple[str, str, str, str]] = field(default_factory=list)
    events: list[str] = field(default_factory=list)

    def on_event(self, event: str, fields: Mapping[str, Any]) -> None:
        kind = fields.get("kind")
        self.events.append(f"{event}:{kind}" if kind else event)

    def add(self, step: str, detail: str) -> None:
        offset = self.clock.now() - self.start
        events, self.events = ", ".join(dict.fromkeys(self.events)), []
        self.rows.append((_offset(offset), step, detail, events))

    def table(self) -> Table:
        t = Table(title="tokenward demo: one session's life", title_justify="left")
        t.add_column("t", justify="right", style="dim", no_wrap=True)
        t.add_column("step", style="bold", no_wrap=True)
        t.add_column("what happened")
        t.add_column("security events", style="cyan")
        for row in self.rows:
            t.add_row(*row)
        return t


def _offset(seconds: float) -> str:
    s = int(seconds)
    if s < 60:
        return f"+{s}s"
    if s < 3600:
        return f"+{s // 60}m{s % 60:02d}s"
    return f"+{s // 3600}h{s % 3600 // 60:02d}m"


def _kid(token: str) -> str:
    header = token.split(".", 1)[0]
    doc = orjson.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))
    return str(doc.get("kid", "?"))


def _expect(ok: bool, what: str) -> None:
    if not ok:
        raise DemoFailed(what)


async def _run(store_url: str, timeline: Timeline) -> None:
    import httpx

    from ..events import add_listener
    from ..server import create_app
    from ..server.settings import Settings
    from ..store.memory import MemoryStore

    clock = timeline.clock
    settings = Settings(
        store_url=store_url,
        issuer="http://tokenward.demo",
        admin_password=_PASSWORD,
        key_encryption_key=base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
        refresh_grace_seconds=10,
        key_rotation_days=0,
        login_limit_per_account="100/minute",
        login_limit_per_ip="100/minute",
        # the demo's clock jumps minutes at a time; its feed never goes down
        revocation_max_staleness=7 * 86400,
    )
    created: list[bool] = []
    app = create_app(
        settings,
        store=MemoryStore() if store_url.startswith("memory") else None,
        clock=clock,
        on_bootstrap=lambda report: created.append(report.keys_created),
    )
    ttl = settings.access_token_ttl
    async with AsyncExitStack() as stack:
        stack.callback(add_listener(timeline.on_event))
        await stack.enter_async_context(app.router.lifespan_context(app))
        http = await stack.enter_async_context(
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=settings.issuer)
        )
        rt = app.state.runtime

        async def login(username: str, password: str, **extra: str) -> dict[str, Any]:
            r = await http.post(
                "/login",
                json={"username": username, "password": password, "client_id": _CLIENT, **extra},
            )
            _expect(r.status_code == 200, f"login of {username} answered {r.status_code}")
            body: dict[str, Any] = r.json()
            return body

        async def userinfo(access_token: str) -> httpx.Response:
            return await http.get("/userinfo", headers={"Authorization": f"Bearer {access_token}"})

        async def refresh(refresh_token: str) -> httpx.Response:
            return await http.post(
                "/token",
                data={
                    "grant_type": "refresh_token",
                    "refresh_token": refresh_token,
                    "client_id": _CLIENT,
                },
            )

        # 1. keys -------------------------------------------------------------------------
        jwks = (await http.get("/.well-known/jwks.json")).json()["keys"]
        _expect(created == [True] and len(jwks) >= 1, "a first start generates the keys")
        first_kids = {k["kid"] for k in jwks}
        timeline.add(
            STEPS[0],
            f"{jwks[0]['alg']}: {len(jwks)} public keys at /.well-known/jwks.json (the active "
            "one and the next, published before it ever signs); private parts encrypted in "
            "the store",
        )

        # 2. login ------------------------------------------------------------------------
        await rt.users.create("alice", _PASSWORD)
        pair = await login("alice", _PASSWORD, device="laptop")
        at, rt0 = pair["access_token"], pair["refresh_token"]
        _expect(rt0.startswith("twr_"), "refresh tokens carry the twr_ prefix")
        timeline.add(
            STEPS[1],
            f"alice → access token ({len(at)} B JWS, {pair['expires_in'] // 60} min) + "
            f"opaque refresh token (twr_…, only its SHA-256 stored), session "
            f"{pair['session_id'][:8]}…",
        )

        # 3. verified ---------------------------------------------------------------------
        r = await userinfo(at)
        _expect(r.status_code == 200 and r.json()["sub"] == "alice", "/userinfo accepts it")
        timeline.add(STEPS[2], "GET /userinfo → 200: signature, iss, aud, exp, typ and denylist ok")

        # 4. expiry -----------------------------------------------------------------------
        clock.advance(ttl + settings.leeway + 1)
        r = await userinfo(at)
        _expect(r.status_code == 401, "an expired access token is refused")
        timeline.add(
            STEPS[3],
            f"clock moved {ttl // 60} min + leeway → GET /userinfo → 401 "
            f"{r.json()['error_description']!r}",
        )

        # 5. refresh ----------------------------------------------------------------------
        r = await refresh(rt0)
        _expect(r.status_code == 200, "the refresh grant rotates the token")
        rot = r.json()
        at1, rt1 = rot["access_token"], rot["refresh_token"]
        _expect(rt1 != rt0 and (await userinfo(at1)).status_code == 200, "new pair works")
        timeline.add(
            STEPS[4],
            "POST /token grant_type=refresh_token → new access token + new refresh token; "
            "the presented one is consumed",
        )

        # 6. grace replay -----------------------------------------------------------------
        clock.advance(2)
        r = await refresh(rt0)
        _expect(r.status_code == 200, "the parent inside the grace window is answered")
        _expect(r.json()["refresh_token"] == rt1, "grace replay returns the same successor")
        timeline.add(
            STEPS[5],
            f"the parent again 2 s later (a racing tab) → the SAME successor, a fresh access "
            f"token; no second branch (grace window {settings.refresh_grace_seconds:g} s)",
        )

        # 7. reuse ------------------------------------------------------------------------
        clock.advance(settings.refresh_grace_seconds + 1)
        r = await refresh(rt0)
        _expect(r.status_code == 400 and r.json()["error"] == "invalid_grant", "reuse refused")
        dead_at = (await userinfo(at1)).status_code
        dead_rt = (await refresh(rt1)).status_code
        _expect(dead_at == 401 and dead_rt == 400, "the family and its access tokens are revoked")
        timeline.add(
            STEPS[6],
            "the parent after the window (a stolen copy?) → 400 invalid_grant; the whole "
            f"family revoked: its access token → {dead_at}, its current refresh token → {dead_rt}",
        )

        # 8. log out everywhere -----------------------------------------------------------
        phone = await login("alice", _PASSWORD, device="phone")
        laptop = await login("alice", _PASSWORD, device="laptop")
        r = await http.post(
            "/logout-all", headers={"Authorization": f"Bearer {phone['access_token']}"}
        )
        _expect(r.status_code == 200, "log out everywhere")
        n = r.json()["sessions_revoked"]
        refused = [(await userinfo(p["access_token"])).status_code for p in (phone, laptop)]
        _expect(refused == [401, 401], "every access token of alice is refused")
        timeline.add(
            STEPS[7],
            f"two new sessions (phone, laptop) → POST /logout-all → {n} sessions revoked; "
            "both access tokens → 401 (subject watermark, O(1) check)",
        )

        # 9. key rotation -----------------------------------------------------------------
        clock.advance(1)
        admin = await login("admin", _PASSWORD, scope="admin")
        old_kid = _kid(admin["access_token"])
        r = await http.post(
            "/admin/keys/rotate", headers={"Authorization": f"Bearer {admin['access_token']}"}
        )
        _expect(r.status_code == 200, "an administrator rotates the signing key")
        fresh = await login("alice", _PASSWORD, device="tablet")
        new_kid = _kid(fresh["access_token"])
        published = {k["kid"] for k in (await http.get("/.well-known/jwks.json")).json()["keys"]}
        both = [
            (await userinfo(t)).status_code for t in (admin["access_token"], fresh["access_token"])
        ]
        _expect(new_kid != old_kid and {old_kid, new_kid} <= published, "both keys published")
        _expect(both == [200, 200], "tokens of the old and the new key both verify")
        early = "published since the first start" if new_kid in first_kids else "new"
        timeline.add(
            STEPS[8],
            f"POST /admin/keys/rotate → new tokens signed by {new_kid[:12]}… ({early}); the "
            f"retired {old_kid[:12]}… stays in the JWKS until its tokens expire; both verify",
        )


@cli_errors
def demo(
    store: Annotated[
        str,
        typer.Option(
            "--store",
            help="A throw-away store: memory:// (default) or a new SQLite file, e.g. "
            "sqlite:////tmp/tokenward-demo.db (four slashes: an absolute path).",
        ),
    ] = "memory://",
) -> None:
    """Walk the whole token lifecycle against an in-process server and print a timeline."""
    from ..server.settings import load_settings

    db = load_settings(store_url=store).sqlite_path
    if db is not None and db.exists():
        raise fail(
            f"--store: {db.resolve()} exists; the demo needs a new, throw-away store (its keys "
            "are encrypted under a one-off key): remove the file or give another path"
        )
    start = get_clock().now()
    timeline = Timeline(FrozenClock(start), start)
    saved = structlog.get_config()
    # the server's access log and security events (shown in the table) would drown the
    # timeline: keep errors only
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    try:
        asyncio.run(_run(store, timeline))
    except DemoFailed as exc:
        out_console.print(timeline.table())
        out_console.print(f"[bold red]demo failed:[/] {exc}", markup=True)
        raise typer.Exit(1) from None
    finally:
        structlog.configure(**saved)
    out_console.print(timeline.table())
    out_console.print(
        "[green]every step behaved[/]: this is what `tokenward serve` does, over HTTP.",
        markup=True,
    )
