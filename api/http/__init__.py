"""FastAPI gateway: a router per resource, plus /health, /metrics and the MCP mount."""
