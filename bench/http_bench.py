"""HTTP benchmark: tokenward vs djangorestframework-simplejwt vs flask-jwt-extended, same run.

Three flows, each against all three services in the same run, from ONE load generator (this
process: an asyncio ``httpx`` client with ``--concurrency`` workers):

* **refresh** — the refresh grant with rotation: every worker owns one session and presents
  its current refresh token, keeping the successor (tokenward ``POST /token``; simplejwt
  ``TokenRefreshView`` with ``ROTATE_REFRESH_TOKENS`` + ``BLACKLIST_AFTER_ROTATION``;
  flask-jwt-extended ``@jwt_required(refresh=True)`` + its documented SQLite blocklist);
* **introspect** — the state of an access token (tokenward RFC 7662 ``POST /introspect`` with
  HTTP Basic client authentication; flask-jwt-extended the same shape; simplejwt has no
  introspection, its nearest endpoint is ``TokenVerifyView``, without client authentication);
* **protected** — ``GET /userinfo`` with a bearer access token (tokenward verifies and reads
  the user from the store; simplejwt's ``JWTAuthentication`` also loads the user row;
  flask-jwt-extended verifies and checks its blocklist).

Serving, each the conventional way with the same worker count (``--workers``, default 2):
tokenward ``tokenward serve --workers 2`` (uvicorn) on its embedded SQLite default; the
peers ``gunicorn -w 2`` (sync workers) on SQLite. Each service uses its default signing
algorithm (tokenward ES256, both peers HS256). Rounds are interleaved (every cell of a round
runs before the next round starts) so slow drift hits all three alike.

The load generator shares the machine's cores with the servers; its CPU share is printed.
Run: ``.venv/bin/python bench/http_bench.py`` (``--quick`` for a smoke run; about 2 minutes by
default). Prints Markdown and writes ``docs/img/http-bench.png`` (matplotlib).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import resource
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
PEERS = ROOT / "bench" / "peers"
BIN = Path(sys.executable).parent
PASSWORD = "bench password 1"
FLOWS = ("refresh", "introspect", "protected")
TARGETS = ("tokenward", "simplejwt", "flask-jwt-extended")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pct(samples: list[float], q: float) -> float:
    s = sorted(samples)
    return s[min(len(s) - 1, int(q * len(s)))] if s else float("nan")


# -- the services -----------------------------------------------------------------------------


@dataclass
class Service:
    name: str
    base: str
    proc: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def start(name: str, argv: list[str], env: dict[str, str], port: int, tmp: Path) -> Service:
    log = tmp / f"{name}.log"
    proc = subprocess.Popen(  # own process group: stopping it stops its workers too
        argv,
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=log.open("wb"),
        start_new_session=True,
        cwd=ROOT,
    )
    return Service(name, f"http://127.0.0.1:{port}", proc, log)


def wait_ready(svc: Service, path: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if svc.proc.poll() is not None:
            raise SystemExit(f"{svc.name} exited:\n{svc.log.read_text()[-2000:]}")
        try:
            r = httpx.get(svc.base + path, timeout=1.0)
            if r.status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"{svc.name} did not start:\n{svc.log.read_text()[-2000:]}")


def start_all(tmp: Path, workers: int, users: int) -> dict[str, Service]:
    ports = {t: free_port() for t in TARGETS}
    tw_env = {
        "TOKENWARD_STORE_URL": f"sqlite:///{tmp}/tokenward.db",
        "TOKENWARD_ADMIN_PASSWORD": PASSWORD,
        "TOKENWARD_LOGIN_LIMIT_PER_ACCOUNT": "100000/minute",
        "TOKENWARD_LOGIN_LIMIT_PER_IP": "100000/minute",
    }
    sj_env = {"BENCH_DB": str(tmp / "simplejwt.sqlite3"), "PYTHONPATH": str(PEERS)}
    subprocess.run(
        [sys.executable, str(PEERS / "simplejwt_app.py"), "setup", "1", PASSWORD],
        env={**os.environ, **sj_env},
        check=True,
    )
    fj_env = {"BENCH_DB": str(tmp / "flask.sqlite3"), "BENCH_PASSWORD": PASSWORD}

    def gunicorn(app: str, port: int) -> list[str]:
        return [
            str(BIN / "gunicorn"),
            "-w",
            str(workers),
            "-b",
            f"127.0.0.1:{port}",
            "--chdir",
            str(PEERS),
            "--log-level",
            "warning",
            app,
        ]

    services = {
        "tokenward": start(
            "tokenward",
            [
                str(BIN / "tokenward"),
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(ports["tokenward"]),
                "--workers",
                str(workers),
            ],
            tw_env,
            ports["tokenward"],
            tmp,
        ),
        "simplejwt": start(
            "simplejwt",
            gunicorn("simplejwt_app:application", ports["simplejwt"]),
            sj_env,
            ports["simplejwt"],
            tmp,
        ),
        "flask-jwt-extended": start(
            "flask-jwt-extended",
            gunicorn("flask_jwt_app:app", ports["flask-jwt-extended"]),
            fj_env,
            ports["flask-jwt-extended"],
            tmp,
        ),
    }
    try:
        wait_ready(services["tokenward"], "/healthz")
        wait_ready(services["simplejwt"], "/userinfo")
        wait_ready(services["flask-jwt-extended"], "/userinfo")
    except BaseException:
        for s in services.values():
            s.stop()
        raise
    return services


# -- one adapter per service: set-up and the three requests -------------------------------------

Send = Callable[[httpx.AsyncClient, dict[str, Any]], Awaitable[bool]]


@dataclass
class Target:
    name: str
    sessions: list[dict[str, Any]]  # one mutable state per worker (its refresh token)
    access_token: str
    flows: dict[str, Send] = field(default_factory=dict)


def _basic(cid: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{cid}:{secret}".encode()).decode()


async def setup_tokenward(http: httpx.AsyncClient, base: str, n: int) -> Target:
    r = await http.post(
        base + "/token",
        data={
            "grant_type": "password",
            "username": "admin",
            "password": PASSWORD,
            "client_id": "tokenward-console",
            "scope": "admin",
        },
    )
    r.raise_for_status()
    admin = {"Authorization": "Bearer " + r.json()["access_token"]}
    r = await http.post(
        base + "/admin/users", json={"username": "bench", "password": PASSWORD}, headers=admin
    )
    r.raise_for_status()
    r = await http.post(
        base + "/admin/clients",
        json={"client_id": "bench-rs", "grants": ["client_credentials"]},
        headers=admin,
    )
    r.raise_for_status()
    client_auth = _basic("bench-rs", r.json()["client_secret"])
    sessions = []
    for _ in range(n):
        r = await http.post(
            base + "/token",
            data={
                "grant_type": "password",
                "username": "bench",
                "password": PASSWORD,
                "client_id": "tokenward-console",
            },
        )
        r.raise_for_status()
        sessions.append({"refresh": r.json()["refresh_token"]})
    access = r.json()["access_token"]

    async def refresh(c: httpx.AsyncClient, s: dict[str, Any]) -> bool:
        r = await c.post(
            base + "/token",
            data={
                "grant_type": "refresh_token",
                "refresh_token": s["refresh"],
                "client_id": "tokenward-console",
            },
        )
        if r.status_code != 200:
            return False
        s["refresh"] = r.json()["refresh_token"]
        return True

    async def introspect(c: httpx.AsyncClient, s: dict[str, Any]) -> bool:
        r = await c.post(
            base + "/introspect", data={"token": access}, headers={"Authorization": client_auth}
        )
        return r.status_code == 200 and r.json()["active"] is True

    async def protected(c: httpx.AsyncClient, s: dict[str, Any]) -> bool:
        r = await c.get(base + "/userinfo", headers={"Authorization": "Bearer " + access})
        return r.status_code == 200

    return Target(
        "tokenward",
        sessions,
        access,
        {"refresh": refresh, "introspect": introspect, "protected": protected},
    )


async def setup_simplejwt(http: httpx.AsyncClient, base: str, n: int) -> Target:
    sessions = []
    body: dict[str, Any] = {}
    for _ in range(n):
        r = await http.post(base + "/api/token/", json={"username": "user0", "password": PASSWORD})
        r.raise_for_status()
        body = r.json()
        sessions.append({"refresh": body["refresh"]})
    access = body["access"]

    async def refresh(c: httpx.AsyncClient, s: dict[str, Any]) -> bool:
        r = await c.post(base + "/api/token/refresh/", json={"refresh": s["refresh"]})
        if r.status_code != 200:
            return False
        s["refresh"] = r.json()["refresh"]
        return True

    async def introspect(c: httpx.AsyncClient, s: dict[str, Any]) -> bool:
        r = await c.post(base + "/api/token/verify/", json={"token": access})
        return r.status_code == 200

    async def protected(c: httpx.AsyncClient, s: dict[str, Any]) -> bool:
        r = await c.get(base + "/userinfo", headers={"Authorization": "Bearer " + access})
        return r.status_code == 200

    return Target(
        "simplejwt",
        sessions,
        access,
        {"refresh": refresh, "introspect": introspect, "protected": protected},
    )


async def setup_flask(http: httpx.AsyncClient, base: str, n: int) -> Target:
    sessions = []
    body: dict[str, Any] = {}
    for _ in range(n):
        r = await http.post(base + "/login", json={"username": "user0", "password": PASSWORD})
        r.raise_for_status()
        body = r.json()
        sessions.append({"refresh": body["refresh_token"]})
    access = body["access_token"]
    client_auth = _basic("svc", "bench-client-secret")

    async def refresh(c: httpx.AsyncClient, s: dict[str, Any]) -> bool:
        r = await c.post(base + "/refresh", headers={"Authorization": "Bearer " + s["refresh"]})
        if r.status_code != 200:
            return False
        s["refresh"] = r.json()["refresh_token"]
        return True

    async def introspect(c: httpx.AsyncClient, s: dict[str, Any]) -> bool:
        r = await c.post(
            base + "/introspect", data={"token": access}, headers={"Authorization": client_auth}
        )
        return r.status_code == 200 and r.json()["active"] is True

    async def protected(c: httpx.AsyncClient, s: dict[str, Any]) -> bool:
        r = await c.get(base + "/userinfo", headers={"Authorization": "Bearer " + access})
        return r.status_code == 200

    return Target(
        "flask-jwt-extended",
        sessions,
        access,
        {"refresh": refresh, "introspect": introspect, "protected": protected},
    )


# -- the load generator -------------------------------------------------------------------------


@dataclass
class Cell:
    ok: int = 0
    errors: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)

    @property
    def rps(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0


async def run_cell(target: Target, flow: str, duration: float, warmup: float, cell: Cell) -> None:
    send = target.flows[flow]
    limits = httpx.Limits(max_connections=len(target.sessions), max_keepalive_connections=64)
    async with httpx.AsyncClient(limits=limits, timeout=30.0) as client:
        t_start = time.perf_counter()
        t_measure = t_start + warmup
        t_end = t_measure + duration

        async def worker(state: dict[str, Any]) -> None:
            while True:
                t0 = time.perf_counter()
                if t0 >= t_end:
                    return
                try:
                    ok = await send(client, state)
                except httpx.HTTPError:
                    ok = False
                t1 = time.perf_counter()
                if t0 >= t_measure:
                    if ok:
                        cell.ok += 1
                        cell.latencies.append(t1 - t0)
                    else:
                        cell.errors += 1
                if not ok and flow == "refresh":
                    return  # a broken rotation chain cannot go on

        await asyncio.gather(*(worker(s) for s in target.sessions))
        cell.seconds += time.perf_counter() - t_measure


async def measure(
    services: dict[str, Service], rounds: int, duration: float, warmup: float, concurrency: int
) -> tuple[dict[tuple[str, str], Cell], float]:
    async with httpx.AsyncClient(timeout=60.0) as http:
        targets = {
            "tokenward": await setup_tokenward(http, services["tokenward"].base, concurrency),
            "simplejwt": await setup_simplejwt(http, services["simplejwt"].base, concurrency),
            "flask-jwt-extended": await setup_flask(
                http, services["flask-jwt-extended"].base, concurrency
            ),
        }
    cells = {(f, t): Cell() for f in FLOWS for t in TARGETS}
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    wall0 = time.perf_counter()
    for _ in range(rounds):
        for flow in FLOWS:
            for name in TARGETS:
                await run_cell(targets[name], flow, duration, warmup, cells[(flow, name)])
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    return cells, cpu / (time.perf_counter() - wall0)


# -- output -------------------------------------------------------------------------------------


def table(cells: dict[tuple[str, str], Cell]) -> str:
    lines = [
        "| flow | service | req/s | vs tokenward | p50 ms | p99 ms | errors |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for flow in FLOWS:
        base = cells[(flow, "tokenward")].rps
        for name in TARGETS:
            c = cells[(flow, name)]
            ratio = f"{c.rps / base:.2f}×" if base else "n/a"
            lines.append(
                f"| {flow} | {name} | {c.rps:,.0f} | {ratio} | {pct(c.latencies, 0.5) * 1e3:.1f} "
                f"| {pct(c.latencies, 0.99) * 1e3:.1f} | {c.errors} |"
            )
    return "\n".join(lines)


def plot(cells: dict[tuple[str, str], Cell], path: Path, subtitle: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    width = 0.26
    colors = {"tokenward": "#2b6cb0", "simplejwt": "#c05621", "flask-jwt-extended": "#2f855a"}
    for i, name in enumerate(TARGETS):
        xs = [j + (i - 1) * width for j in range(len(FLOWS))]
        ax1.bar(xs, [cells[(f, name)].rps for f in FLOWS], width, label=name, color=colors[name])
        ax2.bar(
            xs,
            [pct(cells[(f, name)].latencies, 0.99) * 1e3 for f in FLOWS],
            width,
            label=name,
            color=colors[name],
        )
    for ax, title in (
        (ax1, "throughput (requests/s, higher is better)"),
        (ax2, "p99 latency (ms, lower is better)"),
    ):
        ax.set_xticks(range(len(FLOWS)), FLOWS)
        ax.set_title(title, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    ax1.legend(fontsize=8)
    fig.suptitle(
        f"tokenward vs simplejwt vs flask-jwt-extended over HTTP — {subtitle}", fontsize=10
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=6.0, help="seconds per cell per round")
    ap.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds per cell")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--concurrency", type=int, default=8, help="load-generator workers")
    ap.add_argument("--workers", type=int, default=2, help="server worker processes")
    ap.add_argument("--plot", type=Path, default=ROOT / "docs" / "img" / "http-bench.png")
    ap.add_argument("--quick", action="store_true", help="smoke run: 1 round of 1 s")
    args = ap.parse_args()
    if args.quick:
        args.duration, args.warmup, args.rounds = 1.0, 0.2, 1
    for tool in ("gunicorn", "tokenward"):
        if not (BIN / tool).exists():
            raise SystemExit(f"{tool} not found in {BIN}: pip install -e '.[bench]'")
    tmp = Path(tempfile.mkdtemp(prefix="tokenward-http-bench-"))
    services: dict[str, Service] = {}
    try:
        services = start_all(tmp, args.workers, args.concurrency)
        cells, cpu_share = asyncio.run(
            measure(services, args.rounds, args.duration, args.warmup, args.concurrency)
        )
    finally:
        for svc in services.values():
            svc.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    cores = os.cpu_count() or 0
    subtitle = (
        f"{args.workers} workers each, {args.concurrency} connections, "
        f"{args.rounds}×{args.duration:g} s per cell, {cores} cores"
    )
    print(f"### HTTP flows ({subtitle})\n")
    print(table(cells))
    print(
        f"\nload generator (one asyncio httpx process) CPU: {cpu_share:.0%} of one core "
        f"during the measurement; run id {secrets.token_hex(3)}"
    )
    if not args.quick or args.plot != ap.get_default("plot"):
        plot(cells, args.plot, subtitle)
        shown = args.plot.relative_to(ROOT) if args.plot.is_relative_to(ROOT) else args.plot
        print(f"\nplot: {shown}")


if __name__ == "__main__":
    main()
