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
