"""The review's attacks against a live ``tokenward serve``, for the security findings F9, F10, F12.

Scenarios (``--only`` picks some; each starts fresh server processes):

* ``body`` (F10): RSS of the server before and after one anonymous 128 MiB POST to ``/login``
  with ``Transfer-Encoding: chunked`` (SQLite store). Reported: RSS before, after, status.
* ``feed`` (F9/F12): Redis store. An attacking confidential client opens ``--attempts`` SSE
  feed streams (the caps let ``TOKENWARD_FEED_MAX_STREAMS_PER_CLIENT`` of them through, the
  rest get 429) and holds them; then a legitimate client long-polls the feed while this
  process makes ``--samples`` revocations one after another. Reported: streams the attacker
  holds, refused attempts, and the legitimate subscriber's latency (revocation made → event
  received; p50/p95) or its failures.
* ``idle`` (F12): SQLite store. ``--idle`` SSE streams (from a client allowed that many) stay
  open and idle; reported: the server's CPU over 10 s.

``--code PATH`` runs the server from another source tree (e.g. the code before the fixes:
``git archive <commit> src | tar -x -C /tmp/before`` then ``--code /tmp/before/src``); the
same scenarios, same machine, same run. Prints Markdown.

Run: ``.venv/bin/python bench/attacks.py [--code /tmp/before/src]`` (about a minute).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ADMIN_PW = "bench-admin-password"
REDIS_URL = "redis://127.0.0.1:6379/15"
BIN = Path(sys.executable).parent / "tokenward"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Live:
    def __init__(self, store: str, code: str | None, env: dict[str, str]) -> None:
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.cwd = tempfile.mkdtemp(prefix="tw-attacks-")
        full = {k: v for k, v in os.environ.items() if not k.startswith("TOKENWARD_")}
        full.update(env)
        full.update(
            TOKENWARD_STORE_URL=store,
            TOKENWARD_ADMIN_PASSWORD=ADMIN_PW,
            TOKENWARD_ISSUER=self.base,
            TOKENWARD_LOG_JSON="true",
            TOKENWARD_KEY_ENCRYPTION_KEY=base64.urlsafe_b64encode(b"k" * 32).decode(),
        )
        if code:
            full["PYTHONPATH"] = code
        self.proc = subprocess.Popen(
            [str(BIN), "serve", "--port", str(self.port)],
            cwd=self.cwd,
            env=full,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                if httpx.get(f"{self.base}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.1)
        raise RuntimeError("server did not start")

    def rss_mib(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def client(self, client_id: str) -> str:
        """Register a confidential client through the admin API; its secret."""
        tok = httpx.post(
            f"{self.base}/token",
            data={"grant_type": "password", "username": "admin", "password": ADMIN_PW,
                  "client_id": "tokenward-console", "scope": "admin"},
        ).json()["access_token"]  # fmt: skip
        r = httpx.post(
            f"{self.base}/admin/clients",
            json={"client_id": client_id, "grants": ["client_credentials"],
                  "scopes": ["revocations"]},
            headers={"Authorization": f"Bearer {tok}"},
        )  # fmt: skip
        r.raise_for_status()
        return str(r.json()["client_secret"])

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _basic(cid: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{cid}:{secret}".encode()).decode()


# -- F10 ---------------------------------------------------------------------------------------


def body(code: str | None) -> dict[str, Any]:
    live = Live(f"sqlite:///{tempfile.mkdtemp()}/t.db", code, {})
    try:
        time.sleep(1)
        before = live.rss_mib()
        sock = socket.create_connection(("127.0.0.1", live.port))
        sock.sendall(
            b"POST /login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        chunk = b"x" * (1 << 20)
        sent = 0
        status = "?"
        try:
            for _ in range(128):
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                sent += 1
            sock.sendall(b"0\r\n\r\n")
        except OSError:
            pass  # the server answered and closed: the rest of the body is refused
        sock.settimeout(30)
        try:
            status = sock.recv(65536).split(b"\r\n", 1)[0].decode()
        except OSError as exc:
            status = type(exc).__name__
        sock.close()
        time.sleep(1)
        return {"rss_before": before, "rss_after": live.rss_mib(), "status": status,
                "mib_sent": sent}  # fmt: skip
    finally:
        live.stop()


# -- F9 / F12 -----------------------------------------------------------------------------------


async def _open_sse(port: int, auth: str) -> tuple[socket.socket | None, int]:
    loop = asyncio.get_running_loop()
    s = socket.socket()
    s.setblocking(False)
    try:
        await loop.sock_connect(s, ("127.0.0.1", port))
        await loop.sock_sendall(
            s,
            f"GET /revocations HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\n"
            f"Accept: text/event-stream\r\n\r\n".encode(),
        )
        head = await asyncio.wait_for(loop.sock_recv(s, 4096), 20)
        status = int(head.split(b" ", 2)[1]) if head else 0
    except (OSError, TimeoutError, ValueError, IndexError):
        s.close()
        return None, 0
    if status != 200:
        s.close()
        return None, status
    return s, status


async def _hold(port: int, auth: str, attempts: int) -> tuple[list[socket.socket], dict[int, int]]:
    held: list[socket.socket] = []
    codes: dict[int, int] = {}
    for i in range(0, attempts, 50):
        got = await asyncio.gather(*[_open_sse(port, auth) for _ in range(min(50, attempts - i))])
        for s, status in got:
            codes[status] = codes.get(status, 0) + 1
            if s is not None:
                held.append(s)
    return held, codes


async def _latency(live: Live, auth: str, samples: int) -> tuple[list[float], dict[str, int]]:
    out: list[float] = []
    failures: dict[str, int] = {}
    async with httpx.AsyncClient(base_url=live.base, timeout=40) as c:
        admin = (
            await c.post(
                "/token",
                data={
                    "grant_type": "password",
                    "username": "admin",
                    "password": ADMIN_PW,
                    "client_id": "tokenward-console",
                    "scope": "admin",
                },
            )
        ).json()["access_token"]
        cursor = (await c.get("/revocations?after=0", headers={"Authorization": auth})).json()[
            "cursor"
        ]
        for _ in range(samples):
            poll = asyncio.create_task(
                c.get(f"/revocations?after={cursor}&wait=20", headers={"Authorization": auth})
            )
            await asyncio.sleep(0.3)
            # a revocation: log in a session and end it (one sid event)
            t0 = time.perf_counter()
            await c.post(f"/admin/subjects/nobody{secrets.token_hex(3)}/revoke",
                         headers={"Authorization": f"Bearer {admin}"})  # fmt: skip
            r = await poll
            if r.status_code != 200 or not r.json()["events"]:
                key = str(r.status_code) if r.status_code != 200 else "timeout"
                failures[key] = failures.get(key, 0) + 1
                continue
            out.append((time.perf_counter() - t0) * 1000)
            cursor = r.json()["cursor"]
    return out, failures


def feed(code: str | None, attempts: int, samples: int) -> dict[str, Any]:
    prefix = "twbench" + secrets.token_hex(3)
    live = Live(f"{REDIS_URL}?prefix={prefix}", code, {})
    try:
        bad = _basic("attacker", live.client("attacker"))
        good = _basic("guard", live.client("guard"))

        async def run() -> dict[str, Any]:
            held, codes = await _hold(live.port, bad, attempts)
            await asyncio.sleep(2)
            lat, failures = await _latency(live, good, samples)
            for s in held:
                s.close()
            return {"held": len(held), "codes": codes, "latency": lat, "failures": failures}

        return asyncio.run(run())
    finally:
        live.stop()
        import redis

        r = redis.Redis.from_url(REDIS_URL)
        keys = list(r.scan_iter(match=f"*{prefix}*"))
        if keys:
            r.delete(*keys)


def idle(code: str | None, n: int) -> dict[str, Any]:
    live = Live(
        f"sqlite:///{tempfile.mkdtemp()}/t.db",
        code,
        {"TOKENWARD_FEED_MAX_STREAMS_PER_CLIENT": str(n), "TOKENWARD_FEED_MAX_STREAMS": str(n)},
    )
    try:
        auth = _basic("idle", live.client("idle"))
        time.sleep(1)
        c0, t0 = live.cpu_seconds(), time.perf_counter()
        time.sleep(5)
        base = (live.cpu_seconds() - c0) / (time.perf_counter() - t0) * 100

        async def run() -> tuple[int, float]:
            held, _ = await _hold(live.port, auth, n)
            await asyncio.sleep(2)
            c1, t1 = live.cpu_seconds(), time.perf_counter()
            await asyncio.sleep(10)
            cpu = (live.cpu_seconds() - c1) / (time.perf_counter() - t1) * 100
            for s in held:
                s.close()
            return len(held), cpu

        held, cpu = asyncio.run(run())
        return {"idle_cpu": base, "streams": held, "cpu": cpu}
    finally:
        live.stop()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--code", help="PYTHONPATH of the server's code (default: this checkout)")
    p.add_argument("--only", default="body,feed,idle")
    p.add_argument("--attempts", type=int, default=1000)
    p.add_argument("--samples", type=int, default=20)
    p.add_argument("--idle", type=int, default=300)
    args = p.parse_args()
    label = args.code or "this checkout"
    print(f"### code: {label}\n")
    only = args.only.split(",")
    if "body" in only:
        r = body(args.code)
        print(
            f"* F10 128 MiB chunked POST /login: RSS {r['rss_before']:.0f} → "
            f"{r['rss_after']:.0f} MiB; answer `{r['status']}`; {r['mib_sent']} MiB sent"
        )
    if "feed" in only:
        r = feed(args.code, args.attempts, args.samples)
        lat = r["latency"]
        figure = (
            f"p50 {statistics.median(lat):.1f} ms, p95 "
            f"{sorted(lat)[max(0, int(len(lat) * 0.95) - 1)]:.1f} ms over {len(lat)}"
            if lat
            else "no event received"
        )
        print(f"* F9/F12 Redis, {args.attempts} attacker SSE attempts: held {r['held']}, "
              f"answers {r['codes']}; legitimate long-poll latency {figure}; "
              f"failures {r['failures'] or 'none'}")  # fmt: skip
    if "idle" in only:
        r = idle(args.code, args.idle)
        print(f"* F12 SQLite, {r['streams']} idle SSE streams: server CPU {r['cpu']:.1f} % "
              f"(idle without streams {r['idle_cpu']:.1f} %)")  # fmt: skip


if __name__ == "__main__":
    main()
