"""Where a partition truly ends: the embedded broker's ListOffsets answer can be too low after a multi-record batch,
so the end is read where a fetch finds it (its end-of-partition event), not where the broker says it is.

>>> fetched_ends({"bootstrap.servers": "127.0.0.1:1"}, {})  # nothing asked, nothing read (no broker needed)
{}
"""

from __future__ import annotations

import time
import uuid
from typing import Any, cast

from confluent_kafka import Consumer, KafkaError, TopicPartition

__all__ = ["fetched_ends"]


def fetched_ends(client: dict[str, Any], reported: dict[Any, int], timeout: float = 10.0) -> dict[Any, int]:
    """Per partition of ``reported`` (objects with ``topic`` and ``partition``, and the end the broker reported for
    each, above 0), the offset one past its last record, as a consumer reading from the reported end's last record
    finds it; partitions not found within ``timeout`` seconds are left out."""
    if not reported:
        return {}
    c = Consumer({**client, "group.id": f"fraudstream-ends-{uuid.uuid4().hex[:8]}", "enable.auto.commit": False,
                  "enable.partition.eof": True, "auto.offset.reset": "latest", "fetch.wait.max.ms": 10})
    try:
        by_key = {(tp.topic, tp.partition): tp for tp in reported}
        c.assign([TopicPartition(tp.topic, tp.partition, hw - 1) for tp, hw in reported.items()])
        ends: dict[Any, int] = {}
        deadline = time.monotonic() + timeout
        while len(ends) < len(reported) and time.monotonic() < deadline:
            for m in c.consume(1000, 0.2):
                err = m.error()
                if err is not None and err.code() == KafkaError._PARTITION_EOF:
                    ends[by_key[(m.topic(), m.partition())]] = cast(int, m.offset())  # an EOF event has one
        return ends
    finally:
        c.close()
