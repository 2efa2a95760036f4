"""All cloud I/O: sessions, region discovery, collectors, rate limiting and retries.

Emits ``policies.models.Resource``; imports nothing of the project but ``policies``.
"""
