"""Cross-tab single-flight of the browser SDK, in four tabs of the console (which uses
``/sdk/tokenward.js``) signed in with the cookie mode against ``tokenward serve`` with
2-second access tokens: one refresh per expiry and no grace replays while every tab keeps
calling ``/userinfo`` through the SDK's ``fetch``; a tab closed while it holds the refresh
lock does not wedge the others; logout in one tab signs out all four.

The page is served as ``http://localhost:PORT`` (a secure context: the ``Secure`` refresh
cookie is kept over plain HTTP). The measured counts are printed (``pytest -s``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from .conftest import Live

pytestmark = pytest.mark.slow

TABS = 4
EXPIRIES = 3
NAME = "tokenward.console"
STASH = f"{NAME}:session"
API = "/console/static/api.js"

LOOP = """async () => {
  const { auth } = await import('/console/static/api.js');
  window.__calls = {};
  window.__stop = false;
  window.__loop = (async () => {
    while (!window.__stop) {
      let outcome;
      try { outcome = String((await auth.fetch('/userinfo')).status); }
      catch (err) { outcome = err.name; }
      window.__calls[outcome] = (window.__calls[outcome] || 0) + 1;
      await new Promise((r) => setTimeout(r, 40));
    }
  })();
}"""


def _seq(page: Any) -> int:
    """The tabs' shared sequence number, from the IndexedDB record (every tab sees a committed
    write at once; a tab's localStorage copy may lag another tab's write)."""
    script = f"""async () => {{
      const {{ indexedDBRecordStore }} = await import('/sdk/tokenward.js');
      const rec = await indexedDBRecordStore('{NAME}').get();
      const stash = JSON.parse(localStorage.getItem('{STASH}') || '{{}}');
      return Math.max(Number(rec && rec.seq) || 0, Number(stash.seq) || 0);
    }}"""
    return int(page.evaluate(script))


def _idle(pages: list[Any]) -> bool:
    """No tab has a refresh in flight."""
    script = f"async () => (await import('{API}')).auth._inflight === null"
    return all(p.evaluate(script) for p in pages)


def _user(request: pytest.FixtureRequest) -> str:
    return f"tabs-{request.node.name[-20:].strip('_')}"


@pytest.fixture
def tabs(browser: Any, live: Live, request: pytest.FixtureRequest) -> Iterator[list[Any]]:
    """A user of its own, signed in through the console in tab 1; tabs 2-4 opened after it
    take their token from tab 1 (BroadcastChannel) instead of refreshing."""
    user = _user(request)
    r = live.admin("POST", "/admin/users", json={"username": user, "password": "tab-password-1"})
    assert r.status_code == 201, r.text
    port = live.base.rsplit(":", 1)[1]
    ctx = browser.new_context(base_url=f"http://localhost:{port}")
    pages: list[Any] = []
    try:
        first = ctx.new_page()
        first.set_default_timeout(15_000)
        first.goto("/console")
        first.fill("#signin-username", user)
        first.fill("#signin-password", "tab-password-1")
        first.click("#signin-submit")
        first.wait_for_selector(f"#who-name:text-is('{user}')")
        pages.append(first)
        for _ in range(TABS - 1):
            p = ctx.new_page()
            p.set_default_timeout(15_000)
            p.goto("/console")
            p.wait_for_selector(f"#who-name:text-is('{user}')")
            pages.append(p)
        yield pages
    finally:
        ctx.close()


def test_four_tabs_refresh_once_per_expiry_without_grace_replays(
    tabs: list[Any], live: Live
) -> None:
    # The baselines are taken between refreshes: with 2-second tokens a tab's timer may refresh
    # at any moment, and a refresh that lands between reading the server's counter and reading
    # the tabs' sequence would count on one side only.
    for _ in range(100):
        idle1, s1 = _idle(tabs), _seq(tabs[0])
        before = live.counters()
        start, idle2 = _seq(tabs[0]), _idle(tabs)
        if idle1 and idle2 and s1 == start == _seq(tabs[0]):
            break
        time.sleep(0.05)
    else:
        pytest.fail("the tabs never paused between refreshes")
    for p in tabs:
        p.evaluate(LOOP)
    deadline = time.monotonic() + 60
    while _seq(tabs[0]) < start + EXPIRIES and time.monotonic() < deadline:
        time.sleep(0.05)  # polling the shared record; the tabs' own timers do the work
    for p in tabs:  # stop the calls and the SDK's own timer; let a refresh in flight land
        p.evaluate(
            f"""async () => {{
              const {{ auth }} = await import('{API}');
              window.__stop = true;
              await window.__loop;
              auth._schedule = () => {{}};
              clearTimeout(auth._timer);
              try {{ await auth._inflight; }} catch {{ /* counted below */ }}
            }}"""
        )
    # a refresh that completed while the loops were being stopped reaches the other tabs'
    # shared sequence through the BroadcastChannel a moment later: let it arrive
    deadline = time.monotonic() + 5
    while True:
        after = live.counters()
        caught_up = _seq(tabs[0]) - start == after.get("tokenward_refreshes_total", 0.0) - (
            before.get("tokenward_refreshes_total", 0.0)
        )
        if caught_up or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    calls: dict[str, int] = {}
    for p in tabs:
        for k, v in p.evaluate("window.__calls").items():
            calls[k] = calls.get(k, 0) + v

    def d(name: str) -> float:
        return after.get(name, 0.0) - before.get(name, 0.0)

    print(
        f"\n4 tabs: refreshes +{d('tokenward_refreshes_total'):g}, grace replays "
        f"+{d('tokenward_grace_replays_total'):g}, POST /token {d('requests/token'):g}, "
        f"GET /userinfo {d('requests/userinfo'):g}, outcomes {calls}"
    )
    # each refresh bumps the tabs' shared sequence once (a tab's timer may have done one more
    # while the loops were being stopped on a slow machine)
    refreshed = _seq(tabs[0]) - start
    assert refreshed >= EXPIRIES
    assert set(calls) == {"200"}
    assert d("tokenward_refreshes_total") == refreshed
    assert d("tokenward_grace_replays_total") == 0
    assert d("requests/token") == refreshed
    for p in tabs:  # every tab holds the one current token
        p.wait_for_function(
            f"async () => (await import('{API}')).auth._state.seq === {start + refreshed}"
        )


def test_closing_the_tab_that_holds_the_refresh_lock_does_not_wedge_the_others(
    tabs: list[Any],
) -> None:
    holder, others = tabs[0], tabs[1:]
    held: list[Any] = []
    holder.route("**/token", lambda route: held.append(route))  # the refresh never answers
    # the server "refused" the holder's token: it must refresh (under the lock) now
    holder.evaluate(
        f"() => {{ import('{API}').then(({{ auth }}) => "
        "auth.refresh({ rejected: auth._state.token }).catch(() => {})); }"
    )
    deadline = time.monotonic() + 15
    while not held and time.monotonic() < deadline:
        holder.wait_for_timeout(20)  # lets Playwright deliver the route callback
    assert held, "the holder's refresh request is in flight"
    locks = others[0].evaluate(
        "async () => (await navigator.locks.query()).held.map((l) => l.name)"
    )
    assert "tokenward.console:refresh" in locks
    holder.close()  # mid-refresh: the browser releases its Web Lock
    old = others[0].evaluate(f"async () => (await import('{API}')).auth.claims.jti")
    for p in others:  # each as if the server had just refused the token it holds
        out = p.evaluate(
            f"""async () => {{
              const {{ auth }} = await import('{API}');
              const t0 = Date.now();
              const token = await auth.refresh({{ rejected: auth._state.token }});
              const r = await auth.fetch('/userinfo');
              return {{ status: r.status, jti: auth.claims.jti, ms: Date.now() - t0, ok: !!token }};
            }}"""
        )
        assert out["status"] == 200 and out["ok"]
        assert out["jti"] != old
    jtis = {p.evaluate(f"async () => (await import('{API}')).auth.claims.jti") for p in others}
    assert len(jtis) == 1


def test_logout_in_one_tab_signs_out_every_tab(
    tabs: list[Any], live: Live, request: pytest.FixtureRequest
) -> None:
    token = tabs[2].evaluate(f"async () => (await import('{API}')).auth.accessToken()")
    tabs[0].click("#signout")
    for p in tabs:
        p.wait_for_selector("#view-signin:not([hidden])")
        assert p.evaluate(f"async () => (await import('{API}')).auth.signedIn") is False
        assert p.evaluate(f"localStorage.getItem('{STASH}')") is None
    r = httpx.get(f"{live.base}/userinfo", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 401  # the session really ended on the server
    # and signing in again in one tab signs every tab in
    user = _user(request)
    tabs[3].fill("#signin-username", user)
    tabs[3].fill("#signin-password", "tab-password-1")
    tabs[3].click("#signin-submit")
    for p in tabs:
        p.wait_for_selector(f"#who-name:text-is('{user}')")


def test_a_console_tab_from_before_the_sdk_still_refreshes_on_reload(tabs: list[Any]) -> None:
    page = tabs[0]
    for p in tabs[1:]:
        p.close()
    # what the console kept before it used the SDK: {csrf, clientId} in sessionStorage
    page.evaluate(
        f"""() => {{
          const s = JSON.parse(localStorage.getItem('{STASH}'));
          localStorage.removeItem('{STASH}');
          sessionStorage.setItem('tokenward.console',
            JSON.stringify({{ csrf: s.csrf, clientId: s.clientId }}));
        }}"""
    )
    with page.expect_response(lambda r: r.url.endswith("/token")) as refreshed:
        page.reload()
    assert refreshed.value.status == 200
    page.wait_for_selector("#view-sessions:not([hidden])")
    assert page.evaluate("sessionStorage.getItem('tokenward.console')") is None
    assert _seq(page) >= 1
