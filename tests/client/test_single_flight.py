"""One refresh per expiry, whatever the concurrency: 64 threads, 64 asyncio tasks and 8
processes call ``/userinfo`` through the SDK's auth objects against a real ``tokenward serve``
(one worker, 2-second access tokens) until the callers have used four access tokens (the
first and three refreshed ones). The server's own counters must then have risen by exactly 3
refreshes and 0 grace-window replays: a second concurrent refresh of the same token would
show as a grace replay (or, chained, as a fourth refresh).

The measured counts are printed (``pytest -s``) for the record.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from tokenward.client import FileTokenStorage, LoginRequired, TokenManager

from .conftest import CONSOLE, USER, USER_PW, Live

pytestmark = pytest.mark.slow

T = TypeVar("T")

CALLERS = 64
PROCESSES = 8
TOKENS = 4  # the sign-in's token + one per expiry, three expiries


def run_async(main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """``asyncio.run(main())`` on a thread of its own: a Playwright sync session elsewhere in
    the test process keeps an event loop on the main thread."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(main())).result()


def _delta(before: dict[str, float], after: dict[str, float], name: str) -> float:
    return after.get(name, 0.0) - before.get(name, 0.0)


def _report(
    what: str, before: dict[str, float], after: dict[str, float], calls: Counter[str]
) -> None:
    print(
        f"\n{what}: refreshes +{_delta(before, after, 'tokenward_refreshes_total'):g}, "
        f"grace replays +{_delta(before, after, 'tokenward_grace_replays_total'):g}, "
        f"POST /token {_delta(before, after, 'requests/token'):g}, "
        f"GET /userinfo {_delta(before, after, 'requests/userinfo'):g}, outcomes {dict(calls)}"
    )


class TokenWatch:
    """Counts the distinct bearer tokens the callers send; trips ``stop`` at ``TOKENS``."""

    def __init__(self) -> None:
        self.seen: set[str] = set()
        self.stop = threading.Event()
        self._lock = threading.Lock()

    def see(self, request: httpx.Request) -> None:
        auth = request.headers.get("Authorization")
        if auth:
            with self._lock:
                self.seen.add(auth)
                if len(self.seen) >= TOKENS:
                    self.stop.set()


