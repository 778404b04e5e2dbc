"""DPoP interop with code nobody here wrote (RFC 9449): the npm packages ``dpop`` (every
algorithm the server lists) and ``oauth4webapi`` (discovery, its DPoP handle and nonce retry)
drive ``/token`` and ``/userinfo`` of a live ``tokenward serve`` that asks for nonces; npm
``jose`` verifies the DPoP-bound access token against the JWKS and checks ``cnf.jkt``. The
npm packages are pinned in ``tests/interop/package.json`` and its lockfile (``npm ci``)."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from support.env import service_missing
from support.serve import Served, free_port, launch

HERE = Path(__file__).parent
ADMIN_PW = "interop admin password"


@pytest.fixture(scope="module")
def node() -> str:
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        service_missing("node/npm not installed: the DPoP interop tests need them")
    if not (HERE / "node_modules" / "oauth4webapi").is_dir():
        r = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--silent"],
            cwd=HERE,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if r.returncode != 0:
            service_missing(f"npm ci failed (registry unreachable?): {r.stderr[-500:]}")
    return str(node)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    cwd = tmp_path_factory.mktemp("dpop-interop")
    settings = {
        "TOKENWARD_ADMIN_PASSWORD": ADMIN_PW,
        "TOKENWARD_STORE_URL": f"sqlite:///{cwd / 'tokenward.db'}",
        "TOKENWARD_DPOP_NONCE": "1",
        "TOKENWARD_PASSWORD_TIME_COST": "1",
        "TOKENWARD_PASSWORD_MEMORY_COST": "8192",
        "TOKENWARD_LOGIN_LIMIT_PER_ACCOUNT": "1000/minute",
        "TOKENWARD_LOGIN_LIMIT_PER_IP": "5000/minute",
    }

    port = free_port()
    settings["TOKENWARD_ISSUER"] = f"http://127.0.0.1:{port}"
    served = launch(settings, cwd=cwd, port=port)
    try:
        served.wait_ready()
        yield served
    finally:
        served.stop()


@pytest.fixture(scope="module")
def results(node: str, server: Served) -> dict[str, Any]:
    r = subprocess.run(
        [node, str(HERE / "dpop_interop.mjs"), server.base, "admin", ADMIN_PW, "tokenward-console"],
        cwd=HERE,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    out: dict[str, Any] = json.loads(r.stdout.strip().splitlines()[-1])
    return out


@pytest.mark.parametrize("alg", ["ES256", "Ed25519", "PS256", "RS256"])
def test_npm_dpop_proofs_get_bound_tokens_userinfo_and_refresh(
    results: dict[str, Any], alg: str
) -> None:
    r = results[f"dpop_{alg}"]
    assert r["token"] == 200 and r["token_type"] == "DPoP"
    assert r["jkt_matches"] is True
    assert r["userinfo"] == 200 and r["sub"] == "admin"
    assert r["refresh"] == 200 and r["refresh_token_type"] == "DPoP"


@pytest.mark.parametrize("alg", ["ES256", "Ed25519"])
def test_npm_dpop_proofs_that_do_not_fit_are_refused(results: dict[str, Any], alg: str) -> None:
    r = results[f"dpop_{alg}"]
    assert r["other_key"] == "invalid_grant"  # the refresh token is bound to the first key
    assert r["wrong_htm"] == "invalid_dpop_proof"
    assert r["no_ath"] == "invalid_dpop_proof"
    assert r["replay"] == "invalid_dpop_proof"


def test_oauth4webapi_discovers_dpop_and_works_through_nonces(results: dict[str, Any]) -> None:
    r = results["oauth4webapi"]
    assert "ES256" in r["algs"]
    assert r["token_type"] == "dpop" and r["refresh_token_type"] == "dpop"
    assert r["userinfo"] == 200 and r["sub"] == "admin"


def test_node_jose_verifies_the_bound_access_token_and_its_cnf(results: dict[str, Any]) -> None:
    r = results["oauth4webapi"]
    assert r["jose_typ"] == "at+jwt"
    assert r["jose_jkt_matches"] is True


def test_the_interop_packages_are_pinned_in_a_lockfile() -> None:
    pkg = json.loads((HERE / "package.json").read_text())
    lock = json.loads((HERE / "package-lock.json").read_text())
    for name, version in pkg["devDependencies"].items():
        assert version[0].isdigit(), f"{name} is not pinned to one version"
        assert lock["packages"][f"node_modules/{name}"]["version"] == version


def test_server_metadata_advertises_what_the_packages_used(server: Served) -> None:
    meta = httpx.get(f"{server.base}/.well-known/oauth-authorization-server", timeout=10).json()
    assert set(meta["dpop_signing_alg_values_supported"]) >= {"ES256", "Ed25519", "PS256", "RS256"}
