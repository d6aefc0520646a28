"""Start, wait for and stop the benchmark's processes (all on 127.0.0.1)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Process:
    """A child process whose output goes to a log file, started and awaited on a URL."""

    def __init__(
        self,
        name: str,
        args: list[str],
        ready_url: str,
        log_dir: Path,
        env: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self._log: IO[bytes] = (log_dir / f"{name}.log").open("wb")
        merged = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")}
        self.popen = subprocess.Popen(
            [sys.executable, *args],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=merged | (env or {}),
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(ready_url, timeout=2)
                return
            except httpx.HTTPError:
                if self.popen.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(
                        f"{name} did not start; see {log_dir / (name + '.log')}"
                    ) from None
                time.sleep(0.1)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def peak_rss_mb(self) -> float:
        """The process's peak resident set size (VmHWM), in MiB."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def cpu_seconds(self) -> float:
        """User plus system CPU time the process has used so far."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        stop(self.popen, self._log)


def stop(popen: subprocess.Popen[bytes], log: IO[bytes]) -> None:
    """SIGTERM, then SIGKILL after 10 s; the log file closed."""
    if popen.poll() is None:
        popen.terminate()
        try:
            popen.wait(timeout=10)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait()
    log.close()
