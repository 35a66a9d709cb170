"""Event ingestion: Segment-compatible API, bulk import, the append-only event log."""
