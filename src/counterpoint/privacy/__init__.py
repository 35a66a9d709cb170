"""Privacy: export and erasure of one HCP's personal data (GDPR). See docs/privacy.md."""
