"""The SQL store (SQLite via aiosqlite, PostgreSQL via psycopg), on SQLAlchemy Core.

The public name is :class:`SQLStore`; the modules of this package are internal.
"""

from __future__ import annotations

from .engine import MIGRATIONS_DIR, alembic_config, head_revision
from .store import SQLStore

__all__ = ["MIGRATIONS_DIR", "SQLStore", "alembic_config", "head_revision"]
