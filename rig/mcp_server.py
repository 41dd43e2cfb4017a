"""A small MCP server for the rig: one test tool and one test prompt over streamable HTTP.

Run: python rig/mcp_server.py --port 9100  (listens on 127.0.0.1 only).

The tool ``rig_echo`` returns its text. With ``fail=true`` it raises, which the MCP SDK turns into a
tool result with ``isError: true``: the load tests use that to check that a tool's own error is
classified as neither admitted-and-fine nor rate-limited. The server is stateless (no MCP session
to keep), so the three gateways can call it without session affinity.

It runs on whichever ``mcp`` SDK the interpreter has: 1.x (``mcp.server.fastmcp.FastMCP``, gateway
1.0.7's venv) or 2.x (``mcp.server.mcpserver.MCPServer``, gateway 1.1.0's venv). In 2.x the
transport settings (host, port, stateless, JSON responses) moved from the constructor to ``run``.
"""

from __future__ import annotations

import argparse
import logging
from typing import Any, Callable

try:  # mcp >= 2
    from mcp.server.mcpserver import MCPServer as _Server
    from mcp.server.mcpserver.exceptions import ToolError

    SDK = 2
except ImportError:  # mcp 1.x
    from mcp.server.fastmcp import FastMCP as _Server  # type: ignore[no-redef]
    from mcp.server.fastmcp.exceptions import ToolError  # type: ignore[no-redef]

    SDK = 1


class ToolFailure(ToolError):
    """The error rig_echo raises on request (a tool error, not an infrastructure error). A ToolError,
    so both SDKs report it as an expected failure (``isError: true``) without logging a traceback."""


def _register(server: Any) -> None:
    @server.tool(name="rig_echo", description="Echo the text back; fail=true makes the tool report an error.")
    def rig_echo(text: str = "ping", fail: bool = False) -> str:
        if fail:
            raise ToolFailure("rig_echo was asked to fail")
        return text

    @server.prompt(name="rig_greeting", description="A one-line greeting for the given name.")
    def rig_greeting(name: str = "world") -> str:
        return f"Say hello to {name} in one short sentence."


def build_server(port: int) -> tuple[Any, Callable[[], None]]:
    """The server and a function that runs it on 127.0.0.1:port (streamable HTTP, stateless, JSON)."""
    transport = {"stateless_http": True, "json_response": True}
    if SDK == 2:
        server = _Server("rig-test-server", log_level="WARNING")
        _register(server)
        return server, lambda: server.run("streamable-http", host="127.0.0.1", port=port, **transport)
    server = _Server("rig-test-server", host="127.0.0.1", port=port, log_level="WARNING", **transport)
    _register(server)
    return server, lambda: server.run(transport="streamable-http")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True, help="TCP port on 127.0.0.1")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    _, run = build_server(args.port)
    run()


if __name__ == "__main__":
    main()
