"""Real engine parts for the integration tests: a node started through `lref opensearch up`, and a
TCP proxy that delays traffic to the real reranker (a reranker that is slow, not a fake one)."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import threading
from pathlib import Path

from lref_opensearch.node import NodeSettings


def lref(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "reranker.cli", *args], capture_output=True, text=True, timeout=timeout)


class TestNode:
    """One OpenSearch node per test session, on free loopback ports, with its own state dir."""

    __test__ = False

    def __init__(self, http_port: int, transport_port: int) -> None:
        self.port, self.transport_port = http_port, transport_port
        # Under the lref base dir, not /tmp/pytest-of-*, which the service user cannot enter.
        self.state = NodeSettings().base / "nodes" / f"pytest-{http_port}"
        self.url = f"http://127.0.0.1:{http_port}"

    def up(self) -> subprocess.CompletedProcess:
        shutil.rmtree(self.state, ignore_errors=True)
        # A pid file left by a node that died (a dead pid): `up` must start a new node regardless.
        self.state.mkdir(parents=True)
        dead = subprocess.Popen(["true"])
        dead.wait()
        (self.state / "opensearch.pid").write_text(str(dead.pid))
        return lref("opensearch", "up", "--port", str(self.port), "--transport-port", str(self.transport_port),
                    "--heap", "1g", "--state", str(self.state))

    def down(self) -> None:
        lref("opensearch", "down", "--port", str(self.port), "--state", str(self.state))
        shutil.rmtree(self.state, ignore_errors=True)


class DelayProxy:
    """Forwards loopback TCP to `target_port`, holding each new connection for `delay` seconds."""

    def __init__(self, target_port: int, listen_port: int, delay: float) -> None:
        self.target_port, self.port, self.delay = target_port, listen_port, delay
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def _handle(self, reader, writer) -> None:
        await asyncio.sleep(self.delay)
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", self.port))
        self.ready.set()
        self.loop.run_forever()
        server.close()

    def __enter__(self) -> "DelayProxy":
        self.thread.start()
        self.ready.wait(10)
        return self

    def __exit__(self, *exc) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
