"""Pytest fixtures that start a real OpenBao dev server (placeholder until the Vault work lands)."""
