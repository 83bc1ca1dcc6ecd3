"""A worker as a subprocess, and settings for a run that shares a broker: what the tests and the benchmark use to
run fraudstream as production does, next to other runs on the same embedded broker."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import urllib.request
import uuid
from dataclasses import fields
from pathlib import Path
from typing import Any

from fraudstream.config import Settings

__all__ = ["WorkerProcess", "isolated_settings", "terminate", "worker_env"]

ROOT = Path(__file__).resolve().parents[1]


def isolated_settings(broker_url: str, state_dir: Path, name: str = "t", **overrides: Any) -> Settings:
    """Settings whose topics, consumer group and state belong to one run only (``name`` prefixes them), on the
    defaults, not this shell's ``FRAUDSTREAM_*`` variables; the metrics endpoint on a free port."""
    tag = uuid.uuid4().hex[:8]
    base = Settings.load(env={})
    renamed = {f.name: f"{name}{tag}.{getattr(base, f.name)}" for f in fields(Settings) if f.name.startswith("topic_")}
    return base.with_overrides(**{"broker": broker_url, "app_id": f"{name}-{tag}", "state_dir": str(state_dir),
                                  "metrics_port": 0, **renamed, **overrides})


def worker_env(settings: Settings) -> dict[str, str]:
    """This process's environment without its ``FRAUDSTREAM_*`` variables, plus ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FRAUDSTREAM_")}
    env.update(settings.to_env())
    return env


def terminate(process: subprocess.Popen, timeout: float) -> None:
    """SIGTERM, as an orchestrator stops a process; SIGKILL if it does not exit within ``timeout``."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class WorkerProcess:
    """``fraudstream worker`` as a subprocess, as production runs it, logging to ``log_path``. With ``new_session``
    it gets a session of its own: a Ctrl-C in the terminal does not reach it, so its parent stops it in order.
    ``extra_env`` is added to its environment (an allocator to try, say), after ``settings``.

    ``log_path`` is appended to (an earlier run's output stays there): what this worker says, its metrics port and
    its readiness, is read from where the log ended when it started, never from an earlier run's lines."""

    def __init__(self, settings: Settings, log_path: Path, start_timeout_s: float = 60.0, new_session: bool = False,
                 extra_env: dict[str, str] | None = None) -> None:
        self.settings = settings
        self.log_path = log_path
        self.log = open(log_path, "ab")
        self.log_start = self.log.tell()  # where this worker's output begins
        self.stalled = False  # set by whoever watches its progress
        self.process = subprocess.Popen([sys.executable, "-m", "fraudstream", "worker", "--loglevel", "info"],
                                        env={**worker_env(settings), **(extra_env or {})}, stdout=self.log, stderr=subprocess.STDOUT, cwd=ROOT,
                                        start_new_session=new_session)
        self.metrics_port = self._wait_metrics_port(start_timeout_s)

    @property
    def pid(self) -> int:
        return self.process.pid

    def _wait_metrics_port(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = re.search(rb"metrics on http://[\d.]+:(\d+)/metrics", self.output())
            if m:
                return int(m.group(1))
            self.check()
            time.sleep(0.1)
        raise RuntimeError(f"the worker did not start its metrics endpoint:\n{self.tail()}")

    def wait_ready(self, timeout: float = 600.0) -> float:
        """Until faust says the worker is ready (it joined its group and recovered its tables); the seconds waited."""
        started = time.monotonic()
        while b"Worker]: Ready" not in self.output():
            self.check()
            if time.monotonic() - started > timeout:
                raise RuntimeError(f"the worker was not ready within {timeout:.0f}s:\n{self.tail()}")
            time.sleep(0.2)
        return time.monotonic() - started

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as r:
            text: str = r.read().decode()
            return text

    def metric(self, name: str, labels: str = "") -> float:
        """The sum of the samples of ``name`` (with exactly ``labels``, if given)."""
        pattern = re.escape(name) + (re.escape("{" + labels + "}") if labels else r"(?:\{[^}]*\})?") + r" ([0-9.e+-]+)"
        return sum(float(m.group(1)) for m in re.finditer(r"^" + pattern + "$", self.metrics(), re.M))

    def alive(self) -> bool:
        return self.process.poll() is None

    def check(self) -> None:
        """Raise if the worker exited."""
        if self.process.poll() is not None:
            raise RuntimeError(f"the worker exited with code {self.process.returncode}:\n{self.tail()}")

    def output(self) -> bytes:
        """What this worker has written to its log so far (not an earlier run's lines before it)."""
        with open(self.log_path, "rb") as f:
            f.seek(self.log_start)
            return f.read()

    def tail(self, chars: int = 3000) -> str:
        try:
            return self.output().decode(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self, timeout: float = 30.0) -> None:
        terminate(self.process, timeout)
        self.log.close()

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()
        self.log.close()
