"""A ``wan-otel serve`` child process for the shutdown and restart tests: started on a free
port, its stderr read line by line, and an HTTP client to it. ``stop`` ends it (SIGKILL if it
is still running) and is safe to call twice: tests call it in ``finally``."""

from __future__ import annotations

import os
import queue
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from tests.serve.conftest import Client

ROOT = Path(__file__).resolve().parents[2]
LONG = {"prompt": "a long one", "size": "64x64", "num_frames": 5, "num_inference_steps": 50}
"""50 steps of two forwards each, every forward slowed to 50 ms: about 5 s."""
FORWARD_DELAY_S = "0.05"


class Child:
    def __init__(self, store: Path, *flags: str, env: dict[str, str] | None = None) -> None:
        environ = dict(os.environ, WAN_OTEL_TEST_FORWARD_S=FORWARD_DELAY_S, PYTHONPATH=str(ROOT))
        command = [sys.executable, "-m", "tests.serve.slow_serve", "--preset", "tiny"]
        command += ["--host", "127.0.0.1", "--port", "0", "--store", str(store), *flags]
        self.proc = subprocess.Popen(
            command, cwd=ROOT, env={**environ, **(env or {})}, stderr=subprocess.PIPE, text=True,
            bufsize=1,
        )  # fmt: skip
        self.lines: list[str] = []
        self._lines: queue.Queue[str] = queue.Queue()
        self.client: Client | None = None
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        try:
            listening = self.expect(r"listening on http://127\.0\.0\.1:(\d+)")
            self.port = int(listening[1])
            self.expect(r"ready: ")
            self.client = Client(self.port)
        except BaseException:
            self.stop()
            raise

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self._lines.put(line.rstrip("\n"))

    def expect(self, pattern: str, timeout_s: float = 90) -> re.Match[str]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                line = self._lines.get(timeout=0.2)
            except queue.Empty:
                if self.proc.poll() is not None and self._lines.empty():
                    break
                continue
            self.lines.append(line)
            match = re.search(pattern, line)
            if match is not None:
                return match
        raise AssertionError(f"no line matching {pattern!r}; stderr:\n" + "\n".join(self.lines))

    def api(self) -> Client:
        assert self.client is not None
        return self.client

    def wait_running(self, job_id: str, steps: int = 1) -> dict[str, Any]:
        """Until the job is in progress with ``steps`` steps done."""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            record = dict(self.api().request("GET", f"/v1/videos/{job_id}").body)
            if record["status"] == "in_progress" and record["steps_done"] >= steps:
                return record
            assert record["status"] in ("queued", "in_progress"), record
            time.sleep(0.02)
        raise AssertionError(f"{job_id} never ran")

    def finish(self, timeout_s: float = 30) -> int:
        """The exit status, once the process has ended by itself; every line it wrote."""
        code = self.proc.wait(timeout_s)
        self._reader.join(10)  # it ends at the pipe's end: every line is queued by then
        while not self._lines.empty():
            self.lines.append(self._lines.get())
        return code

    def stop(self) -> None:
        if self.client is not None:
            self.client.close()
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)
