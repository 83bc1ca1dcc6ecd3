"""Sliding windows in event time, kept as a fixed ring of buckets.

A window of ``s`` buckets of ``width`` ms covers the bucket of the query time
and the ``s - 1`` before it, so its far edge is exact to one bucket width
(5 minutes for the 1-hour window, 1 hour for 24 hours, 1 day for 7 and 30
days). Memory is fixed whatever the activity: ``n * fields`` doubles, plus
one running total per span so the common query (as of the newest bucket)
costs no loop.

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
>>> days = BucketRing(n=30, width=86_400_000, fields=1, spans=(7, 30))
>>> for d in range(10): _ = days.add(d * 86_400_000, (1.0,))
>>> days.totals(9 * 86_400_000, 7), days.totals(9 * 86_400_000)
([7.0], [10.0])
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence

__all__ = ["BucketRing"]


class BucketRing:
    """``fields`` running sums per bucket over the last ``n`` buckets, with totals per span.

    Totals are kept for every span in ``spans`` (default: the whole ring).
    Queries for an older bucket (out-of-order events) sum the buckets instead.
    """

    __slots__ = ("n", "width", "fields", "spans", "head", "data", "sums")

    def __init__(self, n: int, width: int, fields: int, spans: Sequence[int] = ()) -> None:
        self.n = n
        self.width = width
        self.fields = fields
        self.spans = tuple(spans) or (n,)
        self.head = -1  # index (ts // width) of the newest bucket; -1 while empty
        self.data = array("d", bytes(8 * n * fields))
        self.sums = array("d", bytes(8 * len(self.spans) * fields))  # running totals, span-major

    def add(self, ts: int, values: Sequence[float]) -> bool:
        """Add ``values`` to the bucket of ``ts``; False if it already expired."""
        b = ts // self.width
        if b > self.head:
            self._advance(b)
        elif b <= self.head - self.n:
            return False
        self._add(b, values)
        return True

    def add_at(self, ts: int, field: int, value: float) -> bool:
        """Add to one field of the bucket of ``ts`` without moving the clock.

        Used for facts that arrive later about an earlier time (a fraud label
        for a past authorization): they must not expire the present.
        """
        b = ts // self.width
        if b > self.head or b <= self.head - self.n:
            return False
        values = [0.0] * self.fields
        values[field] = value
        self._add(b, values)
        return True

    def _add(self, b: int, values: Sequence[float]) -> None:
        f, data, sums, head = self.fields, self.data, self.sums, self.head
        base = (b % self.n) * f
        for i, v in enumerate(values):
            data[base + i] += v
        for k, span in enumerate(self.spans):
            if b > head - span:
                off = k * f
                for i, v in enumerate(values):
                    sums[off + i] += v

    def totals(self, ts: int, span: int | None = None) -> list[float]:
        """Sums over the ``span`` buckets (default the whole ring) ending at ``ts``'s bucket."""
        span = self.n if span is None else span
        b = ts // self.width
        f = self.fields
        if b >= self.head:
            if b == self.head and span in self.spans:
                off = self.spans.index(span) * f
                return self.sums[off : off + f].tolist()
            # A query ahead of the clock: what is still inside the window by then.
        out = [0.0] * f
        end = min(b, self.head)
        start = max(b - span + 1, self.head - self.n + 1)
        data, size = self.data, self.n
        for bucket in range(start, end + 1):
            base = (bucket % size) * f
            for i in range(f):
                out[i] += data[base + i]
        return out

    def _advance(self, b: int) -> None:
        data, f, size, sums = self.data, self.fields, self.n, self.sums
        old = self.head
        self.head = b
        if b - old >= size:
            # The whole ring is out of range: the common case for a card used once a day.
            self.data = array("d", bytes(8 * size * f))
            self.sums = array("d", bytes(8 * len(sums)))
            return
        # Buckets leaving each span's window stop counting in its running total.
        for k, span in enumerate(self.spans):
            off = k * f
            for leaving in range(old - span + 1, min(b - span, old) + 1):
                base = (leaving % size) * f
                for i in range(f):
                    sums[off + i] -= data[base + i]
        # Clear the slots the clock passes over: they held buckets now out of range.
        for cleared in range(old + 1, b + 1):
            base = (cleared % size) * f
            for i in range(f):
                data[base + i] = 0.0

    # --- persistence --------------------------------------------------------
    def to_bytes(self) -> bytes:
        return self.head.to_bytes(8, "little", signed=True) + self.data.tobytes() + self.sums.tobytes()

    def load_bytes(self, raw: bytes | memoryview) -> None:
        self.head = int.from_bytes(raw[:8], "little", signed=True)
        end = 8 + 8 * self.n * self.fields
        self.data = array("d", bytes(raw[8:end]))
        self.sums = array("d", bytes(raw[end : end + 8 * len(self.spans) * self.fields]))

    @property
    def nbytes(self) -> int:
        return 8 + 8 * (self.n + len(self.spans)) * self.fields
