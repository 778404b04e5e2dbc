"""The review's attacks against a live ``tokenward serve`` (the security findings F9, F10, F12),
and the attack corpus's hostile tokens timed against peer libraries.

Scenarios (``--only`` picks some; the first three start fresh server processes):

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

* ``corpus``: in process, no server. Every case of ``tests/attacks/*.json`` with a ``"gate"``
  (the 1 MB token, 100k dots, a 100k-character ``kid``, deep nesting, 100k audiences, a
  5000-digit ``exp``, the PBES2 ``p2c`` and DEFLATE-bomb JWEs), built by the suite's own
  ``Forge`` for an ES256 key, verified by tokenward's :class:`~tokenward.Verifier` (defaults, as
  the guard and the server use it), by the same with the 8 KiB size cap lifted (what the other
  gates do alone), by PyJWT and by joserfc, all with the same key, ``algorithms=["ES256"]`` and
  the same issuer/audience; a valid token is the first row. Reported per case: µs per call
  (best of ``--rounds`` interleaved rounds, default 25, each a loop of at least 1 ms: the
  minimum over many short windows is what survives a shared machine), what each answered,
  and each peer's time over tokenward's. The suite asserts *what* refuses each case
  (``tests/attacks/test_corpus.py``, ``tests/test_attacks_jws.py``); this says how long it took.

``--code PATH`` runs the server from another source tree (e.g. the code before the fixes:
``git archive <commit> src | tar -x -C /tmp/before`` then ``--code /tmp/before/src``); the
same scenarios, same machine, same run. Prints Markdown.

Run: ``.venv/bin/python bench/attacks.py [--code /tmp/before/src]`` (about a minute);
``--only corpus`` alone takes about 20 s.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
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

ROOT = Path(__file__).resolve().parents[1]
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


# -- the attack corpus's hostile tokens vs PyJWT and joserfc ------------------------------------

CORPUS_ISS = "https://issuer.bench"
CORPUS_AUD = "api"


def _per_call(fn: Any, budget: float = 0.001) -> float:
    """Seconds per call of ``fn`` (which may raise), in one loop of at least ``budget``."""
    n, elapsed = 1, 0.0
    while True:
        t0 = time.perf_counter()
        for _ in range(n):
            with contextlib.suppress(Exception):  # the hostile cases are refused, by design
                fn()
        elapsed = time.perf_counter() - t0
        if elapsed >= budget or n >= 1 << 20:
            return elapsed / n
        n *= 2 if elapsed <= 0 else max(2, min(64, int(budget / elapsed) + 1))


def _outcome(fn: Any) -> str:
    try:
        fn()
    except Exception as exc:  # the answer is what is reported
        return type(exc).__name__
    return "accepted"


def corpus(rounds: int) -> dict[str, Any]:
    sys.path.insert(0, str(ROOT / "tests"))
    import jwt as pyjwt
    from joserfc import jwt as jf_jwt
    from joserfc.jwk import ECKey
    from joserfc.jwt import JWTClaimsRegistry

    from support.forge import Forge  # the suite's own attack-token builder
    from tokenward import KeyRing, Verifier
    from tokenward.clock import system_clock

    ring = KeyRing.generate("ES256", clock=system_clock, with_next=False)
    key = ring.active
    forge = Forge(key, CORPUS_ISS, CORPUS_AUD, system_clock.now)
    cases = [{"id": "valid token (reference)", "attack": "-", "gen": None}]
    for f in sorted((ROOT / "tests" / "attacks").glob("*.json")):
        cases += [c for c in json.loads(f.read_text()) if "gate" in c]
    jwks = ring.public_jwks()
    ours = Verifier(jwks, issuer=CORPUS_ISS, audience=CORPUS_AUD, cache_size=0)
    lifted = Verifier(
        jwks, issuer=CORPUS_ISS, audience=CORPUS_AUD, cache_size=0, max_token_size=1 << 24
    )
    jf_key = ECKey.import_key(key.public_key)
    registry = JWTClaimsRegistry(
        iss={"essential": True, "value": CORPUS_ISS},
        aud={"essential": True, "value": CORPUS_AUD},
        exp={"essential": True},
    )

    def joserfc_verify(token: str) -> None:
        registry.validate(jf_jwt.decode(token, jf_key, algorithms=["ES256"]).claims)

    def pyjwt_verify(token: str) -> None:
        pyjwt.decode(token, key.public_key, algorithms=["ES256"], audience=CORPUS_AUD,
                     issuer=CORPUS_ISS)  # fmt: skip

    libs = {
        "tokenward": ours.verify,
        "tokenward, cap lifted": lifted.verify,
        "PyJWT": pyjwt_verify,
        "joserfc": joserfc_verify,
    }
    rows = []
    for case in cases:
        token = forge.valid() if case["gen"] is None else forge.build(case)
        calls = {name: (lambda f=f, t=token: f(t)) for name, f in libs.items()}
        best = dict.fromkeys(libs, float("inf"))
        for _ in range(rounds):  # interleaved: machine noise hits every library alike
            for name, call in calls.items():
                best[name] = min(best[name], _per_call(call))
        rows.append({
            "id": case["id"], "gate": case.get("gate", "-"), "chars": len(token),
            "us": {n: t * 1e6 for n, t in best.items()},
            "answer": {n: _outcome(c) for n, c in calls.items()},
        })  # fmt: skip
    return {"rows": rows, "versions": {"PyJWT": pyjwt.__version__, "joserfc": _version("joserfc")}}


def _version(dist: str) -> str:
    from importlib.metadata import version

    return version(dist)


def _us(x: float) -> str:
    return f"{x:,.1f}" if x >= 10 else f"{x:.2f}"


def print_corpus(r: dict[str, Any], rounds: int) -> None:
    v = r["versions"]
    print(
        f"Attack corpus, in process (Python {sys.version.split()[0]}, PyJWT {v['PyJWT']}, "
        f"joserfc {v['joserfc']}; best of {rounds} interleaved rounds, µs per call):\n"
    )
    print(
        "| case | gate | chars | tokenward | cap lifted | PyJWT | joserfc "
        "| PyJWT / tokenward | joserfc / tokenward | answers (tokenward; PyJWT; joserfc) |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for row in r["rows"]:
        us, a = row["us"], row["answer"]
        ours = us["tokenward"]
        print(
            f"| {row['id']} | {row['gate']} | {row['chars']:,} | **{_us(ours)}** "
            f"| {_us(us['tokenward, cap lifted'])} | {_us(us['PyJWT'])} | {_us(us['joserfc'])} "
            f"| {us['PyJWT'] / ours:,.1f}× | {us['joserfc'] / ours:,.1f}× "
            f"| {a['tokenward']}; {a['PyJWT']}; {a['joserfc']} |"
        )


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--code", help="PYTHONPATH of the server's code (default: this checkout)")
    p.add_argument("--only", default="body,feed,idle,corpus")
    p.add_argument("--attempts", type=int, default=1000)
    p.add_argument("--samples", type=int, default=20)
    p.add_argument("--idle", type=int, default=300)
    p.add_argument("--rounds", type=int, default=25, help="corpus: interleaved rounds per case")
    args = p.parse_args()
    label = args.code or "this checkout"
    print(f"### code: {label}\n")
    only = args.only.split(",")
    if "corpus" in only:
        print_corpus(corpus(args.rounds), args.rounds)
        print()
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
