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

PRIORITY = -20  # nice: the highest scheduling priority


def raise_priority() -> str:
    """Run this process, and every process it starts from now on, at the highest scheduling
    priority (nice -20; root or CAP_SYS_NICE), so that other processes on a shared machine
    take the measured servers' CPU less often: a server's CPU time per request grows when it
    is switched out mid-request. Says what it got."""
    try:
        os.setpriority(os.PRIO_PROCESS, 0, PRIORITY)
    except PermissionError:
        return f"nice {os.getpriority(os.PRIO_PROCESS, 0)} (not allowed to raise it)"
    return f"nice {PRIORITY}"


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
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self._log: IO[bytes] = (log_dir / f"{name}.log").open("wb")
        merged = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")}
        self.popen = subprocess.Popen(
            [sys.executable, *args],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=merged | (env or {}),
            cwd=cwd,
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
        """CPU time the process has used so far, every thread's (a thread pool's too).

        The scheduler's nanosecond count of each live thread (``/proc/PID/task/*/schedstat``),
        where the kernel keeps it; else user plus system time in clock ticks (``/proc/PID/
        stat``, 10 ms steps: too coarse for a window of a few thousand trivial requests).
        Threads come and go: a thread's time counts while it lives (the bridge's and the
        ceiling's are long-lived: the event loop and the default executor's pool)."""
        threads = list(Path(f"/proc/{self.pid}/task").glob("*/schedstat"))
        if not threads:
            fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        total = 0
        for stat in threads:
            try:
                total += int(stat.read_text().split()[0])
            except (OSError, ValueError, IndexError):  # the thread ended meanwhile
                continue
        return total / 1e9

    def main_thread_cpu_seconds(self) -> float | None:
        """CPU time of the process's main thread alone (the bridge's event loop): the
        scheduler's count, None where the kernel does not keep it. :meth:`cpu_seconds` less
        this is what its other threads used (the journal's writer, a thread pool)."""
        try:
            stat = Path(f"/proc/{self.pid}/task/{self.pid}/schedstat").read_text()
            return int(stat.split()[0]) / 1e9
        except (OSError, ValueError, IndexError):
            return None

    def preemptions(self) -> int:
        """Times the process's main thread was switched out while it could still run (the
        kernel's ``nonvoluntary_ctxt_switches``): more when other processes want its CPU."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("nonvoluntary_ctxt_switches:"):
                return int(line.split()[1])
        return 0

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
