"""HTTP benchmark: tokenward vs flask-jwt-extended vs djangorestframework-simplejwt, one run.

Every ratio of the throughput goals in one run, each flow against every service, rounds
interleaved (every cell of a round runs before the next round starts, the order reversed every
other round) so that slow drift on the machine hits all services alike.

Serving, the conventional way, ONE worker each, all three signing ES256:

* tokenward: ``tokenward serve --workers 1`` (uvicorn, httptools + uvloop, access log off in
  uvicorn) twice: on its embedded SQLite default, and on Redis (``TOKENWARD_BENCH_REDIS_URL``,
  default ``redis://127.0.0.1:6379/14``, under a key prefix unique to the run, deleted after);
* flask-jwt-extended and simplejwt (``bench/peers/``): ``gunicorn -w 1`` (sync worker), SQLite,
  both with the run's P-256 key;
* the ASGI floor (``bench/peers/asgi_floor.py``): a bare ASGI callable answering a 16-byte
  JSON, served by ``tokenward serve`` itself (its CLI and uvicorn configuration) with the app
  factory replaced: what the server process costs before any application code runs.

Servers are pinned to CPU 1 and the load generator to CPU 0 (``taskset``; ``--no-pin`` turns
it off, one-core machines skip it). The load generator is ``wrk`` (C, 4 connections,
``--latency``), driven by a Lua script per cell that this script writes; without ``wrk`` on
the PATH it falls back to an asyncio ``httpx`` client in this process (slower, and it takes
CPU from the servers: the output says which generator ran). ``make bench-http`` installs
``wrk`` (apt) when it is missing.

Flows (4 connections each):

* **protected** — ``GET /userinfo`` with a bearer access token (tokenward; flask-jwt-extended
  ``@jwt_required()``; simplejwt ``JWTAuthentication`` + ``IsAuthenticated``; the floor's
  ``GET /``);
* **introspect** — tokenward RFC 7662 ``POST /introspect`` with HTTP Basic client
  authentication for an access token; flask-jwt-extended the same shape; simplejwt has no
  introspection, its ``TokenVerifyView`` (no client authentication) is shown for reference;
* **refresh** — a rotating refresh: every connection owns its session and presents the refresh
  token the previous response returned (the Lua ``response()`` parses it). tokenward
  ``grant_type=refresh_token`` (rotation, reuse detection, persistence) on SQLite and on Redis;
  flask-jwt-extended's stateless refresh (persists nothing, detects nothing); simplejwt
  ``ROTATE_REFRESH_TOKENS`` + ``BLACKLIST_AFTER_ROTATION``;
* **sign-in** — the password grant (tokenward, argon2id at its defaults) and simplejwt's
  ``TokenObtainPairView`` (Django's default PBKDF2): password-hash-bound by design, reported,
  no goal.

Any non-2xx response or socket error fails the cell: the table shows it and the script exits 1.
A cell's throughput (2xx responses per second), p50 and p99 are the median over rounds of each
round's figure; a goal's ratio is the median over rounds of that round's ratio (the cells of a
flow run back to back). Prints Markdown (the cells, then the goals with
PASS/MISS) and writes ``docs/img/http-bench.png`` (matplotlib).

Run: ``.venv/bin/python bench/http_bench.py`` (≈ 10 min) or ``--quick`` (a smoke run, ≈ 1 min).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import re
import resource
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx

ROOT = Path(__file__).resolve().parent.parent
PEERS = ROOT / "bench" / "peers"
BIN = Path(sys.executable).parent
PASSWORD = "bench password 1"
REDIS_URL = os.environ.get("TOKENWARD_BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
FORM = "application/x-www-form-urlencoded"
JSON_CT = "application/json"
SAFE_TOKEN = re.compile(r"[A-Za-z0-9._~-]+")
HIGH_LIMIT = "1000000/minute"

TW, TW_REDIS, FJE, SJ, FLOOR = (
    "tokenward",
    "tokenward-redis",
    "flask-jwt-extended",
    "simplejwt",
    "asgi-floor",
)
# (flow, service) in table order; the first service of each flow is the one measured
CELLS: tuple[tuple[str, str], ...] = (
    ("protected", TW),
    ("protected", FJE),
    ("protected", SJ),
    ("protected", FLOOR),
    ("introspect", TW),
    ("introspect", FJE),
    ("introspect", SJ),
    ("refresh", TW),
    ("refresh", TW_REDIS),
    ("refresh", FJE),
    ("refresh", SJ),
    ("sign-in", TW),
    ("sign-in", SJ),
)
FLOWS = ("protected", "introspect", "refresh", "sign-in")
LABELS = {
    ("protected", TW): "tokenward `GET /userinfo`",
    ("protected", FJE): "flask-jwt-extended `@jwt_required()`",
    ("protected", SJ): "simplejwt `JWTAuthentication` view",
    ("protected", FLOOR): "ASGI floor (bare app, tokenward's server config)",
    ("introspect", TW): "tokenward `POST /introspect` (Basic)",
    ("introspect", FJE): "flask-jwt-extended, same shape (Basic)",
    ("introspect", SJ): "simplejwt `TokenVerifyView` (no client auth; reference)",
    ("refresh", TW): "tokenward, SQLite (rotation + reuse detection)",
    ("refresh", TW_REDIS): "tokenward, Redis (rotation + reuse detection)",
    ("refresh", FJE): "flask-jwt-extended, stateless",
    ("refresh", SJ): "simplejwt, rotate + blacklist",
    ("sign-in", TW): "tokenward password grant (argon2id)",
    ("sign-in", SJ): "simplejwt `TokenObtainPairView` (PBKDF2)",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pkg_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "absent"


# -- the services ---------------------------------------------------------------------------------


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


def wait_ready(svc: Service, path: str, timeout: float = 60.0) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if svc.proc.poll() is not None:
            raise SystemExit(f"{svc.name} exited:\n{svc.log.read_text()[-2000:]}")
        try:
            r = httpx.get(svc.base + path, timeout=1.0)
            if r.status_code < 500:
                return r
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"{svc.name} did not start:\n{svc.log.read_text()[-2000:]}")


def redis_cleanup(prefix: str) -> int:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = list(client.scan_iter(match=f"*{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
        return len(keys)
    finally:
        client.close()


def redis_ping() -> None:
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        raise SystemExit(
            f"Redis at {REDIS_URL} is not reachable ({exc}): the Redis refresh cell needs it; "
            "start redis-server or set TOKENWARD_BENCH_REDIS_URL"
        ) from None
    finally:
        client.close()


def start_all(tmp: Path, pin: list[str], redis_prefix: str) -> dict[str, Service]:
    ports = {name: free_port() for name in (TW, TW_REDIS, FJE, SJ, FLOOR)}
    key_file = tmp / "es256.pem"
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key_file.write_bytes(
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    tw_env = {
        "TOKENWARD_ADMIN_PASSWORD": PASSWORD,
        "TOKENWARD_LOGIN_LIMIT_PER_ACCOUNT": HIGH_LIMIT,
        "TOKENWARD_LOGIN_LIMIT_PER_ACCOUNT_CEILING": HIGH_LIMIT,
        "TOKENWARD_LOGIN_LIMIT_PER_IP": HIGH_LIMIT,
    }
    kek = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")
    envs = {
        TW: tw_env | {"TOKENWARD_STORE_URL": f"sqlite:///{tmp}/tokenward.db"},
        TW_REDIS: tw_env
        | {
            "TOKENWARD_STORE_URL": REDIS_URL,
            "TOKENWARD_STORE_PREFIX": redis_prefix,
            "TOKENWARD_KEY_ENCRYPTION_KEY": kek,
        },
        FLOOR: {"TOKENWARD_STORE_URL": f"sqlite:///{tmp}/floor.db"},
        SJ: {
            "BENCH_DB": str(tmp / "simplejwt.sqlite3"),
            "BENCH_EC_KEY": str(key_file),
            "PYTHONPATH": str(PEERS),
        },
        FJE: {
            "BENCH_DB": str(tmp / "flask.sqlite3"),
            "BENCH_PASSWORD": PASSWORD,
            "BENCH_EC_KEY": str(key_file),
        },
    }
    subprocess.run(
        [sys.executable, str(PEERS / "simplejwt_app.py"), "setup", "1", PASSWORD],
        env={**os.environ, **envs[SJ]},
        check=True,
    )

    def serve(*argv: str, port: int) -> list[str]:
        return [*pin, *argv, "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]

    def gunicorn(app: str, port: int) -> list[str]:
        return [
            *pin,
            str(BIN / "gunicorn"),
            "-w",
            "1",
            "-k",
            "sync",
            "-b",
            f"127.0.0.1:{port}",
            "--chdir",
            str(PEERS),
            "--log-level",
            "warning",
            app,
        ]

    argvs = {
        TW: serve(str(BIN / "tokenward"), "serve", port=ports[TW]),
        TW_REDIS: serve(str(BIN / "tokenward"), "serve", port=ports[TW_REDIS]),
        FLOOR: serve(sys.executable, str(PEERS / "asgi_floor.py"), "serve", port=ports[FLOOR]),
        SJ: gunicorn("simplejwt_app:application", ports[SJ]),
        FJE: gunicorn("flask_jwt_app:app", ports[FJE]),
    }
    services: dict[str, Service] = {}
    try:
        for name, argv in argvs.items():
            services[name] = start(name, argv, envs[name], ports[name], tmp)
        wait_ready(services[TW], "/healthz")
        wait_ready(services[TW_REDIS], "/healthz")
        wait_ready(services[SJ], "/userinfo")
        wait_ready(services[FJE], "/userinfo")
        if wait_ready(services[FLOOR], "/").headers.get("x-bench-floor") != "1":
            raise SystemExit(
                "asgi_floor.py: `tokenward serve` did not serve the floor app (does it still "
                "build its app through tokenward.server.create_app?)"
            )
    except BaseException:
        for s in services.values():
            s.stop()
        raise
    return services


# -- what one cell sends --------------------------------------------------------------------------


@dataclass(frozen=True)
class Req:
    """One request shape. ``{token}`` in a header value or the body is replaced by the
    connection's own token (``tokens[i]`` for connection ``i``), which ``successor`` (a JSON
    member of each 2xx response) replaces after every response: a rotating chain."""

    method: str
    path: str
    headers: dict[str, str]
    body: str = ""
    successor: str | None = None
    tokens: tuple[str, ...] = ()
    check: Callable[[httpx.Response], bool] | None = field(default=None, compare=False)


def _basic(cid: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{cid}:{secret}".encode()).decode()


def _safe(token: str) -> str:
    if not SAFE_TOKEN.fullmatch(token):
        raise SystemExit(f"a token needs URL/Lua escaping, which the bench does not do: {token!r}")
    return token


class Adapter:
    """Set-up (users, clients, sessions) and the request of each flow, for one service."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.http = httpx.Client(base_url=base, timeout=60.0)

    def req(self, flow: str, conns: int) -> Req:
        raise NotImplementedError


