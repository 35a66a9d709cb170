"""Transfers of value to HCPs and their disclosure. See docs/transfers-of-value.md."""