def test_64_threads_refresh_once_per_expiry(live: Live) -> None:
    tm = TokenManager(live.base, CONSOLE)
    tm.login_password(USER, USER_PW)
    first = f"Bearer {tm.access_token()}"
    watch = TokenWatch()
    calls: Counter[str] = Counter()
    lock = threading.Lock()
    before = live.counters()
    with httpx.Client(
        base_url=live.base,
        auth=tm.httpx_auth(),
        timeout=30,
        limits=httpx.Limits(max_connections=CALLERS),
        event_hooks={"request": [watch.see]},
    ) as http:

        def caller() -> None:
            while not watch.stop.is_set():
                status = http.get("/userinfo").status_code
                with lock:
                    calls[str(status)] += 1

        threads = [threading.Thread(target=caller) for _ in range(CALLERS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
    after = live.counters()
    _report("64 threads", before, after, calls)
    # every refresh gives a token some caller then sends, so the distinct tokens sent, apart
    # from the one held when the count started, are one per refresh (a caller already past its
    # check when the fourth token appeared may use a fifth on a slow machine, and on a slow
    # machine the first token may be due before any caller sends it: still one refresh per token)
    refreshed = watch.seen - {first}
    assert len(watch.seen) >= TOKENS
    assert set(calls) == {"200"}
    assert _delta(before, after, "tokenward_refreshes_total") == len(refreshed)
    assert _delta(before, after, "tokenward_grace_replays_total") == 0
    assert _delta(before, after, "requests/token") == len(refreshed)


def test_64_asyncio_tasks_refresh_once_per_expiry(live: Live) -> None:
    tm = TokenManager(live.base, CONSOLE)
    tm.login_password(USER, USER_PW)
    first = f"Bearer {tm.access_token()}"
    watch = TokenWatch()
    calls: Counter[str] = Counter()
    before = live.counters()

    async def main() -> None:
        async def see(request: httpx.Request) -> None:
            watch.see(request)

        async with httpx.AsyncClient(
            base_url=live.base,
            auth=tm.httpx_auth(),
            timeout=30,
            limits=httpx.Limits(max_connections=CALLERS),
            event_hooks={"request": [see]},
        ) as http:

            async def caller() -> None:
                while not watch.stop.is_set():
                    calls[str((await http.get("/userinfo")).status_code)] += 1

            await asyncio.wait_for(asyncio.gather(*(caller() for _ in range(CALLERS))), 120)

    run_async(main)
    after = live.counters()
    _report("64 asyncio tasks", before, after, calls)
    # every refresh gives a token some caller then sends, so the distinct tokens sent, apart
    # from the one held when the count started, are one per refresh (a caller already past its
    # check when the fourth token appeared may use a fifth on a slow machine, and on a slow
    # machine the first token may be due before any caller sends it: still one refresh per token)
    refreshed = watch.seen - {first}
    assert len(watch.seen) >= TOKENS
    assert set(calls) == {"200"}
    assert _delta(before, after, "tokenward_refreshes_total") == len(refreshed)
    assert _delta(before, after, "tokenward_grace_replays_total") == 0
    assert _delta(before, after, "requests/token") == len(refreshed)


def test_8_processes_sharing_a_token_file_refresh_once_per_expiry(
    live: Live, tmp_path: Path
) -> None:
    token_file = tmp_path / "tokens.json"
    stop_file = tmp_path / "stop"
    TokenManager(live.base, CONSOLE, storage=FileTokenStorage(token_file)).login_password(
        USER, USER_PW
    )
    signed_in = FileTokenStorage(token_file).load()
    assert signed_in is not None
    worker = Path(__file__).with_name("proc_worker.py")
    before = live.counters()
    procs = [
        subprocess.Popen(
            [sys.executable, str(worker), live.base, CONSOLE, str(token_file), str(stop_file)],
            stdout=subprocess.PIPE,
            cwd=Path(__file__).parents[2],
        )
        for _ in range(PROCESSES)
    ]
    seen: set[str] = {signed_in["access_token"]}  # the sign-in's token, and one per refresh
    deadline = time.monotonic() + 120
    try:
        while len(seen) < TOKENS and time.monotonic() < deadline:
            data = FileTokenStorage(token_file).load()  # the parent only watches the file
            if data is not None:
                seen.add(data["access_token"])
            time.sleep(0.02)
    finally:
        stop_file.touch()
    calls: Counter[str] = Counter()
    for p in procs:
        out, _ = p.communicate(timeout=60)
        calls.update(json.loads(out or b"{}"))
    after = live.counters()
    last = FileTokenStorage(token_file).load()  # a refresh made while the processes stopped
    if last is not None:
        seen.add(last["access_token"])
    _report("8 processes", before, after, calls)
    assert len(seen) >= TOKENS
    assert set(calls) == {"200"}
    assert _delta(before, after, "tokenward_refreshes_total") == len(seen) - 1
    assert _delta(before, after, "tokenward_grace_replays_total") == 0


def test_8_cli_processes_started_together_with_a_due_token_refresh_once(
    live: Live, tmp_path: Path
) -> None:
    token_file = tmp_path / "tokens.json"
    storage = FileTokenStorage(token_file)
    TokenManager(live.base, CONSOLE, storage=storage).login_password(USER, USER_PW)
    data = storage.load()
    assert data is not None
    worker = Path(__file__).with_name("proc_worker.py")
    before = live.counters()
    procs = [
        subprocess.Popen(
            [sys.executable, str(worker), live.base, CONSOLE, str(token_file), "once"],
            stdout=subprocess.PIPE,
            cwd=Path(__file__).parents[2],
        )
        for _ in range(PROCESSES)
    ]
    deadline = time.monotonic() + 120
    while len(list(tmp_path.glob("tokens.json.ready.*"))) < PROCESSES:
        assert time.monotonic() < deadline, "the processes did not start"
        time.sleep(0.02)
    storage.save({**data, "expires_at": time.time() - 1})  # every process finds it due
    (tmp_path / "tokens.json.go").touch()
    calls: Counter[str] = Counter()
    for p in procs:
        out, _ = p.communicate(timeout=60)
        calls.update(json.loads(out or b"{}"))
    after = live.counters()
    _report("8 processes started together", before, after, calls)
    assert calls == {"200": PROCESSES}
    assert _delta(before, after, "tokenward_refreshes_total") == 1
    assert _delta(before, after, "tokenward_grace_replays_total") == 0


def _revoke(live: Live, tm: TokenManager) -> None:
    data = tm.storage.load()
    assert data is not None
    r = httpx.post(
        f"{live.base}/revoke", data={"token": data["refresh_token"], "client_id": CONSOLE}
    )
    assert r.status_code == 200


def test_revoked_session_gives_every_thread_login_required_without_a_retry_storm(
    live: Live,
) -> None:
    tm = TokenManager(live.base, CONSOLE)
    tm.login_password(USER, USER_PW)
    tm.access_token()
    _revoke(live, tm)
    outcomes: Counter[str] = Counter()
    lock = threading.Lock()
    gate = threading.Barrier(CALLERS)
    before = live.counters()
    with httpx.Client(base_url=live.base, auth=tm.httpx_auth(), timeout=30) as http:

        def caller() -> None:
            gate.wait()
            try:
                outcome = str(http.get("/userinfo").status_code)
            except LoginRequired:
                outcome = "LoginRequired"
            with lock:
                outcomes[outcome] += 1

        threads = [threading.Thread(target=caller) for _ in range(CALLERS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
    after = live.counters()
    _report("revoked session, 64 threads", before, after, outcomes)
    assert outcomes == {"LoginRequired": CALLERS}
    assert _delta(before, after, "requests/token") == 1  # one refresh attempt, refused
    assert _delta(before, after, "requests/userinfo") <= CALLERS  # no caller retried
    assert tm.storage.load() is None


def test_revoked_session_gives_every_task_login_required_without_a_retry_storm(
    live: Live,
) -> None:
    tm = TokenManager(live.base, CONSOLE)
    tm.login_password(USER, USER_PW)
    _revoke(live, tm)
    before = live.counters()

    async def main() -> list[str]:
        async with httpx.AsyncClient(base_url=live.base, auth=tm.httpx_auth(), timeout=30) as h:

            async def caller() -> str:
                try:
                    return str((await h.get("/userinfo")).status_code)
                except LoginRequired:
                    return "LoginRequired"

            return await asyncio.gather(*(caller() for _ in range(CALLERS)))

    outcomes = Counter(run_async(main))
    after = live.counters()
    _report("revoked session, 64 tasks", before, after, outcomes)
    assert outcomes == {"LoginRequired": CALLERS}
    assert _delta(before, after, "requests/token") == 1
    assert _delta(before, after, "requests/userinfo") <= CALLERS
