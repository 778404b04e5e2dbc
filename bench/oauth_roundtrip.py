"""Cost of a full authorization-code round trip (sign-in excluded) against a refresh, same run.

The app runs in-process (``httpx.ASGITransport``, no sockets, so the numbers are the server's
own work plus the store) on a SQLite file store. The user is signed in once (sign-in session
cookie) and has consented once; each measured round trip is then:

1. ``GET /authorize`` (client + redirect URI checks, sign-in session read and touch, consent
   read, code record written) → 302 with the code;
2. ``POST /token grant_type=authorization_code`` (code read, PKCE check, compare-and-set
   consume, refresh family created, family recorded on the code, sign-in session updated,
   access token + RS256 ID token signed).

A refresh is one ``POST /token grant_type=refresh_token`` (rotation in one transaction, one
ES256 access token). Reported: median and p95 of each and their ratio (peer: the refresh, in the
same process and run).

Run: ``.venv/bin/python bench/oauth_roundtrip.py [--n 200]`` (a few seconds).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import re
import secrets
import statistics
import tempfile
import time
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
from argon2 import PasswordHasher

from tokenward.server import create_app
from tokenward.server.settings import Settings

REDIRECT = "http://127.0.0.1/cb"


def _hidden(page: str, name: str) -> str:
    m = re.search(rf'name="{name}" value="([^"]*)"', page)
    assert m is not None
    return m.group(1)


def _pkce() -> tuple[str, str]:
    v = secrets.token_urlsafe(48)
    c = base64.urlsafe_b64encode(hashlib.sha256(v.encode()).digest()).rstrip(b"=").decode()
    return v, c


async def main(n: int) -> None:
    tmp = Path(tempfile.mkdtemp())
    settings = Settings(
        store_url=f"sqlite:///{tmp / 'tw.db'}",
        issuer="https://bench.tokenward.test",
        login_limit_per_account="1000/minute",
        login_limit_per_ip="1000/minute",
        refresh_grace_seconds=0,
    )
    hasher = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    app = create_app(settings, password_hasher=hasher)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="https://bench.tokenward.test"
        ) as http,
    ):
        rt = app.state.runtime
        await rt.users.create("alice", "bench password 1")
        await rt.clients.create(
            "spa",
            public=True,
            grants=("authorization_code", "refresh_token"),
            redirect_uris=(REDIRECT,),
        )

        def params(challenge: str) -> str:
            return urlencode(
                {
                    "response_type": "code",
                    "client_id": "spa",
                    "redirect_uri": REDIRECT,
                    "scope": "openid profile",
                    "state": "s",
                    "nonce": "n",
                    "code_challenge": challenge,
                    "code_challenge_method": "S256",
                }
            )

        # sign in and consent once (not measured)
        _, c = _pkce()
        page = (await http.get("/authorize?" + params(c))).text
        r = await http.post(
            "/authorize/signin",
            data={
                "request_id": _hidden(page, "request_id"),
                "csrf_token": _hidden(page, "csrf_token"),
                "username": "alice",
                "password": "bench password 1",
            },
        )
        await http.post(
            "/authorize/consent",
            data={
                "request_id": _hidden(r.text, "request_id"),
                "csrf_token": _hidden(r.text, "csrf_token"),
                "decision": "allow",
            },
        )

        async def round_trip() -> str:
            v, c = _pkce()
            r = await http.get("/authorize?" + params(c))
            assert r.status_code == 302, r.text
            code = parse_qs(urlsplit(r.headers["location"]).query)["code"][0]
            t = await http.post(
                "/token",
                data={
                    "grant_type": "authorization_code",
                    "code": code,
                    "redirect_uri": REDIRECT,
                    "code_verifier": v,
                    "client_id": "spa",
                },
            )
            assert t.status_code == 200, t.text
            return str(t.json()["refresh_token"])

        rtok = await round_trip()
        codes: list[float] = []
        refreshes: list[float] = []
        for _ in range(n):  # interleaved, so both see the same machine load
            t0 = time.perf_counter()
            await round_trip()
            codes.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            r = await http.post(
                "/token",
                data={"grant_type": "refresh_token", "refresh_token": rtok, "client_id": "spa"},
            )
            refreshes.append(time.perf_counter() - t0)
            assert r.status_code == 200, r.text
            rtok = r.json()["refresh_token"]

    def ms(xs: list[float], q: float) -> float:
        return sorted(xs)[int(q * (len(xs) - 1))] * 1000

    med_c, med_r = statistics.median(codes) * 1000, statistics.median(refreshes) * 1000
    print(f"n = {n}, SQLite file store, in-process ASGI")
    print("| operation | median ms | p95 ms |")
    print("|---|---|---|")
    print(f"| code round trip (authorize + token) | {med_c:.2f} | {ms(codes, 0.95):.2f} |")
    print(f"| refresh | {med_r:.2f} | {ms(refreshes, 0.95):.2f} |")
    print(f"\nratio (median): code round trip = {med_c / med_r:.1f} x refresh")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200)
    asyncio.run(main(ap.parse_args().n))
