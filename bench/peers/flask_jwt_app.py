"""A minimal flask-jwt-extended service doing the benchmark's flows.

flask-jwt-extended issues and checks JWTs but keeps no state; its documentation's recipe for
revocation is a blocklist of ``jti`` checked by ``token_in_blocklist_loader``, and refresh is
stateless. So, as that recipe does (with stdlib ``sqlite3`` instead of Flask-SQLAlchemy, which
only adds overhead): a SQLite blocklist read on every token use, ES256 (the key from
``BENCH_EC_KEY``, see ``_es256.py``), served by gunicorn sync workers.

* ``POST /login``       create_access_token + create_refresh_token (no password hash: set-up)
* ``POST /refresh``     @jwt_required(refresh=True): a new pair; *stateless*: it persists
                        nothing and detects nothing (the old refresh token stays valid)
* ``POST /introspect``  HTTP Basic client auth, decode_token + blocklist → RFC 7662 shape
* ``GET  /userinfo``    @jwt_required(): the identity of the token
"""

from __future__ import annotations

import base64
import hmac
import os
import sqlite3
import threading
from typing import Any

from _es256 import key_pair_pem
from flask import Flask, jsonify, request
from flask_jwt_extended import (
    JWTManager,
    create_access_token,
    create_refresh_token,
    decode_token,
    get_jwt_identity,
    jwt_required,
)

DB = os.environ.get("BENCH_DB", "/tmp/flask-jwt-bench.sqlite3")
CLIENT_ID = "svc"
CLIENT_SECRET = os.environ.get("BENCH_CLIENT_SECRET", "bench-client-secret")
PASSWORD = os.environ.get("BENCH_PASSWORD", "bench password 1")

app = Flask(__name__)
app.config["JWT_ALGORITHM"] = "ES256"
app.config["JWT_PRIVATE_KEY"], app.config["JWT_PUBLIC_KEY"] = key_pair_pem()
jwt = JWTManager(app)
_local = threading.local()


def db() -> sqlite3.Connection:
    conn: sqlite3.Connection | None = getattr(_local, "conn", None)
    if conn is None:
        conn = sqlite3.connect(DB, timeout=20, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE IF NOT EXISTS blocklist (jti TEXT PRIMARY KEY, exp INTEGER)")
        _local.conn = conn
    return conn


def revoked(jti: str) -> bool:
    row = db().execute("SELECT 1 FROM blocklist WHERE jti = ?", (jti,)).fetchone()
    return row is not None


@jwt.token_in_blocklist_loader
def _in_blocklist(_header: dict[str, Any], payload: dict[str, Any]) -> bool:
    return revoked(payload["jti"])


@app.post("/login")
def login() -> Any:
    body = request.get_json(force=True)
    if not hmac.compare_digest(str(body.get("password", "")), PASSWORD):
        return jsonify(error="invalid_grant"), 400
    user = str(body["username"])
    return jsonify(
        access_token=create_access_token(identity=user),
        refresh_token=create_refresh_token(identity=user),
    )


@app.post("/refresh")
@jwt_required(refresh=True)
def refresh() -> Any:
    user = get_jwt_identity()
    return jsonify(
        access_token=create_access_token(identity=user),
        refresh_token=create_refresh_token(identity=user),
    )


@app.post("/introspect")
def introspect() -> Any:
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    try:
        cid, _, secret = base64.b64decode(value).decode().partition(":")
    except ValueError:
        cid, secret = "", ""
    if (
        scheme.lower() != "basic"
        or cid != CLIENT_ID
        or not hmac.compare_digest(secret, CLIENT_SECRET)
    ):
        return jsonify(error="invalid_client"), 401
    token = request.form.get("token", "")
    try:
        claims = decode_token(token)  # also runs the blocklist loader
    except Exception:
        return jsonify(active=False)
    return jsonify(
        active=True,
        sub=claims["sub"],
        exp=claims["exp"],
        iat=claims["iat"],
        jti=claims["jti"],
        token_type=claims["type"],
    )


@app.get("/userinfo")
@jwt_required()
def userinfo() -> Any:
    return jsonify(sub=get_jwt_identity())