class Tokenward(Adapter):
    def __init__(self, base: str) -> None:
        super().__init__(base)
        admin = self._password_grant("admin", scope="admin")["access_token"]
        auth = {"Authorization": f"Bearer {admin}"}
        r = self.http.post(
            "/admin/users", json={"username": "bench", "password": PASSWORD}, headers=auth
        )
        r.raise_for_status()
        r = self.http.post(
            "/admin/clients",
            json={"client_id": "bench-rs", "grants": ["client_credentials"]},
            headers=auth,
        )
        r.raise_for_status()
        self.client_auth = _basic("bench-rs", r.json()["client_secret"])

    def _sign_in_body(self, user: str = "bench", scope: str | None = None) -> dict[str, str]:
        body = {
            "grant_type": "password",
            "username": user,
            "password": PASSWORD,
            "client_id": "tokenward-console",
        }
        if scope:
            body["scope"] = scope
        return body

    def _password_grant(self, user: str = "bench", scope: str | None = None) -> dict[str, Any]:
        r = self.http.post("/token", data=self._sign_in_body(user, scope))
        r.raise_for_status()
        body: dict[str, Any] = r.json()
        return body

    def req(self, flow: str, conns: int) -> Req:
        if flow == "sign-in":
            return Req("POST", "/token", {"Content-Type": FORM}, urlencode(self._sign_in_body()))
        if flow == "refresh":
            tokens = [_safe(self._password_grant()["refresh_token"]) for _ in range(conns)]
            body = "grant_type=refresh_token&client_id=tokenward-console&refresh_token={token}"
            return Req(
                "POST", "/token", {"Content-Type": FORM}, body, "refresh_token", tuple(tokens)
            )
        access = _safe(self._password_grant()["access_token"])
        if flow == "protected":
            return Req("GET", "/userinfo", {"Authorization": f"Bearer {access}"})
        return Req(
            "POST",
            "/introspect",
            {"Authorization": self.client_auth, "Content-Type": FORM},
            f"token={access}",
            check=lambda r: r.json().get("active") is True,
        )


