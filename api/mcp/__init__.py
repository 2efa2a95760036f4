"""MCP server: the tools over the same service functions as REST."""
