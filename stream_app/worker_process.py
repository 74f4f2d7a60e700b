"""A worker as a subprocess (`faust -A stream_app.app worker`) with its own data dir and web port.

Used by the integration tests (tests/integration/harness.py) and the benchmark (bench/run.py), so
neither imports the other.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class WorkerProcess:
    """One `faust -A stream_app.app worker` process with its own data dir and web port."""

    def __init__(self, env: dict[str, str], data_dir: Path, log_path: Path, log_level: str = "info") -> None:
        self.port = free_port()
        self.data_dir, self.log_level = data_dir, log_level
        self.env = {**os.environ, **env, "LOYALTY_DATA_DIR": str(data_dir), "LOYALTY_WEB_PORT": str(self.port)}
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None
        self.spawned_at = 0.0

    def command(self) -> list[str]:
        return [sys.executable, "-m", "faust", "-A", "stream_app.app", "worker", "-l", self.log_level]

    def spawn(self) -> WorkerProcess:
        """Start the process and return at once; its output goes to the log file."""
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child keeps it
        self.spawned_at = time.time()
        self.proc = subprocess.Popen(self.command(), cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        return self

    def wait_ready(self, timeout: float = 90, poll: float = 0.3) -> float:
        """Seconds from `spawn` until GET /ready answers 200 (polled every `poll` s)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited with {self.proc.returncode}:\n{self.log_tail()}")
            if self.get("/ready")[0] == 200:
                return time.time() - self.spawned_at
            time.sleep(poll)
        raise TimeoutError(f"worker not ready in {timeout}s:\n{self.log_tail()}")

    def start(self, ready_timeout: float = 90) -> WorkerProcess:
        """Spawn and wait until ready."""
        self.spawn().wait_ready(ready_timeout)
        return self

    def get(self, path: str) -> tuple[int, object]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as resp:
                body = resp.read()
                ctype = resp.headers.get("Content-Type", "")
                return resp.status, json.loads(body) if "json" in ctype else body.decode()
        except urllib.error.HTTPError as err:
            body = err.read()
            try:
                return err.code, json.loads(body)
            except ValueError:
                return err.code, body.decode(errors="replace")
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            return 0, None

    def member(self, member_id: str) -> dict | None:
        status, body = self.get(f"/members/{member_id}")
        return body if status == 200 else None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=60)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
