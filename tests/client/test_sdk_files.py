"""The browser SDK as files: one implementation (the packaged module and the npm directory
hold the same bytes), served at /sdk/ with the right headers, its pure parts under
``node --test``, its documented integrity hash true; and the two counters the single-flight
tests read really count."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from support.env import service_missing
from tokenward.server.routes.sdk import integrity

from .conftest import CONSOLE, USER, USER_PW, Live

ROOT = Path(__file__).resolve().parents[2]
PACKAGED = ROOT / "src" / "tokenward" / "sdk"
NPM = ROOT / "clients" / "js"


@pytest.mark.parametrize("name", ["tokenward.js", "tokenward.d.ts"])
def test_npm_package_and_python_package_hold_the_same_module(name: str) -> None:
    assert (NPM / name).read_bytes() == (PACKAGED / name).read_bytes(), (
        f"clients/js/{name} differs from src/tokenward/sdk/{name}; "
        f"copy the packaged file: cp src/tokenward/sdk/{name} clients/js/"
    )


def test_node_package_pins_its_dependencies_in_a_lockfile() -> None:
    pkg = json.loads((NPM / "package.json").read_text())
    lock = json.loads((NPM / "package-lock.json").read_text())
    assert lock["packages"][""]["name"] == pkg["name"] == "@tokenward/client"
    for name, spec in {**pkg.get("dependencies", {}), **pkg.get("devDependencies", {})}.items():
        assert re.fullmatch(r"\d+\.\d+\.\d+", spec), f"{name} {spec} is not pinned"
        assert lock["packages"][f"node_modules/{name}"]["version"] == spec
    assert pkg["types"] == "./tokenward.d.ts" and pkg["type"] == "module"


def test_node_unit_tests_of_the_pure_parts_pass() -> None:
    node = shutil.which("node")
    if node is None:
        service_missing("node is not installed (apt-get install -y nodejs)")
    # the built-in runner and node:assert only: nothing is installed at run time
    run = subprocess.run(
        [node, "--test", "test/"], cwd=NPM, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert re.search(r"^# pass [1-9]\d*$", run.stdout, re.M)
    assert re.search(r"^# fail 0$", run.stdout, re.M)


def test_documented_integrity_hash_is_the_served_modules() -> None:
    docs = (ROOT / "docs" / "clients.md").read_text()
    assert integrity() in docs, f"docs/clients.md must show integrity={integrity()!r}"


@pytest.mark.parametrize(
    ("path", "ctype", "name"),
    [
        ("/sdk/tokenward.js", "text/javascript; charset=utf-8", "tokenward.js"),
        ("/sdk/tokenward.d.ts", "application/typescript; charset=utf-8", "tokenward.d.ts"),
    ],
)
def test_sdk_is_served_with_its_type_cors_and_revalidation(
    live: Live, path: str, ctype: str, name: str
) -> None:
    r = httpx.get(live.base + path)
    assert r.status_code == 200
    assert r.content == (PACKAGED / name).read_bytes()
    assert r.headers["content-type"] == ctype
    assert r.headers["cache-control"] == "public, no-cache"
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["access-control-allow-origin"] == "*"  # cross-origin module + integrity
    again = httpx.get(live.base + path, headers={"If-None-Match": r.headers["etag"]})
    assert again.status_code == 304 and again.content == b""


def test_metrics_count_refreshes_and_grace_replays_under_their_names(live: Live) -> None:
    def counters() -> tuple[float, float]:
        c = live.counters()
        return c["tokenward_refreshes_total"], c["tokenward_grace_replays_total"]

    with httpx.Client(base_url=live.base) as http:
        pair = http.post("/login", json={"username": USER, "password": USER_PW}).json()
        form = {"grant_type": "refresh_token", "client_id": CONSOLE}
        refreshes, replays = counters()
        first = http.post("/token", data={**form, "refresh_token": pair["refresh_token"]})
        assert first.status_code == 200
        assert counters() == (refreshes + 1, replays)
        # the same parent again inside the grace window: the same successor, counted as a replay
        again = http.post("/token", data={**form, "refresh_token": pair["refresh_token"]})
        assert again.status_code == 200
        assert again.json()["refresh_token"] == first.json()["refresh_token"]
        assert counters() == (refreshes + 1, replays + 1)


def test_the_python_client_imports_no_server_module() -> None:
    code = (
        "import sys, tokenward.client\n"
        "server = ('fastapi', 'starlette', 'uvicorn', 'sqlalchemy', 'argon2', 'limits',"
        " 'prometheus_client', 'redis', 'psycopg', 'tokenward.server', 'requests', 'keyring')\n"
        "print(sorted(m for m in sys.modules if m.startswith(server)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "[]"  # core + httpx + stdlib; requests/keyring on demand
