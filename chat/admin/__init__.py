"""The chat app's admin: prices and budgets (`billing`), MCP servers (`mcp`), evaluations (`evaluations`).
Each writes through its services; importing the modules registers them."""

from . import billing, evaluations, mcp

__all__ = ["billing", "evaluations", "mcp"]
