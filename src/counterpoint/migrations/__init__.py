"""Alembic migrations of the operational schema (and, on PostgreSQL, of the event log)."""
