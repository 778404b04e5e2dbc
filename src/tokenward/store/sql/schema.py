"""The SQL schema of :class:`~tokenward.store.sql.SQLStore` (SQLAlchemy Core tables).

The tables here describe the schema at the Alembic head; the migrations in
``tokenward/store/sql/migrations/versions`` create it (they are frozen copies, never generated
from this module at run time). Timestamps are seconds since the epoch as double precision,
like everywhere else in tokenward; token hashes are 32-byte SHA-256 digests.

The revocation feed takes its ``seq`` from a one-row counter (``counters``) that each
revocation-appending transaction increments. On PostgreSQL this row lock makes ``seq`` order
equal commit order, so a follower that has read up to ``seq = n`` can never later see a
committed event with ``seq < n`` (which a plain sequence would allow); on SQLite writers are
serialised anyway. The counter also survives purges, so ``revocation_cursor()`` never goes
backwards.
"""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Double,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Row,
    String,
    Table,
    Text,
    false,
)

from ..base import (
    Client,
    Family,
    RefreshTokenRecord,
    Resource,
    RevocationEvent,
    RevocationKind,
    Role,
    User,
)

__all__ = [
    "REVOCATION_COUNTER",
    "client_from_row",
    "client_to_row",
    "clients",
    "counters",
    "dpop_jtis",
    "event_from_row",
    "families",
    "family_from_row",
    "grant_records",
    "keys",
    "metadata",
    "opt_bytes",
    "rate_events",
    "record_from_row",
    "refresh_tokens",
    "resource_from_row",
    "resource_to_row",
    "resources",
    "revocations",
    "role_from_row",
    "role_to_row",
    "roles",
    "secrets",
    "token_from_row",
    "user_from_row",
    "user_to_row",
    "users",
]

REVOCATION_COUNTER = "revocations"

metadata = MetaData()

families = Table(
    "families",
    metadata,
    Column("sid", String(128), primary_key=True),
    Column("sub", String(255), nullable=False),
    Column("client_id", String(255), nullable=False),
    Column("scope", Text, nullable=False),
    Column("created_at", Double, nullable=False),
    Column("last_used_at", Double, nullable=False),
    Column("expires_at", Double, nullable=False),
    Column("idle_expires_at", Double, nullable=False),
    Column("current_hash", LargeBinary(32), nullable=False),
    Column("generation", Integer, nullable=False),
    Column("user_agent", Text),
    Column("ip", String(64)),
    Column("device", Text),
    Column("revoked_at", Double),
    Column("revoked_reason", String(64)),
    Column("dpop_jkt", String(64)),
    Index("ix_families_sub_created", "sub", "created_at"),
    Index("ix_families_expires_at", "expires_at"),
    Index("ix_families_idle_expires_at", "idle_expires_at"),
)

refresh_tokens = Table(
    "refresh_tokens",
    metadata,
    Column("token_hash", LargeBinary(32), primary_key=True),
    Column("sid", String(128), nullable=False),
    Column("parent_hash", LargeBinary(32)),
    Column("created_at", Double, nullable=False),
    Column("consumed_at", Double),
    Column("successor_hash", LargeBinary(32)),
    Index("ix_refresh_tokens_sid", "sid"),
)

revocations = Table(
    "revocations",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("kind", String(8), nullable=False),
    Column("value", String(255), nullable=False),
    Column("until", Double, nullable=False),
    Column("at", Double, nullable=False),
    Index("ix_revocations_until", "until"),
)

counters = Table(
    "counters",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("value", BigInteger, nullable=False),
)

keys = Table(
    "keys",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("blob", LargeBinary, nullable=False),
)

secrets = Table(
    "secrets",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("value", LargeBinary, nullable=False),
)

users = Table(
    "users",
    metadata,
    Column("username", String(255), primary_key=True),
    Column("password_hash", Text, nullable=False),
    Column("created_at", Double, nullable=False),
    Column("is_admin", Boolean, nullable=False),
    Column("disabled", Boolean, nullable=False),
    Column("attributes", Text, nullable=False),  # JSON object
    Column("roles", Text, nullable=False, server_default=""),  # space-separated
)

