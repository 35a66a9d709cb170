"""The HTTP API: Segment-compatible ingestion under /v1, management under /api/v1."""
