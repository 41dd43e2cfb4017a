"""A small MCP server for the rig: one test tool and one test prompt over streamable HTTP.

Run: python rig/mcp_server.py --port 9100  (listens on 127.0.0.1 only).

The tool ``rig_echo`` returns its text. With ``fail=true`` it raises, which the MCP SDK turns into a
tool result with ``isError: true``: the load tests use that to check that a tool's own error is
classified as neither admitted-and-fine nor rate-limited. The server is stateless (no MCP session
to keep), so the three gateways can call it without session affinity.
"""

from __future__ import annotations

import argparse
import logging

from mcp.server.fastmcp import FastMCP


class ToolFailure(Exception):
    """The error rig_echo raises on request (a tool error, not an infrastructure error)."""


def build_server(port: int) -> FastMCP:
    server = FastMCP(
        "rig-test-server",
        host="127.0.0.1",
        port=port,
        stateless_http=True,
        json_response=True,
        log_level="WARNING",
    )

    @server.tool(name="rig_echo", description="Echo the text back; fail=true makes the tool report an error.")
    def rig_echo(text: str = "ping", fail: bool = False) -> str:
        if fail:
            raise ToolFailure("rig_echo was asked to fail")
        return text

    @server.prompt(name="rig_greeting", description="A one-line greeting for the given name.")
    def rig_greeting(name: str = "world") -> str:
        return f"Say hello to {name} in one short sentence."

    return server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True, help="TCP port on 127.0.0.1")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    build_server(args.port).run(transport="streamable-http")


if __name__ == "__main__":
    main()
