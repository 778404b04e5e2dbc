"""Client lifecycle: disable a client, rotate its secret with an overlap

* ``clients.disabled``: refused at authentication (existing clients: false);
* ``clients.previous_secret_hash`` / ``clients.previous_secret_expires_at``: after a rotation
  with an overlap, the old secret's hash and until when it is still accepted (NULL: none).

Revision ID: 0003_client_lifecycle
Revises: 0002_dpop
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_client_lifecycle"
down_revision: str | None = "0002_dpop"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("clients") as batch:
        batch.add_column(
            sa.Column("disabled", sa.Boolean, nullable=False, server_default=sa.false())
        )
        batch.add_column(sa.Column("previous_secret_hash", sa.Text))
        batch.add_column(sa.Column("previous_secret_expires_at", sa.Double))


def downgrade() -> None:
    with op.batch_alter_table("clients") as batch:
        batch.drop_column("previous_secret_expires_at")
        batch.drop_column("previous_secret_hash")
        batch.drop_column("disabled")
