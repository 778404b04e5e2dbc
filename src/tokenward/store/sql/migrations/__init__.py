"""Alembic environment of the SQL store (run through ``tokenward db upgrade``)."""
