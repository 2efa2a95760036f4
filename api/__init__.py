"""Front doors only: HTTP (FastAPI), MCP (stdio and streamable HTTP) and the CLI."""
