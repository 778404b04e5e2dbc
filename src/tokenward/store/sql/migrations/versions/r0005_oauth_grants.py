"""authorization code / OpenID Connect: client registration column, grant_records table

Revision ID: 0005_oauth_grants
Revises: 0002_authz
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_oauth_grants"
down_revision: str | None = "0002_authz"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("clients") as batch:
        batch.add_column(sa.Column("registration", sa.Text, nullable=False, server_default="{}"))
    op.create_table(
        "grant_records",
        sa.Column("kind", sa.String(16), primary_key=True),
        sa.Column("key", sa.String(255), primary_key=True),
        sa.Column("owner", sa.String(255), nullable=False),
        sa.Column("data", sa.Text, nullable=False),
        sa.Column("expires_at", sa.Double),
        sa.Column("version", sa.Integer, nullable=False),
    )
    op.create_index("ix_grant_records_owner", "grant_records", ["kind", "owner"])
    op.create_index("ix_grant_records_expires_at", "grant_records", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_grant_records_expires_at", "grant_records")
    op.drop_index("ix_grant_records_owner", "grant_records")
    op.drop_table("grant_records")
    with op.batch_alter_table("clients") as batch:
        batch.drop_column("registration")
