"""Helpers that drive the authorization code flow through the real pages by form posts."""

from __future__ import annotations

import base64
import hashlib
import html
import re
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import orjson

from support.authz import open_api
from support.server import ALICE_PW, Server

WEB = "web"  # third-party public client
WEB_CB = "https://web.example/cb"
FIRST = "first"  # first-party public client
FIRST_CB = "https://first.example/cb"


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    return verifier, challenge.rstrip(b"=").decode()


def hidden(page: str, name: str) -> str:
    m = re.search(rf'name="{name}" value="([^"]*)"', page)
    assert m is not None, f"no hidden field {name!r} in page"
    return html.unescape(m.group(1))


def jwt_claims(token: str) -> dict[str, Any]:
    seg = token.split(".")[1]
    out: dict[str, Any] = orjson.loads(base64.urlsafe_b64decode(seg + "=" * (-len(seg) % 4)))
    return out


def jwt_header(token: str) -> dict[str, Any]:
    seg = token.split(".")[0]
    out: dict[str, Any] = orjson.loads(base64.urlsafe_b64decode(seg + "=" * (-len(seg) % 4)))
    return out


def redirect_params(location: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def register(server: Server) -> None:
    async def go() -> None:
        await server.runtime.clients.create(
            WEB,
            public=True,
            grants=("authorization_code", "refresh_token"),
            redirect_uris=(WEB_CB, "http://127.0.0.1/cb"),
            name="Web App",
        )
        await server.runtime.clients.create(
            FIRST,
            public=True,
            grants=("authorization_code", "refresh_token"),
            redirect_uris=(FIRST_CB,),
            first_party=True,
        )
        # the API "api" (read, write) held by alice; both clients may ask for it and OIDC
        await open_api(
            server.runtime,
            users=["alice"],
            clients=[WEB, FIRST],
            extra_client_scopes=["openid", "profile"],
        )

    server.run(go)


@dataclass
class Flow:
    server: Server
    client_id: str = WEB
    redirect_uri: str = WEB_CB

    def __post_init__(self) -> None:
        self.verifier, self.challenge = pkce()
        self.state = secrets.token_urlsafe(8)
        self.nonce = secrets.token_urlsafe(8)

    def params(self, **extra: str) -> dict[str, str]:
        p = {
            "response_type": "code",
            "client_id": self.client_id,
            "redirect_uri": self.redirect_uri,
            "scope": "openid profile",
            "state": self.state,
            "nonce": self.nonce,
            "code_challenge": self.challenge,
            "code_challenge_method": "S256",
        }
        p.update(extra)
        return {k: v for k, v in p.items() if v != ""}

    def authorize(self, **extra: str) -> Any:
        return self.server.http.get(
            "/authorize?" + urlencode(self.params(**extra)), follow_redirects=False
        )

    def sign_in(self, page: str, username: str = "alice", password: str = ALICE_PW) -> Any:
        return self.server.http.post(
            "/authorize/signin",
            data={
                "request_id": hidden(page, "request_id"),
                "csrf_token": hidden(page, "csrf_token"),
                "username": username,
                "password": password,
            },
            follow_redirects=False,
        )

    def consent(self, page: str, decision: str = "allow") -> Any:
        return self.server.http.post(
            "/authorize/consent",
            data={
                "request_id": hidden(page, "request_id"),
                "csrf_token": hidden(page, "csrf_token"),
                "decision": decision,
            },
            follow_redirects=False,
        )

    def code(self, **extra: str) -> str:
        """Sign in (if asked) and consent (if asked); the code from the redirect."""
        r = self.authorize(**extra)
        if r.status_code == 200 and 'name="password"' in r.text:
            r = self.sign_in(r.text)
        if r.status_code == 200 and 'name="decision"' in r.text:
            r = self.consent(r.text)
        assert r.status_code in (302, 303), r.text
        params = redirect_params(r.headers["location"])
        assert "code" in params, params
        return params["code"]

    def exchange(self, code: str, **extra: str) -> Any:
        data = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": self.redirect_uri,
            "code_verifier": self.verifier,
            "client_id": self.client_id,
        }
        data.update(extra)
        return self.server.http.post("/token", data={k: v for k, v in data.items() if v})
