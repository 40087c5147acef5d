"""Alembic migrations of the runstore schema, installed as ``runstore.migrations``."""
