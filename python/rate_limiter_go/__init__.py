"""Rate limiter plugin for the ContextForge MCP gateway (Go engine via gopy, pure-Python fallback)."""