class FlaskJwt(Adapter):
    def _login(self) -> dict[str, Any]:
        r = self.http.post("/login", json={"username": "user0", "password": PASSWORD})
        r.raise_for_status()
        body: dict[str, Any] = r.json()
        return body

    def req(self, flow: str, conns: int) -> Req:
        if flow == "refresh":
            tokens = tuple(_safe(self._login()["refresh_token"]) for _ in range(conns))
            return Req(
                "POST", "/refresh", {"Authorization": "Bearer {token}"}, "", "refresh_token", tokens
            )
        access = _safe(self._login()["access_token"])
        if flow == "protected":
            return Req("GET", "/userinfo", {"Authorization": f"Bearer {access}"})
        if flow == "introspect":
            return Req(
                "POST",
                "/introspect",
                {"Authorization": _basic("svc", "bench-client-secret"), "Content-Type": FORM},
                f"token={access}",
                check=lambda r: r.json().get("active") is True,
            )
        raise ValueError(flow)


class SimpleJwt(Adapter):
    SIGN_IN = json.dumps({"username": "user0", "password": PASSWORD})

    def _obtain(self) -> dict[str, Any]:
        r = self.http.post("/bench/session/")  # a pair without PBKDF2: set-up, not measured
        r.raise_for_status()
        body: dict[str, Any] = r.json()
        return body

    def req(self, flow: str, conns: int) -> Req:
        if flow == "sign-in":
            return Req("POST", "/api/token/", {"Content-Type": JSON_CT}, self.SIGN_IN)
        if flow == "refresh":
            tokens = tuple(_safe(self._obtain()["refresh"]) for _ in range(conns))
            return Req(
                "POST",
                "/api/token/refresh/",
                {"Content-Type": JSON_CT},
                '{"refresh": "{token}"}',
                "refresh",
                tokens,
            )
        access = _safe(self._obtain()["access"])
        if flow == "protected":
            return Req("GET", "/userinfo", {"Authorization": f"Bearer {access}"})
        return Req(
            "POST", "/api/token/verify/", {"Content-Type": JSON_CT}, json.dumps({"token": access})
        )


