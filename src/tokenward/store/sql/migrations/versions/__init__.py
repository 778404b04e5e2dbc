"""Alembic revisions of the SQL store."""
