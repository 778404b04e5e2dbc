"""The SQL schema of :class:`~tokenward.store.sql.SQLStore` (SQLAlchemy Core tables).

The tables here describe the schema at the Alembic head; the migrations in
``tokenward/store/migrations/versions`` create it (they are frozen copies, never generated
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

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Double,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
)

__all__ = [
    "REVOCATION_COUNTER",
    "clients",
    "counters",
    "families",
    "keys",
    "metadata",
    "refresh_tokens",
    "revocations",
    "secrets",
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
)
