"""Login attempt counters shared by every process on the store

* ``rate_events``: one row per counted attempt (``key`` is a hash, never a username or an
  address), purged once ``until`` (the attempt + its window) has passed.

Revision ID: 0004_rate_events
Revises: 0003_client_lifecycle
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_rate_events"
down_revision: str | None = "0003_client_lifecycle"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "rate_events",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer, "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("at", sa.Double, nullable=False),
        sa.Column("until", sa.Double, nullable=False),
    )
    op.create_index("ix_rate_events_key_at", "rate_events", ["key", "at"])
    op.create_index("ix_rate_events_until", "rate_events", ["until"])


def downgrade() -> None:
    op.drop_index("ix_rate_events_until", table_name="rate_events")
    op.drop_index("ix_rate_events_key_at", table_name="rate_events")
    op.drop_table("rate_events")
