"""DPoP (RFC 9449): the refresh-token family's key binding, the per-client requirement and the
replay cache of proofs

* ``families.dpop_jkt``: the RFC 7638 thumbprint a public client's session is bound to (NULL:
  not bound; existing sessions stay unbound);
* ``clients.dpop_bound_access_tokens``: RFC 9449 §5.2, proofs required at ``/token``
  (existing clients: false, i.e. optional);
* ``dpop_jtis``: replay keys of accepted proofs until they expire (purged with the feed).

Revision ID: 0002_dpop
Revises: 0001
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_dpop"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("families") as batch:
        batch.add_column(sa.Column("dpop_jkt", sa.String(64)))
    with op.batch_alter_table("clients") as batch:
        batch.add_column(
            sa.Column(
                "dpop_bound_access_tokens", sa.Boolean, nullable=False, server_default=sa.false()
            )
        )
    op.create_table(
        "dpop_jtis",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("until", sa.Double, nullable=False),
    )
    op.create_index("ix_dpop_jtis_until", "dpop_jtis", ["until"])


def downgrade() -> None:
    op.drop_index("ix_dpop_jtis_until", table_name="dpop_jtis")
    op.drop_table("dpop_jtis")
    with op.batch_alter_table("clients") as batch:
        batch.drop_column("dpop_bound_access_tokens")
    with op.batch_alter_table("families") as batch:
        batch.drop_column("dpop_jkt")
