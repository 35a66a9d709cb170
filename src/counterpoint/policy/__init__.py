"""Access control, contact policy, audit trail."""
