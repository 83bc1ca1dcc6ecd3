"""Reaching the brokers from a short-lived client (the CLI's): one clear message, not librdkafka's log.

librdkafka logs every failed connection attempt to stderr: over a hundred lines while a broker is down,
before the command could say anything. :class:`ClientErrors` turns that log off in a client's config and
keeps its errors; :func:`cluster_metadata` waits for the brokers, and gives up at once when every broker
refused, with the error that says why.

>>> errors = ClientErrors()
>>> sorted(errors.config())
['error_cb', 'log_level']
>>> errors.why()
'no answer'
"""

from __future__ import annotations

import time
from typing import Any

from confluent_kafka import KafkaError, KafkaException

from fraudstream.broker import BrokerError

__all__ = ["ClientErrors", "BrokerUnreachable", "cluster_metadata", "REACH_S"]

#: How long a command tries to reach the brokers before it gives up (sooner when every broker refuses).
REACH_S = 10.0


class BrokerUnreachable(BrokerError):
    """No broker answered; the message names the address and librdkafka's reason."""


class ClientErrors(list[KafkaError]):
    """A client's errors (its ``error_cb``), its own log off."""

    def config(self) -> dict[str, Any]:
        return {"log_level": 0, "error_cb": self.append}

    def all_brokers_down(self) -> bool:
        return any(e.code() == KafkaError._ALL_BROKERS_DOWN for e in self)

    def why(self) -> str:
        """The most telling error: a connection's own (refused, unresolved...) rather than "all brokers down"."""
        for e in reversed(self):
            if e.code() != KafkaError._ALL_BROKERS_DOWN:
                return str(e.str())
        return str(self[-1].str()) if self else "no answer"


def cluster_metadata(client: Any, errors: ClientErrors, bootstrap: str, topic: str | None = None,
                     within: float = REACH_S) -> Any:
    """``client.list_topics(topic)`` once a broker answers; :class:`BrokerUnreachable` when none does."""
    deadline = time.monotonic() + within
    while True:
        try:
            return client.list_topics(topic, timeout=1.0)
        except KafkaException as exc:
            if hasattr(client, "poll"):
                client.poll(0)  # serves error_cb: a refused connection is known at once
            if errors.all_brokers_down() or time.monotonic() >= deadline:
                error = exc.args[0] if exc.args else exc
                fallback = error.str() if isinstance(error, KafkaError) else str(error)
                raise BrokerUnreachable(f"cannot reach the brokers at {bootstrap}: "
                                        f"{errors.why() if errors else fallback}") from None
