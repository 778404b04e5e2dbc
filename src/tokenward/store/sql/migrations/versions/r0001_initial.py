"""initial schema: refresh tokens, families, revocation feed, keys, secrets, users, clients

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "families",
        sa.Column("sid", sa.String(128), primary_key=True),
        sa.Column("sub", sa.String(255), nullable=False),
        sa.Column("client_id", sa.String(255), nullable=False),
        sa.Column("scope", sa.Text, nullable=False),
        sa.Column("created_at", sa.Double, nullable=False),
        sa.Column("last_used_at", sa.Double, nullable=False),
        sa.Column("expires_at", sa.Double, nullable=False),
        sa.Column("idle_expires_at", sa.Double, nullable=False),
        sa.Column("current_hash", sa.LargeBinary(32), nullable=False),
        sa.Column("generation", sa.Integer, nullable=False),
        sa.Column("user_agent", sa.Text),
        sa.Column("ip", sa.String(64)),
        sa.Column("device", sa.Text),
        sa.Column("revoked_at", sa.Double),
        sa.Column("revoked_reason", sa.String(64)),
    )
    op.create_index("ix_families_sub_created", "families", ["sub", "created_at"])
    op.create_index("ix_families_expires_at", "families", ["expires_at"])
    op.create_index("ix_families_idle_expires_at", "families", ["idle_expires_at"])

    op.create_table(
        "refresh_tokens",
        sa.Column("token_hash", sa.LargeBinary(32), primary_key=True),
        sa.Column("sid", sa.String(128), nullable=False),
        sa.Column("parent_hash", sa.LargeBinary(32)),
        sa.Column("created_at", sa.Double, nullable=False),
        sa.Column("consumed_at", sa.Double),
        sa.Column("successor_hash", sa.LargeBinary(32)),
    )
    op.create_index("ix_refresh_tokens_sid", "refresh_tokens", ["sid"])

    op.create_table(
        "revocations",
        sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("value", sa.String(255), nullable=False),
        sa.Column("until", sa.Double, nullable=False),
        sa.Column("at", sa.Double, nullable=False),
    )
    op.create_index("ix_revocations_until", "revocations", ["until"])

    counters = op.create_table(
        "counters",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("value", sa.BigInteger, nullable=False),
    )
    op.bulk_insert(counters, [{"name": "revocations", "value": 0}])

    op.create_table(
        "keys",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("blob", sa.LargeBinary, nullable=False),
    )
    op.create_table(
        "secrets",
        sa.Column("name", sa.String(128), primary_key=True),
        sa.Column("value", sa.LargeBinary, nullable=False),
    )
    op.create_table(
        "users",
        sa.Column("username", sa.String(255), primary_key=True),
        sa.Column("password_hash", sa.Text, nullable=False),
        sa.Column("created_at", sa.Double, nullable=False),
        sa.Column("is_admin", sa.Boolean, nullable=False),
        sa.Column("disabled", sa.Boolean, nullable=False),
        sa.Column("attributes", sa.Text, nullable=False),
    )
    op.create_table(
        "clients",
        sa.Column("client_id", sa.String(255), primary_key=True),
        sa.Column("created_at", sa.Double, nullable=False),
        sa.Column("secret_hash", sa.Text),
        sa.Column("grants", sa.Text, nullable=False),
        sa.Column("scopes", sa.Text, nullable=False),
        sa.Column("name", sa.Text),
    )


def downgrade() -> None:
    for table in ("clients", "users", "secrets", "keys", "counters"):
        op.drop_table(table)
    op.drop_index("ix_revocations_until", table_name="revocations")
    op.drop_table("revocations")
    op.drop_index("ix_refresh_tokens_sid", table_name="refresh_tokens")
    op.drop_table("refresh_tokens")
    for index in ("idle_expires_at", "expires_at", "sub_created"):
        op.drop_index(f"ix_families_{index}", table_name="families")
    op.drop_table("families")
