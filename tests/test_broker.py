"""The embedded broker on a free port, when that port is taken before Tansu binds it (brokers starting side by side)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

import fraudstream.broker as broker_module
from fraudstream.broker import BrokerError, EmbeddedBroker, free_port


def test_a_free_port_taken_before_the_broker_binds_it_makes_it_try_another(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as squatter:  # what got the port between free_port() and Tansu: a listener, the worst case
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        ports = iter([taken, free_port()])
        monkeypatch.setattr(broker_module, "free_port", lambda: next(ports))
        with EmbeddedBroker(port=0, log_path=tmp_path / "tansu.log") as b:
            assert b.port != taken
            assert b.process is not None and b.process.poll() is None
            md = AdminClient({"bootstrap.servers": b.bootstrap_servers}).list_topics(timeout=10)
            assert md.brokers, "the broker on the second port answers"
        assert b"AddrInUse" in (tmp_path / "tansu.log").read_bytes(), "the first try did fail on the taken port"


def test_a_port_given_and_taken_is_refused() -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        with pytest.raises(BrokerError, match="already in use"):
            EmbeddedBroker(port=squatter.getsockname()[1]).start()


def test_the_broker_command_says_what_workers_started_apart_from_it_must_set(tmp_path: Path) -> None:
    """`fraudstream broker` prints its address, and the batch pacing and fetch wait a worker needs on it (the worker
    cannot tell)."""
    import os
    import signal
    import subprocess
    import sys

    env = {**os.environ, "FRAUDSTREAM_STATE_DIR": str(tmp_path)}
    env.pop("FRAUDSTREAM_BATCH_FILL", None)
    env.pop("FRAUDSTREAM_FETCH_WAIT_MS", None)
    proc = subprocess.Popen([sys.executable, "-m", "fraudstream", "broker", "--port", str(free_port())], env=env,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(4)]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    assert lines[0].startswith("embedded broker listening on 127.0.0.1:")
    assert lines[1].startswith("  export FRAUDSTREAM_BROKER=kafka://127.0.0.1:")
    assert lines[2].startswith("  export FRAUDSTREAM_BATCH_FILL=100 ")
    assert lines[3].startswith("  export FRAUDSTREAM_FETCH_WAIT_MS=100 ")
