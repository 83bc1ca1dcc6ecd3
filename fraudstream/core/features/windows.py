"""Sliding windows in event time, kept as a fixed ring of buckets.

A window of ``n`` buckets of ``width`` ms covers the bucket of the query time
and the ``n - 1`` before it, so its far edge is exact to one bucket width
(5 minutes for the 1-hour window, 1 hour for 24 hours, 1 day for 7 and 30
days). Memory is fixed whatever the activity: ``n * len(fields)`` doubles.

Buckets expire when the ring's clock (the newest event time it has seen)
moves past them, never by the wall clock, so a replay at any speed keeps and
drops exactly what live processing would.

>>> ring = BucketRing(n=12, width=300_000, fields=2)   # 1 hour of 5-minute buckets
>>> ring.add(1_000, (1.0, 50.0)); ring.add(301_000, (1.0, 20.0))
True
True
>>> ring.totals(301_000)
[2.0, 70.0]
>>> ring.totals(301_000 + 3_600_000)   # an hour later both are out of the window
[0.0, 0.0]
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence

__all__ = ["BucketRing"]


class BucketRing:
    """``fields`` running sums per bucket, over the last ``n`` buckets."""

    __slots__ = ("n", "width", "fields", "head", "data")

    def __init__(self, n: int, width: int, fields: int) -> None:
        self.n = n
        self.width = width
        self.fields = fields
        self.head = -1  # index (ts // width) of the newest bucket; -1 while empty
        self.data = array("d", bytes(8 * n * fields))

    def add(self, ts: int, values: Sequence[float]) -> bool:
        """Add ``values`` to the bucket of ``ts``; False if it already expired."""
        b = ts // self.width
        if b > self.head:
            self._advance(b)
        elif b <= self.head - self.n:
            return False
        base = (b % self.n) * self.fields
        data = self.data
        for i, v in enumerate(values):
            data[base + i] += v
        return True

    def add_at(self, ts: int, field: int, value: float) -> bool:
        """Add to one field of the bucket of ``ts`` without moving the clock.

        Used for facts that arrive later about an earlier time (a fraud label
        for a past authorization): they must not expire the present.
        """
        b = ts // self.width
        if b > self.head or b <= self.head - self.n:
            return False
        self.data[(b % self.n) * self.fields + field] += value
        return True

    def totals(self, ts: int, last: int | None = None) -> list[float]:
        """Sums over the ``last`` buckets (default all ``n``) ending at ``ts``'s bucket."""
        n = self.n if last is None else last
        end = min(ts // self.width, self.head)
        start = max(ts // self.width - n + 1, self.head - self.n + 1)
        out = [0.0] * self.fields
        if end < start:
            return out
        data, f, size = self.data, self.fields, self.n
        for b in range(start, end + 1):
            base = (b % size) * f
            for i in range(f):
                out[i] += data[base + i]
        return out

    def _advance(self, b: int) -> None:
        # Clear the slots the clock passes over: they held buckets now out of range.
        data, f, size = self.data, self.fields, self.n
        first = max(self.head + 1, b - size + 1)
        for old in range(first, b + 1):
            base = (old % size) * f
            for i in range(f):
                data[base + i] = 0.0
        self.head = b

    # --- persistence --------------------------------------------------------
    def to_bytes(self) -> bytes:
        return self.head.to_bytes(8, "little", signed=True) + self.data.tobytes()

    def load_bytes(self, raw: bytes | memoryview) -> None:
        self.head = int.from_bytes(raw[:8], "little", signed=True)
        self.data = array("d")
        self.data.frombytes(raw[8 : 8 + 8 * self.n * self.fields])

    @property
    def nbytes(self) -> int:
        return 8 + 8 * self.n * self.fields
