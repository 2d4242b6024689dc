"""Pytest fixtures that start a real moto_server (placeholder until the AWS work lands)."""
