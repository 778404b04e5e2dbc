"""Added latency per protected request: tokenward.guard vs flask-jwt-extended and simplejwt.

Same run, same machine, ES256 everywhere, in-process requests (no sockets) so the figures are
the framework's per-request cost plus the authentication under test:

* Flask: unprotected view; ``@guard.require`` cold (a new token every request: full verify)
  and cached (the same token: verified-token cache + revocation check);
  ``@jwt_required()`` of flask-jwt-extended (PyJWT underneath, no cache).
* DRF: ``AllowAny`` view; ``TokenwardAuthentication`` cold / cached;
  ``JWTStatelessUserAuthentication`` of djangorestframework-simplejwt (no database lookup).
* FastAPI: unprotected route; ``Depends(guard.require())`` cold / cached (ASGI call, no client).

The guard runs for real: its JWKS and revocation feed come from a loopback stub server, and
its mirror is live (the revocation check is part of every request). Prints a Markdown table.
Run: ``.venv/bin/python bench/guard.py [--n 2000]``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
from cryptography.hazmat.primitives import serialization

from tokenward.guard import Verifier
from tokenward.issuer import Issuer
from tokenward.keys import KeyRing

ISS, AUD = "http://auth.bench", "api"


def stub_server(jwks: dict[str, Any]) -> ThreadingHTTPServer:
    body = orjson.dumps(jwks)

    class H(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a: Any) -> None:
            pass

        def do_GET(self) -> None:
            if self.path.startswith("/revocations"):
                if "wait=0&" not in self.path + "&" and "wait=0" not in self.path:
                    time.sleep(1.0)
                data = b'{"events": [], "cursor": 0, "more": false}'
            else:
                data = body
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Cache-Control", "max-age=300")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


def per_call_us(fn: Callable[[int], Any], n: int, repeat: int = 5) -> float:
    runs = []
    for _ in range(repeat):
        t0 = time.perf_counter_ns()
        for i in range(n):
            fn(i)
        runs.append((time.perf_counter_ns() - t0) / n / 1000)
    return statistics.median(runs)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2000)
    args = ap.parse_args()
    n = args.n

    ring = KeyRing.generate("ES256", with_next=False)
    issuer = Issuer(ring, issuer=ISS, audience=AUD)
    srv = stub_server(ring.public_jwks())
    base = f"http://127.0.0.1:{srv.server_address[1]}"
    verifier = Verifier(
        jwks_url=base + "/jwks",
        issuer=ISS,
        audience=AUD,
        revocations_url=base + "/revocations",
        client_id="bench",
        client_secret="bench",
        feed_wait=1.0,
        cache_size=100_000,
    ).start()
    assert verifier.mirror is not None and verifier.mirror.synced
    total = n * 5 + 10
    cold_tokens = [
        issuer.issue_access_token(sub=f"u{i}", client_id="web", scope="read")
        for i in range(total * 3)
    ]
    cold_iter = iter(cold_tokens)
    hot = issuer.issue_access_token(sub="alice", client_id="web", scope="read")

    pem_priv = ring.active.private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    pem_pub = ring.active.public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    rows: list[tuple[str, str, float]] = []

    # -- Flask -------------------------------------------------------------------------------
    from flask import Flask
    from flask_jwt_extended import JWTManager, create_access_token, jwt_required

    from tokenward.guard.flask import Guard

    app = Flask("bench")
    app.config.update(
        JWT_ALGORITHM="ES256",
        JWT_PRIVATE_KEY=pem_priv,
        JWT_PUBLIC_KEY=pem_pub,
        JWT_DECODE_AUDIENCE=AUD,
        JWT_ENCODE_AUDIENCE=AUD,
    )
    JWTManager(app)
    guard = Guard(app, verifier=verifier)

    @app.get("/open")
    def open_view() -> Any:
        return {"ok": True}

    @app.get("/guard")
    @guard.require(scopes=["read"])
    def guard_view() -> Any:
        return {"ok": True}

    @app.get("/fje")
    @jwt_required()
    def fje_view() -> Any:
        return {"ok": True}

    with app.app_context():
        fje_token = create_access_token(identity="alice")
    wsgi = app.wsgi_app

    def wsgi_call(path: str, token: str | None) -> int:
        env = {
            "REQUEST_METHOD": "GET", "PATH_INFO": path, "SERVER_NAME": "b", "SERVER_PORT": "80",
            "wsgi.url_scheme": "http", "wsgi.input": None, "wsgi.errors": None,
        }  # fmt: skip
        if token:
            env["HTTP_AUTHORIZATION"] = f"Bearer {token}"
        status: list[str] = []
        b"".join(wsgi(env, lambda s, h, e=None: status.append(s)))
        assert status[0].startswith("200"), status
        return 0

    open_us = per_call_us(lambda i: wsgi_call("/open", None), n)
    rows.append(("Flask", "unprotected view", open_us))
    rows.append(("Flask", "tokenward.guard, cold (new token each request)",
                 per_call_us(lambda i: wsgi_call("/guard", next(cold_iter)), n)))  # fmt: skip
    rows.append(("Flask", "tokenward.guard, cached (same token)",
                 per_call_us(lambda i: wsgi_call("/guard", hot), n)))  # fmt: skip
    rows.append(("Flask", "flask-jwt-extended @jwt_required (same token)",
                 per_call_us(lambda i: wsgi_call("/fje", fje_token), n)))  # fmt: skip

    # -- Django REST Framework ------------------------------------------------------------------
    import django
    from django.conf import settings

    settings.configure(
        SECRET_KEY="bench",
        ALLOWED_HOSTS=["*"],
        INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth", "rest_framework"],
        DATABASES={},
        ROOT_URLCONF=__name__,
        REST_FRAMEWORK={"UNAUTHENTICATED_USER": None},
        SIMPLE_JWT={
            "ALGORITHM": "ES256",
            "SIGNING_KEY": pem_priv.decode(),
            "VERIFYING_KEY": pem_pub.decode(),
            "AUDIENCE": AUD,
            "ISSUER": ISS,
        },
    )
    django.setup()
    from rest_framework.permissions import AllowAny, IsAuthenticated
    from rest_framework.response import Response
    from rest_framework.test import APIRequestFactory
    from rest_framework.views import APIView
    from rest_framework_simplejwt.authentication import JWTStatelessUserAuthentication
    from rest_framework_simplejwt.tokens import AccessToken

    from tokenward.guard import django as gdj

    gdj.set_verifier(verifier)

    class Open(APIView):
        authentication_classes = ()
        permission_classes = (AllowAny,)

        def get(self, request: Any) -> Response:
            return Response({"ok": True})

    class Guarded(Open):
        authentication_classes = (gdj.TokenwardAuthentication,)
        permission_classes = (gdj.HasScopes,)
        required_scopes = ("read",)

    class SimpleJWT(Open):
        authentication_classes = (JWTStatelessUserAuthentication,)
        permission_classes = (IsAuthenticated,)

    sj = AccessToken()
    sj["user_id"] = "alice"
    sj_token = str(sj)
    rf = APIRequestFactory()
    views = {k: v.as_view() for k, v in (("open", Open), ("guard", Guarded), ("sj", SimpleJWT))}

    def drf_call(name: str, token: str | None) -> int:
        req = rf.get("/x", HTTP_AUTHORIZATION=f"Bearer {token}") if token else rf.get("/x")
        resp = views[name](req)
        assert resp.status_code == 200, resp.data
        return 0

    rows.append(("DRF", "unprotected APIView", per_call_us(lambda i: drf_call("open", None), n)))
    rows.append(("DRF", "TokenwardAuthentication + HasScopes, cold",
                 per_call_us(lambda i: drf_call("guard", next(cold_iter)), n)))  # fmt: skip
    rows.append(("DRF", "TokenwardAuthentication + HasScopes, cached",
                 per_call_us(lambda i: drf_call("guard", hot), n)))  # fmt: skip
    rows.append(("DRF", "simplejwt JWTStatelessUserAuthentication",
                 per_call_us(lambda i: drf_call("sj", sj_token), n)))  # fmt: skip

    # -- FastAPI (ASGI call, no HTTP client) ------------------------------------------------------
    from fastapi import Depends, FastAPI

    from tokenward.guard.fastapi import Guard as FGuard

    fg = FGuard(verifier)
    fapp = FastAPI()

    @fapp.get("/open")
    async def fopen() -> dict[str, bool]:
        return {"ok": True}

    @fapp.get("/guard")
    async def fguard(_: Any = Depends(fg.require(scopes=["read"]))) -> dict[str, bool]:  # noqa: B008
        return {"ok": True}

    loop = asyncio.new_event_loop()

    async def asgi_call(path: str, token: str | None) -> None:
        headers = [(b"authorization", f"Bearer {token}".encode())] if token else []
        scope = {
            "type": "http", "method": "GET", "path": path, "raw_path": path.encode(),
            "query_string": b"", "headers": headers, "http_version": "1.1", "scheme": "http",
            "server": ("b", 80), "client": ("c", 1), "root_path": "",
        }  # fmt: skip
        sent: list[Any] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(m: dict[str, Any]) -> None:
            sent.append(m)

        await fapp(scope, receive, send)
        assert sent[0]["status"] == 200, sent

    def fcall(path: str, token: str | None) -> int:
        loop.run_until_complete(asgi_call(path, token))
        return 0

    rows.append(("FastAPI", "unprotected route", per_call_us(lambda i: fcall("/open", None), n)))
    rows.append(("FastAPI", "Depends(guard.require), cold",
                 per_call_us(lambda i: fcall("/guard", next(cold_iter)), n)))  # fmt: skip
    rows.append(("FastAPI", "Depends(guard.require), cached",
                 per_call_us(lambda i: fcall("/guard", hot), n)))  # fmt: skip
    loop.close()
    verifier.close()
    srv.shutdown()

    base_of = {fw: us for fw, what, us in rows if what.startswith("unprotected")}
    print("| framework | authentication | µs / request | added vs unprotected (µs) |")
    print("|---|---|---:|---:|")
    for fw, what, us in rows:
        added = us - base_of[fw]
        print(f"| {fw} | {what} | {us:.1f} | {'—' if added == 0 else f'{added:+.1f}'} |")


urlpatterns: list[Any] = []

if __name__ == "__main__":
    main()
