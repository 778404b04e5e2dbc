"""A Flask API protected by tokenward.guard. Run: see README.md next to this file."""

from __future__ import annotations

import os
from typing import Any

from flask import Flask

from tokenward.guard import Verifier
from tokenward.guard.flask import Guard, current_claims


def verifier_from_env() -> Verifier:
    base = os.environ.get("TOKENWARD_URL", "http://127.0.0.1:8000").rstrip("/")
    return Verifier(
        jwks_url=f"{base}/.well-known/jwks.json",
        issuer=os.environ.get("TOKENWARD_ISSUER", base),
        audience=os.environ.get("TOKENWARD_AUDIENCE", "api"),
        revocations_url=f"{base}/revocations",
        client_id=os.environ["TOKENWARD_CLIENT_ID"],
        client_secret=os.environ["TOKENWARD_CLIENT_SECRET"],
    )


def create_app(verifier: Verifier) -> Flask:
    app = Flask("orders")
    app.config["TOKENWARD_GUARD_REALM"] = "orders"
    guard = Guard(app, verifier=verifier)

    @app.get("/healthz")
    def healthz() -> Any:
        return {"ok": True, "guard": verifier.status()}

    @app.get("/orders")
    @guard.require(scopes=["read"])
    def orders() -> Any:
        return {"sub": current_claims().sub, "orders": [{"id": 1, "item": "passport"}]}

    return app


if __name__ == "__main__":
    create_app(verifier_from_env()).run(host="127.0.0.1", port=8002, threaded=True)