clients = Table(
    "clients",
    metadata,
    Column("client_id", String(255), primary_key=True),
    Column("created_at", Double, nullable=False),
    Column("secret_hash", Text),
    Column("grants", Text, nullable=False),  # space-separated
    Column("scopes", Text, nullable=False),  # space-separated
    Column("name", Text),
    # authorization code / OpenID Connect registration, a JSON object (see client_to_row)
    Column("registration", Text, nullable=False, server_default="{}"),
    Column("resources", Text, nullable=False, server_default=""),  # space-separated
    Column("dpop_bound_access_tokens", Boolean, nullable=False, server_default=false()),
    Column("disabled", Boolean, nullable=False, server_default=false()),
    Column("previous_secret_hash", Text),
    Column("previous_secret_expires_at", Double),
)

rate_events = Table(
    "rate_events",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("key", String(64), nullable=False),
    Column("at", Double, nullable=False),
    Column("until", Double, nullable=False),  # at + window: purged after it
    Index("ix_rate_events_key_at", "key", "at"),
    Index("ix_rate_events_until", "until"),
)

dpop_jtis = Table(
    "dpop_jtis",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("until", Double, nullable=False),
    Index("ix_dpop_jtis_until", "until"),
)

grant_records = Table(
    "grant_records",
    metadata,
    Column("kind", String(16), primary_key=True),
    Column("key", String(255), primary_key=True),
    Column("owner", String(255), nullable=False),
    Column("data", Text, nullable=False),  # JSON object
    Column("expires_at", Double),
    Column("version", Integer, nullable=False),
    Index("ix_grant_records_owner", "kind", "owner"),
    Index("ix_grant_records_expires_at", "expires_at"),
)

resources = Table(
    "resources",
    metadata,
    Column("identifier", String(512), primary_key=True),
    Column("name", Text, nullable=False),
    Column("created_at", Double, nullable=False),
    Column("scopes", Text, nullable=False),  # JSON object scope -> description
    Column("default_scopes", Text, nullable=False),  # space-separated
    Column("access_token_ttl", Integer),
    Column("encryption_key", Text),  # public JWK (JSON)
)

roles = Table(
    "roles",
    metadata,
    Column("name", String(255), primary_key=True),
    Column("created_at", Double, nullable=False),
    Column("scopes", Text, nullable=False),  # space-separated
    Column("description", Text),
)


# -- row mapping ---------------------------------------------------------------------------
def opt_bytes(value: Any) -> bytes | None:
    return bytes(value) if value is not None else None


def token_from_row(token_hash: bytes, row: Row[Any]) -> RefreshTokenRecord:
    """The token half of a family-and-token row (its columns labelled ``t_...``)."""
    m = row._mapping
    return RefreshTokenRecord(
        token_hash=token_hash,
        sid=m["sid"],
        created_at=m["t_created_at"],
        parent_hash=opt_bytes(m["t_parent_hash"]),
        consumed_at=m["t_consumed_at"],
        successor_hash=opt_bytes(m["t_successor_hash"]),
    )


def family_from_row(row: Row[Any]) -> Family:
    m = row._mapping
    return Family(
        sid=m["sid"],
        sub=m["sub"],
        client_id=m["client_id"],
        scope=m["scope"],
        created_at=m["created_at"],
        last_used_at=m["last_used_at"],
        expires_at=m["expires_at"],
        idle_expires_at=m["idle_expires_at"],
        current_hash=bytes(m["current_hash"]),
        generation=m["generation"],
        user_agent=m["user_agent"],
        ip=m["ip"],
        device=m["device"],
        revoked_at=m["revoked_at"],
        revoked_reason=m["revoked_reason"],
        dpop_jkt=m["dpop_jkt"],
    )


def record_from_row(row: Row[Any]) -> RefreshTokenRecord:
    m = row._mapping
    return RefreshTokenRecord(
        token_hash=bytes(m["token_hash"]),
        sid=m["sid"],
        created_at=m["created_at"],
        parent_hash=opt_bytes(m["parent_hash"]),
        consumed_at=m["consumed_at"],
        successor_hash=opt_bytes(m["successor_hash"]),
    )