class Floor(Adapter):
    def req(self, flow: str, conns: int) -> Req:
        return Req("GET", "/", {}, check=lambda r: r.headers.get("x-bench-floor") == "1")


# -- load generators ------------------------------------------------------------------------------


@dataclass
class Run:
    """One load-generator run of one cell."""

    ok: int
    non2xx: int
    socket_errors: int
    seconds: float
    p50_ms: float
    p99_ms: float
    generator_cpu: float  # CPU seconds the load generator used
    first_error: str = ""


def lua_str(s: str) -> str:
    """A Lua string literal for any text (non-printable and quote bytes as ``\\ddd``)."""
    out = []
    for b in s.encode():
        c = chr(b)
        out.append(c if 32 <= b < 127 and c not in '\\"' else f"\\{b:03d}")
    return '"' + "".join(out) + '"'


LUA = """-- written by bench/http_bench.py for one cell
local method, path, body_tpl = %(method)s, %(path)s, %(body)s
local header_tpls = {%(headers)s}
local successor = %(successor)s
local threads = {}
local conns = 0

function setup(thread)
  conns = conns + 1
  thread:set("conn", conns)
  table.insert(threads, thread)
end

function init(args)
  bad, missing, first_error = 0, 0, ""
  token = args[conn]
  if successor == nil then  -- a fixed request: built once, sent as is
    wrk.method, wrk.path = method, path
    for k, v in pairs(header_tpls) do wrk.headers[k] = v end  -- keeps wrk's Host header
    if body_tpl ~= "" then wrk.body = body_tpl end
  end
end

local function fill(s)
  return (s:gsub("{token}", function() return token end))
end

if successor ~= nil then
  function request()  -- this connection's current refresh token
    local headers = {}
    for k, v in pairs(header_tpls) do headers[k] = fill(v) end
    local body = nil
    if body_tpl ~= "" then body = fill(body_tpl) end
    return wrk.format(method, path, headers, body)
  end
end

local pattern = successor and ('"' .. successor .. '"%%s*:%%s*"([^"]+)"')

function response(status, headers, body)
  if status < 200 or status > 299 then
    bad = bad + 1
    if first_error == "" then first_error = status .. " " .. string.sub(body or "", 1, 200) end
  elseif pattern then
    local next_token = string.match(body, pattern)
    if next_token then token = next_token else missing = missing + 1 end
  end
end

function done(summary, latency, requests)
  local b, m, first = 0, 0, ""
  for _, t in ipairs(threads) do
    b = b + t:get("bad")
    m = m + t:get("missing")
    if first == "" then first = t:get("first_error") end
  end
  local e = summary.errors
  io.write(string.format(
    "@@wrk %%d %%d %%d %%d %%d %%d %%.1f %%.1f %%s\\n",
    summary.requests, summary.duration, b, m, e.connect + e.read + e.write, e.timeout,
    latency:percentile(50), latency:percentile(99), (string.gsub(first, "%%s", "_"))))
end
"""


def lua_script(req: Req) -> str:
    headers = ", ".join(f"[{lua_str(k)}] = {lua_str(v)}" for k, v in req.headers.items())
    return LUA % {
        "method": lua_str(req.method),
        "path": lua_str(req.path),
        "body": lua_str(req.body),
        "headers": headers,
        "successor": lua_str(req.successor) if req.successor else "nil",
    }


