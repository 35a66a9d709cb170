"""Consent ledger: records with proof, the pure fold, withdrawal, double opt-in."""
