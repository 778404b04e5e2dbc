"""A FastAPI API protected by tokenward.guard. Run: see README.md next to this file."""

from __future__ import annotations

import os

from fastapi import Depends, FastAPI

from tokenward.claims import AccessTokenClaims
from tokenward.guard import Verifier
from tokenward.guard.fastapi import Guard


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


def create_app(verifier: Verifier) -> FastAPI:
    guard = Guard(verifier, realm="orders")
    app = FastAPI(title="orders (FastAPI)", lifespan=guard.lifespan)
    guard.install(app)

    @app.get("/healthz")
    async def healthz() -> dict[str, object]:
        return {"ok": True, "guard": verifier.status()}

    @app.get("/orders")
    async def orders(
        claims: AccessTokenClaims = Depends(guard.require(scopes=["read"])),  # noqa: B008
    ) -> dict[str, object]:
        return {"sub": claims.sub, "orders": [{"id": 1, "item": "passport"}]}

    return app


if __name__ == "__main__":
    import uvicorn

    uvicorn.run(create_app(verifier_from_env()), host="127.0.0.1", port=8001)
