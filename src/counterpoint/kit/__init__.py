"""Shared plumbing: database engine, clock, identifiers."""
