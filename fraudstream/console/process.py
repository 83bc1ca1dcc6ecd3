"""``fraudstream console`` as a subprocess: what ``fraudstream run`` and the browser tests start."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time
from pathlib import Path

from fraudstream.config import Settings
from fraudstream.processes import ROOT, terminate, worker_env

__all__ = ["ConsoleProcess", "console_port"]


def console_port(settings: Settings) -> int:
    """The configured port if it is free on its host, else 0 (a free one): a second run still gets a console."""
    try:
        with socket.socket() as s:
            s.bind((settings.console_host, settings.console_port))
        return settings.console_port
    except OSError:
        return 0


class ConsoleProcess:
    """Starts the console with ``settings`` (its environment, as the worker's), logging to ``log_path``; ``url`` is
    where it listens, read from the log lines this start wrote (the log is appended to across runs)."""

    def __init__(self, settings: Settings, log_path: Path, metrics_urls: list[str], port: int | None = None,
                 audit_file: Path | None = None, new_session: bool = False, start_timeout_s: float = 30.0) -> None:
        self.log_path = log_path
        self.log = open(log_path, "ab")
        self._start = self.log.tell()
        argv = [sys.executable, "-m", "fraudstream", "console", "--port", str(console_port(settings) if port is None else port)]
        for url in metrics_urls:
            argv += ["--metrics", url]
        if audit_file is not None:
            argv += ["--audit-file", str(audit_file)]
        self.process = subprocess.Popen(argv, env=worker_env(settings), stdout=self.log, stderr=subprocess.STDOUT, cwd=ROOT,
                                        start_new_session=new_session)
        self.url = self._wait_url(start_timeout_s)

    def _output(self) -> str:
        with open(self.log_path, "rb") as f:
            f.seek(self._start)
            return f.read().decode(errors="replace")

    def _wait_url(self, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = re.search(r"console on (http://\S+)", self._output())
            if m:
                return m.group(1)
            if self.process.poll() is not None:
                raise RuntimeError(f"the console exited with code {self.process.returncode}:\n{self._output()[-3000:]}")
            time.sleep(0.1)
        raise RuntimeError(f"the console did not start within {timeout:.0f} s:\n{self._output()[-3000:]}")

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        terminate(self.process, timeout)
        self.log.close()