class Wrk:
    name = "wrk"

    def __init__(self, tmp: Path, pin: list[str]) -> None:
        self.tmp, self.pin = tmp, pin
        self.exe = shutil.which("wrk") or "wrk"
        out = subprocess.run([self.exe, "-v"], capture_output=True, text=True, check=False)
        self.version = (out.stdout + out.stderr).split("\n", 1)[0].strip()

    def run(self, base: str, req: Req, conns: int, seconds: int) -> Run:
        script = self.tmp / "cell.lua"
        script.write_text(lua_script(req))
        # a rotating chain needs one connection per thread (a Lua state per thread)
        threads = conns if req.successor else min(conns, 2)
        argv = [
            *self.pin,
            self.exe,
            "-t",
            str(threads),
            "-c",
            str(conns),
            "-d",
            f"{seconds}s",
            "--timeout",
            "10s",
            "--latency",
            "-s",
            str(script),
            base + req.path,
        ]
        if req.tokens:
            argv += ["--", *req.tokens]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 120)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        line = next((x for x in out.stdout.splitlines() if x.startswith("@@wrk ")), None)
        if out.returncode != 0 or line is None:
            raise SystemExit(f"wrk failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
        f = line.split(" ", 9)[1:]
        requests, duration_us, bad, missing, sock, timeouts = map(int, f[:6])
        first = f[8].replace("_", " ") if len(f) > 8 else ""
        if missing and not first:
            first = f"{missing} responses without {req.successor!r}"
        return Run(
            ok=requests - bad - missing,
            non2xx=bad + missing,
            socket_errors=sock + timeouts,
            seconds=duration_us / 1e6,
            p50_ms=float(f[6]) / 1e3,
            p99_ms=float(f[7]) / 1e3,
            generator_cpu=(after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
            first_error=first,
        )


class PyGen:
    """Fallback: an asyncio httpx client in this process, one coroutine per connection."""

    name = "python (httpx, asyncio)"
    version = f"httpx {pkg_version('httpx')}"

    def run(self, base: str, req: Req, conns: int, seconds: int) -> Run:
        cpu0 = resource.getrusage(resource.RUSAGE_SELF)
        run = asyncio.run(self._run(base, req, conns, seconds))
        cpu1 = resource.getrusage(resource.RUSAGE_SELF)
        run.generator_cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
        return run

    async def _run(self, base: str, req: Req, conns: int, seconds: int) -> Run:
        lat: list[float] = []
        counts = {"bad": 0, "sock": 0}
        first: list[str] = []
        limits = httpx.Limits(max_connections=conns, max_keepalive_connections=conns)
        async with httpx.AsyncClient(base_url=base, limits=limits, timeout=10.0) as client:
            t_start = time.perf_counter()
            t_end = t_start + seconds

            async def worker(i: int) -> None:
                token = req.tokens[i] if req.tokens else ""
                while time.perf_counter() < t_end:
                    headers = {k: v.replace("{token}", token) for k, v in req.headers.items()}
                    body = req.body.replace("{token}", token)
                    t0 = time.perf_counter()
                    try:
                        r = await client.request(
                            req.method, req.path, headers=headers, content=body or None
                        )
                    except httpx.HTTPError as exc:
                        counts["sock"] += 1
                        first.append(repr(exc))
                        continue
                    lat.append(time.perf_counter() - t0)
                    if not 200 <= r.status_code < 300:
                        counts["bad"] += 1
                        first.append(f"{r.status_code} {r.text[:200]}")
                    elif req.successor:
                        token = r.json().get(req.successor, token)

            await asyncio.gather(*(worker(i) for i in range(conns)))
            elapsed = time.perf_counter() - t_start
        ok = len(lat) - counts["bad"]
        lat.sort()

        def pct(q: float) -> float:
            return lat[min(len(lat) - 1, int(q * len(lat)))] * 1e3 if lat else float("nan")

        return Run(
            ok, counts["bad"], counts["sock"], elapsed, pct(0.5), pct(0.99), 0.0, "".join(first[:1])
        )


# -- measurement ----------------------------------------------------------------------------------


@dataclass
class Cell:
    flow: str
    service: str
    runs: list[Run] = field(default_factory=list)
    warmup_errors: int = 0
    first_error: str = ""

    @property
    def ok(self) -> int:
        return sum(r.ok for r in self.runs)

    @property
    def seconds(self) -> float:
        return sum(r.seconds for r in self.runs)

    @property
    def rates(self) -> list[float]:
        """2xx responses per second, one per round."""
        return [r.ok / r.seconds if r.seconds else 0.0 for r in self.runs]

    @property
    def rps(self) -> float:
        return statistics.median(self.rates) if self.runs else 0.0

    @property
    def errors(self) -> int:
        return self.warmup_errors + sum(r.non2xx + r.socket_errors for r in self.runs)

    @property
    def p50(self) -> float:
        runs = [r.p50_ms for r in self.runs if r.ok]
        return statistics.median(runs) if runs else float("nan")

    @property
    def p99(self) -> float:
        runs = [r.p99_ms for r in self.runs if r.ok]
        return statistics.median(runs) if runs else float("nan")


def check_once(adapter: Adapter, req: Req, cell: tuple[str, str]) -> None:
    """A fixed request answers 2xx (and passes its check) before any load."""
    if req.successor:
        return  # sending would rotate the chain; the run itself fails loudly instead
    r = adapter.http.request(req.method, req.path, headers=req.headers, content=req.body or None)
    if not r.is_success or (req.check is not None and not req.check(r)):
        raise SystemExit(
            f"{cell}: {req.method} {req.path} answered {r.status_code}: {r.text[:300]}"
        )


def measure(
    adapters: dict[str, Adapter],
    gen: Wrk | PyGen,
    rounds: int,
    seconds: int,
    warmup: int,
    conns: int,
    log: Callable[[str], None],
) -> dict[tuple[str, str], Cell]:
    cells = {c: Cell(*c) for c in CELLS}
    for rnd in range(rounds):
        order: Iterable[tuple[str, str]] = CELLS if rnd % 2 == 0 else reversed(CELLS)
        for key in order:
            flow, name = key
            adapter, cell = adapters[name], cells[key]
            base = adapter.base
            req = adapter.req(flow, conns)
            check_once(adapter, req, key)
            if warmup:
                w = gen.run(base, req, conns, warmup)
                cell.warmup_errors += w.non2xx + w.socket_errors
                cell.first_error = cell.first_error or w.first_error
                if req.successor:  # the warm-up moved the chains on: new sessions
                    req = adapter.req(flow, conns)
            run = gen.run(base, req, conns, seconds)
            cell.runs.append(run)
            cell.first_error = cell.first_error or run.first_error
            log(
                f"round {rnd + 1}/{rounds} {flow:10} {name:18} {run.ok / run.seconds:8.0f} req/s "
                f"p50 {run.p50_ms:6.1f} p99 {run.p99_ms:6.1f} ms  errors "
                f"{run.non2xx + run.socket_errors}"
            )
    return cells


# -- output ---------------------------------------------------------------------------------------


def cells_table(cells: dict[tuple[str, str], Cell]) -> str:
    lines = [
        "| flow | service | req/s | p50 ms | p99 ms | requests | errors |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for key in CELLS:
        c = cells[key]
        err = str(c.errors) if not c.errors else f"**{c.errors} FAILED**"
        lines.append(
            f"| {c.flow} | {LABELS[key]} | {c.rps:,.0f} | {c.p50:.1f} | {c.p99:.1f} "
            f"| {c.ok:,} | {err} |"
        )
    return "\n".join(lines)


def goals(cells: dict[tuple[str, str], Cell]) -> list[tuple[str, str, str, str]]:
    """(goal, measured, target, verdict) for every ratio the goals name."""

    def ratio(a: tuple[str, str], b: tuple[str, str]) -> tuple[float, str]:
        """The median over rounds of the same-round ratio (cells of one flow run back to back,
        so a round's ratio is the least touched by drift on the machine), and its range."""
        pairs = zip(cells[a].rates, cells[b].rates, strict=True)
        values = [x / y if y else float("nan") for x, y in pairs]
        if not values:
            return float("nan"), ""
        spread = f" (rounds {min(values):.2f}–{max(values):.2f})" if len(values) > 1 else ""
        return statistics.median(values), spread

    rows: list[tuple[str, str, str, str]] = []

    def at_least(goal: str, measured: tuple[float, str], target: float, note: str = "") -> None:
        value, spread = measured
        verdict = "PASS" if value >= target else "MISS"
        rows.append((goal, f"{value:.2f}×{spread}", f"≥ {target:g}×{note}", verdict))

    at_least(
        "protected: tokenward /userinfo ÷ fje", ratio(("protected", TW), ("protected", FJE)), 2
    )
    at_least(
        "introspect: tokenward /introspect ÷ fje", ratio(("introspect", TW), ("introspect", FJE)), 2
    )
    floor = cells[("protected", FLOOR)].rps
    for flow, what in (("protected", "/userinfo"), ("introspect", "/introspect")):
        value, spread = ratio((flow, TW), ("protected", FLOOR))
        rows.append(
            (
                f"floor: tokenward {what} ÷ ASGI floor",
                f"{value:.2f}×{spread}; floor {floor:,.0f} req/s",
                "≥ 0.5× (within 2×)",
                "PASS" if value >= 0.5 else "MISS",
            )
        )
    at_least(
        "refresh: tokenward SQLite ÷ fje stateless", ratio(("refresh", TW), ("refresh", FJE)), 1
    )
    at_least(
        "refresh: tokenward Redis ÷ fje stateless",
        ratio(("refresh", TW_REDIS), ("refresh", FJE)),
        2,
        " (stretch)",
    )
    at_least("refresh: tokenward SQLite ÷ simplejwt", ratio(("refresh", TW), ("refresh", SJ)), 10)
    at_least(
        "refresh: tokenward Redis ÷ simplejwt", ratio(("refresh", TW_REDIS), ("refresh", SJ)), 10
    )
    for flow, tw in (
        ("protected", TW),
        ("introspect", TW),
        ("refresh", TW),
        ("refresh", TW_REDIS),
    ):
        mine = cells[(flow, tw)].p99
        peers = {svc: cells[(flow, svc)].p99 for svc in (FJE, SJ)}
        best_peer = min(peers, key=lambda s: peers[s])
        what = "tokenward" if tw == TW else "tokenward Redis"
        if flow == "refresh":
            what += "" if tw == TW_REDIS else " SQLite"
        rows.append(
            (
                f"p99 {flow}: {what} vs lowest peer",
                f"{mine:.1f} ms vs {peers[best_peer]:.1f} ms ({best_peer})",
                "lowest of the three",
                "PASS" if mine <= peers[best_peer] else "MISS",
            )
        )
    si = cells[("sign-in", TW)]
    rows.append(
        (
            "sign-in: tokenward password grant",
            f"{si.rps:,.1f} req/s, p99 {si.p99:.0f} ms "
            f"(simplejwt {cells[('sign-in', SJ)].rps:,.1f} req/s)",
            "report only (argon2-bound)",
            "—",
        )
    )
    return rows


def goals_table(rows: list[tuple[str, str, str, str]]) -> str:
    lines = ["| goal | measured | target | verdict |", "|---|---|---|---|"]
    lines += [f"| {g} | {m} | {t} | {'**MISS**' if v == 'MISS' else v} |" for g, m, t, v in rows]
    return "\n".join(lines)


def plot(cells: dict[tuple[str, str], Cell], path: Path, subtitle: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import ScalarFormatter

    colors = {
        TW: "#2b6cb0",
        TW_REDIS: "#63b3ed",
        FJE: "#2f855a",
        SJ: "#c05621",
        FLOOR: "#718096",
    }
    short = {
        TW: "tokenward",
        TW_REDIS: "tokenward (Redis)",
        FJE: "flask-jwt-extended",
        SJ: "simplejwt",
        FLOOR: "ASGI floor",
    }
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.6))
    width = 0.2
    seen: set[str] = set()
    for j, flow in enumerate(FLOWS):
        svcs = [s for f, s in CELLS if f == flow]
        for i, svc in enumerate(svcs):
            x = j + (i - (len(svcs) - 1) / 2) * width
            c = cells[(flow, svc)]
            label = None if svc in seen else short[svc]
            seen.add(svc)
            ax1.bar(x, c.rps, width, color=colors[svc], label=label)
            ax2.bar(x, c.p99, width, color=colors[svc])
    for ax, title in (
        (ax1, "throughput (requests/s, log scale, higher is better)"),
        (ax2, "p99 latency (ms, log scale, lower is better)"),
    ):
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(ScalarFormatter())
        ax.set_xticks(range(len(FLOWS)), FLOWS)
        ax.set_title(title, fontsize=10)
        ax.grid(axis="y", alpha=0.3, which="both")
    ax1.legend(fontsize=8)
    fig.suptitle(
        f"tokenward vs flask-jwt-extended vs simplejwt over HTTP — {subtitle}", fontsize=10
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--duration", type=int, default=8, help="measured seconds per cell per round")
    ap.add_argument("--warmup", type=int, default=2, help="unmeasured seconds before each cell")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--connections", type=int, default=4)
    ap.add_argument(
        "--generator", choices=("auto", "wrk", "python"), default="auto", help="auto: wrk if found"
    )
    ap.add_argument(
        "--no-pin", action="store_true", help="do not pin servers / generator (taskset)"
    )
    ap.add_argument("--plot", type=Path, default=ROOT / "docs" / "img" / "http-bench.png")
    ap.add_argument("--quick", action="store_true", help="smoke run: 1 round of 1 s, no plot")
    args = ap.parse_args()
    if args.quick:
        args.duration, args.warmup, args.rounds = 1, 0, 1
    for tool in ("gunicorn", "tokenward"):
        if not (BIN / tool).exists():
            raise SystemExit(f"{tool} not found in {BIN}: pip install -e '.[bench]'")
    use_wrk = args.generator == "wrk" or (args.generator == "auto" and shutil.which("wrk"))
    if args.generator == "wrk" and not shutil.which("wrk"):
        raise SystemExit("wrk not found: apt-get install -y wrk (make bench-http does)")
    cores = os.cpu_count() or 1
    can_pin = not args.no_pin and cores >= 2 and shutil.which("taskset") is not None
    server_pin = ["taskset", "-c", "1"] if can_pin else []
    gen_pin = ["taskset", "-c", "0"] if can_pin else []
    load_before = os.getloadavg()
    tmp = Path(tempfile.mkdtemp(prefix="tokenward-http-bench-"))
    redis_prefix = f"twhttpbench{uuid.uuid4().hex[:10]}"
    services: dict[str, Service] = {}
    gen: Wrk | PyGen = Wrk(tmp, gen_pin) if use_wrk else PyGen()
    if gen_pin and not use_wrk:
        os.sched_setaffinity(0, {0})  # the Python generator is this process
    redis_ping()
    print(f"load generator: {gen.name} ({gen.version})", file=sys.stderr)
    t0 = time.monotonic()
    try:
        services = start_all(tmp, server_pin, redis_prefix)
        adapters: dict[str, Adapter] = {
            TW: Tokenward(services[TW].base),
            TW_REDIS: Tokenward(services[TW_REDIS].base),
            FJE: FlaskJwt(services[FJE].base),
            SJ: SimpleJwt(services[SJ].base),
            FLOOR: Floor(services[FLOOR].base),
        }
        cells = measure(
            adapters,
            gen,
            args.rounds,
            args.duration,
            args.warmup,
            args.connections,
            lambda s: print(s, file=sys.stderr, flush=True),
        )
        for a in adapters.values():
            a.http.close()
    finally:
        for svc in services.values():
            svc.stop()
        with contextlib.suppress(Exception):
            redis_cleanup(redis_prefix)
        shutil.rmtree(tmp, ignore_errors=True)
    load_after = os.getloadavg()
    wall = time.monotonic() - t0
    gen_cpu = sum(r.generator_cpu for c in cells.values() for r in c.runs)
    measured = sum(c.seconds for c in cells.values())
    subtitle = (
        f"1 worker each, {args.connections} connections, {args.rounds}×{args.duration} s per "
        f"cell, {cores} cores"
    )
    pin_text = (
        "servers pinned to CPU 1 (`taskset`), load generator to CPU 0"
        if server_pin
        else "no CPU pinning"
    )
    print(f"### HTTP flows ({subtitle})\n")
    print(
        f"- load generator: **{gen.name}** ({gen.version}), {args.connections} connections; "
        f"{gen_cpu / measured:.0%} of one core while measuring"
        if measured
        else f"- load generator: {gen.name}"
    )
    print(
        f"- {pin_text}; warm-up {args.warmup} s per cell; rounds interleaved; run id "
        f"{secrets.token_hex(3)}, {wall:.0f} s"
    )
    print(
        f"- load average (1/5/15 min) before {load_before[0]:.2f} {load_before[1]:.2f} "
        f"{load_before[2]:.2f}, after {load_after[0]:.2f} {load_after[1]:.2f} "
        f"{load_after[2]:.2f} (other processes share the machine)"
    )
    print(
        "- the ASGI floor: a bare ASGI callable returning a 16-byte JSON, no framework, served "
        "by `tokenward serve` itself (same CLI, same uvicorn configuration: httptools protocol "
        "with the header-timeout mixin, uvloop, 1 worker, uvicorn access log off)"
    )
    print(
        f"- versions: uvicorn {pkg_version('uvicorn')}, uvloop {pkg_version('uvloop')}, "
        f"httptools {pkg_version('httptools')}, gunicorn {pkg_version('gunicorn')}, "
        f"flask-jwt-extended {pkg_version('flask-jwt-extended')}, "
        f"djangorestframework-simplejwt {pkg_version('djangorestframework-simplejwt')}; "
        "all three sign ES256\n"
    )
    print(cells_table(cells))
    print()
    print(goals_table(goals(cells)))
    failed = [k for k, c in cells.items() if c.errors]
    for key in failed:
        print(f"\nFAILED {key}: {cells[key].errors} errors, first: {cells[key].first_error}")
    if not args.quick or args.plot != ap.get_default("plot"):
        plot(cells, args.plot, subtitle)
        shown = args.plot.relative_to(ROOT) if args.plot.is_relative_to(ROOT) else args.plot
        print(f"\nplot: {shown}")
    if failed:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
