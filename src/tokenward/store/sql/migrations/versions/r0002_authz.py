"""authorization model: resources, roles, user roles, client resources

Users marked ``is_admin`` get the ``admin`` role (the server creates that role, scope
``admin``, at its first start on this schema, as on every backend). Clients keep exactly
the scopes they had registered; which resources those scopes belong to depends on settings
(the issuer, the default resource), so the server assigns a client's resources once, at its
first start on this schema (``tokenward.server.authz_changes``).

Revision ID: 0002_authz
Revises: 0004_rate_events
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_authz"
down_revision: str | None = "0004_rate_events"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "resources",
        sa.Column("identifier", sa.String(512), primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("created_at", sa.Double, nullable=False),
        sa.Column("scopes", sa.Text, nullable=False),  # JSON object scope -> description
        sa.Column("default_scopes", sa.Text, nullable=False),  # space-separated
        sa.Column("access_token_ttl", sa.Integer),
        sa.Column("encryption_key", sa.Text),  # public JWK (JSON)
    )
    op.create_table(
        "roles",
        sa.Column("name", sa.String(255), primary_key=True),
        sa.Column("created_at", sa.Double, nullable=False),
        sa.Column("scopes", sa.Text, nullable=False),  # space-separated
        sa.Column("description", sa.Text),
    )
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("roles", sa.Text, nullable=False, server_default=""))
    with op.batch_alter_table("clients") as batch:
        batch.add_column(sa.Column("resources", sa.Text, nullable=False, server_default=""))
    users = sa.table("users", sa.column("is_admin", sa.Boolean), sa.column("roles", sa.Text))
    op.execute(users.update().where(users.c.is_admin == sa.true()).values(roles="admin"))


def downgrade() -> None:
    with op.batch_alter_table("clients") as batch:
        batch.drop_column("resources")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("roles")
    op.drop_table("roles")
    op.drop_table("resources")
