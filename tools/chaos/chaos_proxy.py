#!/usr/bin/env python3
"""A loopback TCP proxy that can delay every server reply: "Redis slowed" for tools/chaos/chaos.py.

Usage: ``chaos_proxy.py LISTEN_PORT TARGET_PORT DELAY_MS``. It forwards bytes
both ways between 127.0.0.1:LISTEN_PORT and 127.0.0.1:TARGET_PORT. SIGUSR1
switches the delay on (each chunk from the server is held DELAY_MS before it
is passed on), SIGUSR2 switches it off. It prints ``ready`` once listening.
Runs as its own process so that its event loop does not compete with the
hooks being measured.
"""

from __future__ import annotations

import asyncio
import signal
import sys


class Proxy:
    def __init__(self, target_port: int, delay_s: float) -> None:
        self.target_port = target_port
        self.delay_s = delay_s
        self.slow = False

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delayed: bool) -> None:
        try:
            while True:
                chunk = await reader.read(65536)
                if not chunk:
                    break
                if delayed and self.slow:
                    await asyncio.sleep(self.delay_s)
                writer.write(chunk)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            server_r, server_w = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            client_w.close()
            return
        await asyncio.gather(self._pipe(client_r, server_w, False), self._pipe(server_r, client_w, True))


async def main(listen_port: int, target_port: int, delay_ms: int) -> None:
    proxy = Proxy(target_port, delay_ms / 1000)
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGUSR1, lambda: setattr(proxy, "slow", True))
    loop.add_signal_handler(signal.SIGUSR2, lambda: setattr(proxy, "slow", False))
    server = await asyncio.start_server(proxy.handle, "127.0.0.1", listen_port)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])))
