"""Which partition of a keyed topic a key goes to: Kafka's default partitioner, in plain Python.

fraudstream's producers partition with murmur2 (``Settings.producer_config``: librdkafka's ``murmur2_random``), as the
Java client and KafkaJS do, so a card's authorizations land on the same partition whoever writes them. The core needs
to know where too: a card partition's contribution to a merchant (``fraudstream.core.features.partials``) is its
own, so the backtest must put each card where the platform's producer does.

>>> [murmur2(key) for key in (b"21", b"foobar", b"a-little-bit-long-string", b"abc")]   # Kafka's own test vectors
[3321034988, 3504634814, 3308985760, 479470107]
>>> partition_of("card-17", 3), partition_of("card-17", 3) == partition_of("card-17", 3)
(1, True)
"""

from __future__ import annotations

__all__ = ["murmur2", "partition_of"]

_M = 0x5BD1E995
_MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 of ``data``, as an unsigned 32-bit number (the Java client's is the same bits, signed)."""
    length = len(data)
    h = (0x9747B28C ^ length) & _MASK
    for i in range(length // 4):
        k = int.from_bytes(data[4 * i : 4 * i + 4], "little")
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = ((h * _M) & _MASK) ^ k
    rest, i = length & 3, length & ~3
    if rest == 3:
        h ^= data[i + 2] << 16
    if rest >= 2:
        h ^= data[i + 1] << 8
    if rest >= 1:
        h ^= data[i]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h


def partition_of(key: str, partitions: int) -> int:
    """The partition of ``partitions`` that a record keyed ``key`` (UTF-8) goes to."""
    return (murmur2(key.encode()) & 0x7FFFFFFF) % partitions