def event_from_row(row: Row[Any]) -> RevocationEvent:
    m = row._mapping
    return RevocationEvent(
        int(m["seq"]), RevocationKind(m["kind"]), m["value"], m["until"], m["at"]
    )


def user_to_row(user: User) -> dict[str, Any]:
    return {
        "username": user.username,
        "password_hash": user.password_hash,
        "created_at": user.created_at,
        "is_admin": bool(user.is_admin),
        "disabled": bool(user.disabled),
        "attributes": orjson.dumps(user.attributes).decode(),
        "roles": " ".join(user.roles),
    }


def user_from_row(row: Row[Any]) -> User:
    m = row._mapping
    return User(
        username=m["username"],
        password_hash=m["password_hash"],
        created_at=m["created_at"],
        is_admin=bool(m["is_admin"]),
        disabled=bool(m["disabled"]),
        attributes=orjson.loads(m["attributes"]),
        roles=tuple(m["roles"].split()),
    )


def client_to_row(client: Client) -> dict[str, Any]:
    return {
        "client_id": client.client_id,
        "created_at": client.created_at,
        "secret_hash": client.secret_hash,
        "grants": " ".join(client.grants),
        "scopes": " ".join(client.scopes),
        "name": client.name,
        "resources": " ".join(client.resources),
        "dpop_bound_access_tokens": bool(client.dpop_bound_access_tokens),
        "disabled": bool(client.disabled),
        "previous_secret_hash": client.previous_secret_hash,
        "previous_secret_expires_at": client.previous_secret_expires_at,
        "registration": orjson.dumps(
            {
                "redirect_uris": list(client.redirect_uris),
                "post_logout_redirect_uris": list(client.post_logout_redirect_uris),
                "first_party": client.first_party,
                "backchannel_logout_uri": client.backchannel_logout_uri,
            }
        ).decode(),
    }


def client_from_row(row: Row[Any]) -> Client:
    m = row._mapping
    reg = orjson.loads(m["registration"] or "{}")
    return Client(
        client_id=m["client_id"],
        created_at=m["created_at"],
        secret_hash=m["secret_hash"],
        grants=tuple(m["grants"].split()),
        scopes=tuple(m["scopes"].split()),
        name=m["name"],
        dpop_bound_access_tokens=bool(m["dpop_bound_access_tokens"]),
        disabled=bool(m["disabled"]),
        previous_secret_hash=m["previous_secret_hash"],
        previous_secret_expires_at=m["previous_secret_expires_at"],
        redirect_uris=tuple(reg.get("redirect_uris", ())),
        post_logout_redirect_uris=tuple(reg.get("post_logout_redirect_uris", ())),
        first_party=bool(reg.get("first_party", False)),
        backchannel_logout_uri=reg.get("backchannel_logout_uri"),
        resources=tuple(m["resources"].split()),
    )


def resource_to_row(resource: Resource) -> dict[str, Any]:
    key = resource.encryption_key
    return {
        "identifier": resource.identifier,
        "name": resource.name,
        "created_at": resource.created_at,
        "scopes": orjson.dumps(resource.scopes).decode(),
        "default_scopes": " ".join(resource.default_scopes),
        "access_token_ttl": resource.access_token_ttl,
        "encryption_key": orjson.dumps(key).decode() if key else None,
    }


def resource_from_row(row: Row[Any]) -> Resource:
    m = row._mapping
    key = m["encryption_key"]
    return Resource(
        identifier=m["identifier"],
        name=m["name"],
        created_at=m["created_at"],
        scopes=orjson.loads(m["scopes"]),
        default_scopes=tuple(m["default_scopes"].split()),
        access_token_ttl=m["access_token_ttl"],
        encryption_key=orjson.loads(key) if key else None,
    )


def role_to_row(role: Role) -> dict[str, Any]:
    return {
        "name": role.name,
        "created_at": role.created_at,
        "scopes": " ".join(role.scopes),
        "description": role.description,
    }


def role_from_row(row: Row[Any]) -> Role:
    m = row._mapping
    return Role(
        name=m["name"],
        created_at=m["created_at"],
        scopes=tuple(m["scopes"].split()),
        description=m["description"],
    )
