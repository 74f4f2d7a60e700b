"""A worker whose only way to the broker is a relay the test can cut: its own network namespace.

The shared broker must never be stopped, so a test that needs "the broker is unreachable" runs the
worker in a fresh network namespace (`unshare -n`, root: the tests run as root here and in CI).
Inside, a small relay listens on the broker's advertised address (127.0.0.1:9092 for the local
broker) and forwards each connection over a Unix socket, which crosses namespaces, to the test
process; the test connects it to the real broker, or not (`cut()` / `restore()`). The worker's web
port is relayed back the same way, so `Worker.get` works unchanged.
"""
from __future__ import annotations

import asyncio
import os
import shlex
import shutil
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from tests.integration.harness import BOOTSTRAP, Worker

# Runs inside the namespace before the worker (exec'd after it): 127.0.0.1:<broker port> -> kafka socket,
# web socket -> 127.0.0.1:<web port>. It exits when its parent (the worker) does.
_INSIDE = textwrap.dedent('''
    import asyncio, os, sys
    kafka_sock, web_sock, broker_port, web_port = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    parent = os.getppid()

    async def pipe(reader, writer):
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def join(reader, writer, opened):
        try:
            r2, w2 = await opened
        except OSError:
            writer.close()
            return
        await asyncio.gather(pipe(reader, w2), pipe(r2, writer))

    async def main():
        await asyncio.start_server(lambda r, w: join(r, w, asyncio.open_unix_connection(kafka_sock)),
                                   "127.0.0.1", broker_port)
        await asyncio.start_unix_server(lambda r, w: join(r, w, asyncio.open_connection("127.0.0.1", web_port)),
                                        web_sock)
        while os.getppid() == parent:
            await asyncio.sleep(0.5)

    asyncio.run(main())
''')


class _Relays:
    """The test-side ends, on their own event loop thread: kafka socket -> broker, web port -> web socket."""

    def __init__(self, kafka_sock: Path, web_sock: Path, web_port: int) -> None:
        self.kafka_sock, self.web_sock, self.web_port = kafka_sock, web_sock, web_port
        self.connected = True
        self._writers: set[asyncio.StreamWriter] = set()
        self._loop = asyncio.new_event_loop()
        started = threading.Event()
        threading.Thread(target=self._run, args=(started,), daemon=True).start()
        started.wait(10)

    def _run(self, started: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)
        host, port = BOOTSTRAP.split(":")
        self._loop.run_until_complete(asyncio.start_unix_server(
            lambda r, w: self._join(r, w, lambda: asyncio.open_connection(host, int(port)), kafka=True),
            str(self.kafka_sock)))
        self._loop.run_until_complete(asyncio.start_server(
            lambda r, w: self._join(r, w, lambda: asyncio.open_unix_connection(str(self.web_sock)), kafka=False),
            "127.0.0.1", self.web_port))
        started.set()
        self._loop.run_forever()

    async def _join(self, reader, writer, open_other, kafka: bool) -> None:
        if kafka and not self.connected:
            writer.close()
            return
        try:
            r2, w2 = await open_other()
        except OSError:
            writer.close()
            return
        if kafka:
            self._writers |= {writer, w2}
        await asyncio.gather(self._pipe(reader, w2), self._pipe(r2, writer))

    async def _pipe(self, reader, writer) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()
            self._writers.discard(writer)

    def set_connected(self, connected: bool) -> None:
        def apply() -> None:
            self.connected = connected
            if not connected:
                for writer in list(self._writers):
                    writer.close()
                self._writers.clear()
        self._loop.call_soon_threadsafe(apply)

    def close(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)


class IsolatedWorker(Worker):
    """A `faust ... worker` in its own network namespace, its broker connection behind `cut()`/`restore()`."""

    def __init__(self, env: dict[str, str], data_dir: Path, log_path: Path) -> None:
        super().__init__(env, data_dir, log_path)
        self._socks = Path(f"/tmp/loyalty-netns-{os.getpid()}-{self.port}")
        self._socks.mkdir(exist_ok=True)
        self._kafka_sock, self._web_sock = self._socks / "kafka.sock", self._socks / "web.sock"
        self._relays = _Relays(self._kafka_sock, self._web_sock, self.port)

    def start(self, ready_timeout: float = 90) -> IsolatedWorker:
        probe = subprocess.run(["unshare", "-n", "true"], capture_output=True, text=True)
        if probe.returncode != 0:
            pytest.fail(f"this test runs the worker in its own network namespace and needs root "
                        f"(unshare -n): {probe.stderr.strip() or probe.returncode}")
        self._web_sock.unlink(missing_ok=True)
        super().start(ready_timeout)
        return self

    def command(self) -> list[str]:
        """The worker behind the relay script, in a new network namespace with only loopback."""
        broker_port = BOOTSTRAP.split(":")[1]
        inside = (f"ip link set lo up && {sys.executable} -c {_quote(_INSIDE)} {self._kafka_sock} {self._web_sock} "
                  f"{broker_port} {self.port} & sleep 1; exec {shlex.join(super().command())}")
        return ["unshare", "-n", "sh", "-c", inside]

    def cut(self) -> None:
        """The broker becomes unreachable for this worker (open connections dropped, new ones refused)."""
        self._relays.set_connected(False)

    def restore(self) -> None:
        self._relays.set_connected(True)

    def stop(self) -> None:
        super().stop()
        self._relays.close()
        shutil.rmtree(self._socks, ignore_errors=True)


def _quote(text: str) -> str:
    return "'" + text.replace("'", "'\"'\"'") + "'"
