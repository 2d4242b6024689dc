"""Fault injection against the real back-ends: a TCP fault proxy, then Vault, AWS and file faults."""
