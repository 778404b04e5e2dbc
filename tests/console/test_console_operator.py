"""Console details an operator meets: the sign-in error in words, notices that end with the
next action, no Disable on your own row, self-service password change, live events in the
order they happened with a date when not today."""

from __future__ import annotations

from typing import Any

import pytest

from support.console import ADMIN_PW, LiveServer, sign_in

pytestmark = pytest.mark.slow


def test_sign_in_error_is_in_words_only(page: Any, live: LiveServer) -> None:
    live.add_user("hank", "hank-password-1")
    page.goto("/console")
    page.wait_for_selector("#view-signin:not([hidden])")
    page.fill("#signin-username", "hank")
    page.fill("#signin-password", "wrong password")
    page.click("#signin-submit")
    page.wait_for_selector("#status:not([hidden])")
    text = page.inner_text("#status")
    assert "invalid username or password" in text
    assert "(400)" not in text and "400" not in text and "invalid_grant" not in text
    assert page.errors == []


def test_notices_are_cleared_on_the_next_action_and_no_disable_on_own_row(
    page: Any, live: LiveServer
) -> None:
    live.add_user("ivan", "ivan-password-1")
    sign_in(page, "admin", ADMIN_PW, admin=True)
    page.click(".tabs a[data-view='admin']")
    page.wait_for_selector("#users-table button[data-user=ivan]")
    # the signed-in admin's own row offers no Disable
    assert page.locator("#users-table button[data-user=admin]:text('Disable')").count() == 0
    assert page.locator("#users-table button[data-user=ivan]:text('Disable')").count() == 1
    page.click("#users-table button[data-user=ivan]:text('Reset password')")
    page.wait_for_selector("#users-secret:not([hidden])")
    page.wait_for_selector("#status:not([hidden])")
    # the next action (another user's sessions) clears the shown-once password and the status
    page.fill("#subject-input", "ivan")
    page.click("#subject-form button[type=submit]")
    page.wait_for_selector("#users-secret", state="hidden")
    assert page.inner_text("#users-secret") == ""
    page.wait_for_selector("#status:not([hidden]) >> text=/ivan:/")
    assert "Password of ivan reset" not in page.inner_text("#status")
    assert page.errors == []


def test_console_changes_your_own_password(page: Any, live: LiveServer) -> None:
    live.add_user("judy", "judy-password-1")
    other = live.login("judy", "judy-password-1")
    sign_in(page, "judy", "judy-password-1")
    page.fill("#password-form input[name=current_password]", "judy-password-1")
    page.fill("#password-form input[name=new_password]", "judy-password-2")
    page.click("#password-submit")
    page.wait_for_selector("#status:not([hidden]) >> text=/Password changed/")
    assert "1 other session(s) ended" in page.inner_text("#status")
    with live.http() as c:
        r = c.post("/token", data={"grant_type": "refresh_token", "client_id": "tokenward-console",
                                   "refresh_token": other["refresh_token"]})  # fmt: skip
        assert r.status_code == 400
    live.login("judy", "judy-password-2")
    page.click("#sessions-reload")  # this session goes on
    page.wait_for_selector("#status:not([hidden]) >> text=/live session/")
    assert page.errors == []


def test_live_events_newest_first_by_their_time_with_a_date_when_not_today(
    page: Any, live: LiveServer
) -> None:
    sign_in(page, "admin", ADMIN_PW, admin=True)
    out = page.evaluate(
        """async () => {
          const ui = await import('/console/static/ui.js');
          const list = document.createElement('ol');
          const now = Date.now() / 1000;
          for (const [name, at] of [['b', now - 60], ['c', now], ['a', now - 3600 * 50]]) {
            const li = document.createElement('li');
            li.textContent = name;
            ui.insertByTime(list, li, at);
          }
          return {
            order: [...list.children].map((el) => el.textContent),
            today: ui.fmtEventTime(now),
            older: ui.fmtEventTime(now - 3600 * 50),
          };
        }"""
    )
    assert out["order"] == ["c", "b", "a"]  # a late backlog item goes below newer ones
    assert len(out["today"]) == 8  # HH:MM:SS
    assert len(out["older"]) == 19 and out["older"][4] == "-"  # YYYY-MM-DD HH:MM:SS
    assert page.errors == []
