"""Sliding windows in event time, kept as a fixed ring of buckets.

A window of ``s`` buckets of ``width`` ms covers the bucket of the query time
and the ``s - 1`` before it, so its far edge is exact to one bucket width
(5 minutes for the 1-hour window, 1 hour for 24 hours, 1 day for 7 and 30
days). Memory is fixed whatever the activity: ``n * fields`` doubles, plus
one running total per span so the common query (as of the newest bucket)
costs no loop. Fields that only count events can be persisted as 4-byte
integers (``counts``): they read back as the same doubles.

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

import struct
from array import array
from collections.abc import Callable, Sequence
from typing import Final

__all__ = ["BucketRing"]

#: Two and three doubles written into an array at a byte offset, in one call: an array's item assignment parses its
#: float as a function argument does (PyArg_Parse), a third of an authorization's array writes' cost each.
_PUT2: Final = struct.Struct("2d").pack_into
_PUT3: Final = struct.Struct("3d").pack_into
_PUT6: Final = struct.Struct("6d").pack_into
_ZEROS: dict[int, array[float]] = {}  # zeroed arrays by length, copied over a ring that starts afresh
_ZEROS_U32: dict[int, array[int]] = {}  # zeroed count columns by length, copied by to_bytes


def _zeros(length: int) -> array[float]:
    z = _ZEROS.get(length)
    if z is None:
        z = _ZEROS[length] = array("d", bytes(8 * length))
    return z


def _zeros_u32(length: int) -> array[int]:
    z = _ZEROS_U32.get(length)
    if z is None:
        z = _ZEROS_U32[length] = array("I", bytes(4 * length))
    return z


_PLAIN: dict[tuple[int, tuple[int, ...]], tuple[int, ...]] = {}


def _plain_fields(fields: int, counts: tuple[int, ...]) -> tuple[int, ...]:
    """The fields of a ring that are not ``counts`` (persisted as doubles), in order; one tuple per ring shape."""
    plain = _PLAIN.get((fields, counts))
    if plain is None:
        plain = _PLAIN[(fields, counts)] = tuple(i for i in range(fields) if i not in counts)
    return plain


_U32S: dict[int, Callable[[bytes | memoryview, int], tuple[int, ...]]] = {}


def _u32s(length: int) -> Callable[[bytes | memoryview, int], tuple[int, ...]]:
    """Reads ``length`` uint32 (as ``array("I").tobytes()`` writes them: native order) at an offset."""
    read = _U32S.get(length)
    if read is None:
        read = _U32S[length] = struct.Struct(f"={length}I").unpack_from
    return read


_Layout = tuple[int, tuple[tuple[int, int], ...]]
_LAYOUTS: dict[tuple[int, tuple[int, ...], int], _Layout] = {}


def _layout(n: int, spans: tuple[int, ...], fields: int) -> _Layout:
    """Where the whole ring's total is in ``sums`` (-1: none), and (offset, span) of every other span's.

    Shared by every ring of the same shape, so it costs a ring one reference.
    """
    key = (n, spans, fields)
    layout = _LAYOUTS.get(key)
    if layout is None:
        whole = spans.index(n) * fields if n in spans else -1
        layout = _LAYOUTS[key] = (whole, tuple((k * fields, span) for k, span in enumerate(spans) if k * fields != whole))
    return layout


def _take(sums: array[float], at: int, data: array[float], base: int, f: int) -> None:
    """``sums[at + i] -= data[base + i]`` for each of the ``f`` fields; three or six in one write (``_PUT3``)."""
    if f == 3:
        _PUT3(sums, 8 * at, sums[at] - data[base], sums[at + 1] - data[base + 1], sums[at + 2] - data[base + 2])
    elif f == 6:
        _PUT6(sums, 8 * at, sums[at] - data[base], sums[at + 1] - data[base + 1], sums[at + 2] - data[base + 2],
              sums[at + 3] - data[base + 3], sums[at + 4] - data[base + 4], sums[at + 5] - data[base + 5])
    else:
        for i in range(f):
            sums[at + i] = sums[at + i] - data[base + i]


class BucketRing:
    """``fields`` running sums per bucket over the last ``n`` buckets, with totals per span.

    Totals are kept for every span in ``spans`` (default: the whole ring).
    Queries for an older bucket (out-of-order events) sum the buckets instead.
    The fields listed in ``counts`` hold whole numbers below 2**32 (how many
    events a bucket holds): they are persisted as uint32, not as doubles.
    """

    __slots__ = ("n", "width", "fields", "spans", "counts", "head", "data", "sums", "used", "layout")

    def __init__(self, n: int, width: int, fields: int, spans: Sequence[int] = (), counts: Sequence[int] = ()) -> None:
        self.n = n
        self.width = width
        self.fields = fields
        self.spans = tuple(spans) or (n,)
        self.counts = tuple(counts)
        self.head = -1  # index (ts // width) of the newest bucket; -1 while empty
        # Typed: compiled, an element read is a native double, not a float object added generically.
        self.data: array[float] = array("d", _zeros(n * fields))
        self.sums: array[float] = array("d", _zeros(len(self.spans) * fields))  # running totals, span-major
        _zeros(fields)  # one bucket's worth, for clearing a slot
        self.layout = _layout(n, self.spans, fields)
        # Bit j clear: every field of slot j is 0.0, so expiry skips it (subtracting 0.0 changes no total,
        # the running totals come out bit for bit the same). Set: it may hold something. Not persisted.
        self.used = 0

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
        slot = b % self.n
        self.used |= 1 << slot
        i = slot * f
        for v in values:
            data[i] = data[i] + v
            i += 1
        off = 0
        for span in self.spans:
            if b > head - span:
                i = off
                for v in values:
                    sums[i] = sums[i] + v
                    i += 1
            off += f

    def window(self, ts: int, values: Sequence[float], store: bool = True) -> list[float]:
        """The totals of every span (span-major, like ``sums``) as of ``ts``, with ``values`` counted once.

        With ``store``, ``values`` go into the bucket of ``ts`` first, as :meth:`add` does. When they are not
        stored (``store`` False, or the bucket already expired) they are added to the totals instead. The
        same floats as :meth:`add` then :meth:`totals` for each span (plus ``values`` when not stored), in
        one call: for an event in the newest bucket, the running totals are the answer. ``values`` (one per
        field at most) may be fewer than ``fields``: the fields after them get nothing (adding 0.0 would
        change no sum).
        """
        b = ts // self.width
        head = self.head
        if store:
            if b >= head:
                data, sums, f, size, used = self.data, self.sums, self.fields, self.n, self.used
                if b > head:
                    # What _advance does, without the call in the two common cases.
                    if b - head >= size:
                        # The whole ring is out of range (a card used once a day): it starts afresh.
                        self.head = b
                        if used:
                            data[:] = _ZEROS[len(data)]
                            used = 0
                        sums[:] = _ZEROS[len(sums)]
                    elif self.layout[1]:  # spans shorter than the ring: their buckets leave too
                        self._advance(b)
                        used = self.used
                    else:
                        passed = ((1 << (b - head)) - 1) << ((head + 1) % size)
                        if used & (passed | passed >> size):
                            self._advance(b)
                            used = self.used
                        else:
                            self.head = b  # the buckets the clock passes over hold nothing
                slot = b % size
                if not used >> slot & 1:
                    self.used = used | 1 << slot
                i = slot * f
                # Into the bucket, then into every span's total (the newest bucket is inside each).
                # Spelled out for 2 and 3 values, the common cases: a loop costs as much again. Each element read
                # (compiled: as a native double, added natively), the new ones written in one call (_PUT3): the
                # same sums, bit for bit.
                k = len(values)
                if k == 3:
                    v0, v1, v2 = values
                    _PUT3(data, 8 * i, data[i] + v0, data[i + 1] + v1, data[i + 2] + v2)
                    for off in range(0, len(sums), f):
                        _PUT3(sums, 8 * off, sums[off] + v0, sums[off + 1] + v1, sums[off + 2] + v2)
                elif k == 2:
                    v0, v1 = values
                    _PUT2(data, 8 * i, data[i] + v0, data[i + 1] + v1)
                    for off in range(0, len(sums), f):
                        _PUT2(sums, 8 * off, sums[off] + v0, sums[off + 1] + v1)
                elif k == 6:  # the card's hour ring, when a field beyond the first three gets something
                    v0, v1, v2, v3, v4, v5 = values
                    _PUT6(data, 8 * i, data[i] + v0, data[i + 1] + v1, data[i + 2] + v2, data[i + 3] + v3, data[i + 4] + v4,
                          data[i + 5] + v5)
                    for off in range(0, len(sums), f):
                        _PUT6(sums, 8 * off, sums[off] + v0, sums[off + 1] + v1, sums[off + 2] + v2, sums[off + 3] + v3,
                              sums[off + 4] + v4, sums[off + 5] + v5)
                else:
                    for j, v in enumerate(values, i):
                        data[j] = data[j] + v
                    for off in range(0, len(sums), f):
                        for j, v in enumerate(values, off):
                            sums[j] = sums[j] + v
                return sums.tolist()
            if b > head - self.n:
                self._add(b, values)
                return [t for span in self.spans for t in self.totals(ts, span)]
        out: list[float] = []
        for span in self.spans:
            totals = self.totals(ts, span)
            for j, v in enumerate(values):
                totals[j] += v
            out += totals
        return out

    def totals(self, ts: int, span: int | None = None) -> list[float]:
        """Sums over the ``span`` buckets (default the whole ring) ending at ``ts``'s bucket."""
        span = self.n if span is None else span
        f = self.fields
        if f == 3:  # the same sums, as three floats (a merchant's rings, read for every authorization)
            t0, t1, t2 = self.totals3(ts, span)
            return [t0, t1, t2]
        b = ts // self.width
        if b == self.head and span in self.spans:
            off = self.spans.index(span) * f
            return self.sums[off : off + f].tolist()
        # An older bucket, or a query ahead of the clock: what is still inside the window by then.
        out = [0.0] * f
        end = min(b, self.head)
        start = max(b - span + 1, self.head - self.n + 1)
        data, size, used = self.data, self.n, self.used
        for bucket in range(start, end + 1):
            slot = bucket % size
            if used >> slot & 1:  # adding an empty bucket's 0.0 changes nothing
                base = slot * f
                for i in range(f):
                    out[i] += data[base + i]
        return out

    def totals3(self, ts: int, span: int) -> tuple[float, float, float]:
        """:meth:`totals` of a ring of three fields, as three floats, without a list (compiled: native doubles, where
        the list boxes each addition); :meth:`totals` of such a ring is this. A merchant's other card partitions are read
        this way, three spans each, for every authorization (``merchant_features``).

        >>> ring = BucketRing(n=24, width=3_600_000, fields=3)
        >>> _ = ring.add(0, (1.0, 20.0, 0.0)); _ = ring.add(7_200_000, (1.0, 5.0, 1.0))
        >>> ring.totals3(10_800_000, 24) == tuple(ring.totals(10_800_000, 24)), ring.totals3(7_200_000, 24)
        (True, (2.0, 25.0, 1.0))
        """
        b = ts // self.width
        head = self.head
        data = self.data
        if b == head and span in self.spans:
            off = self.spans.index(span) * 3
            sums = self.sums
            return sums[off], sums[off + 1], sums[off + 2]
        t0 = t1 = t2 = 0.0
        end = b if b < head else head
        start = b - span + 1
        if start < head - self.n + 1:
            start = head - self.n + 1
        size, used = self.n, self.used
        for bucket in range(start, end + 1):
            slot = bucket % size
            if used >> slot & 1:
                base = slot * 3
                t0 += data[base]
                t1 += data[base + 1]
                t2 += data[base + 2]
        return t0, t1, t2

    def newest_age(self, ts: int, field: int) -> int:
        """Buckets from ``ts``'s bucket back to the newest one at or before it whose ``field`` holds more than 0.5
        (an event count: a correction to 0 leaves at most rounding); -1 when no bucket in the ring does.

        >>> days = BucketRing(n=30, width=86_400_000, fields=2)
        >>> _ = days.add(3 * 86_400_000, (1.0, 1.0)); _ = days.add(9 * 86_400_000, (1.0, 0.0))
        >>> days.newest_age(10 * 86_400_000, 1), days.newest_age(10 * 86_400_000, 0), days.newest_age(2 * 86_400_000, 1)
        (7, 1, -1)
        """
        b = ts // self.width
        data, size, used, f = self.data, self.n, self.used, self.fields
        bucket = b if b < self.head else self.head
        oldest = self.head - size + 1
        while bucket >= oldest:
            slot = bucket % size
            if used >> slot & 1 and data[slot * f + field] > 0.5:
                return b - bucket
            bucket -= 1
        return -1

    def _advance(self, b: int) -> None:
        data, f, size, sums, used = self.data, self.fields, self.n, self.sums, self.used
        old = self.head
        self.head = b
        if b - old >= size:
            # The whole ring is out of range: the common case for a card used once a day.
            if used:
                data[:] = _ZEROS[len(data)]
                self.used = 0
            sums[:] = _ZEROS[len(sums)]
            return
        if not used:
            return  # every slot holds 0.0: nothing leaves any total, nothing to clear
        # Buckets leaving each span's window stop counting in its running total, oldest first, as
        # they always did (the order of the subtractions decides the rounding). Empty buckets are skipped.
        # The whole ring's total (at ``whole``) is done below: its leaving buckets are the slots cleared.
        whole, partial = self.layout
        for off, span in partial:
            for leaving in range(old - span + 1, min(b - span, old) + 1):
                slot = leaving % size
                if used >> slot & 1:
                    _take(sums, off, data, slot * f, f)
        # The slots the clock passes over (buckets old+1..b) held buckets now out of range: they leave
        # the whole ring's total and are cleared. Only the used ones, in bucket order: the slots from
        # ``first`` to the end of the ring, then (when the range wraps) those from slot 0.
        first = (old + 1) % size
        passed = ((1 << (b - old)) - 1) << first
        passed |= passed >> size
        hit = used & passed
        if not hit:
            return
        self.used = used ^ hit
        for bits, low_slot in ((hit >> first, first), (hit & ((1 << first) - 1), 0)):
            while bits:
                lowest = bits & -bits
                bits ^= lowest
                base = (low_slot + lowest.bit_length() - 1) * f
                if whole >= 0:
                    _take(sums, whole, data, base, f)
                data[base : base + f] = _ZEROS[f]

    def copy(self) -> BucketRing:
        """A ring of its own with the same buckets and totals."""
        ring = BucketRing(self.n, self.width, self.fields, self.spans, self.counts)
        ring.head, ring.used = self.head, self.used
        ring.data[:] = self.data  # into the arrays the ring was made with: no second allocation
        ring.sums[:] = self.sums
        return ring

    # --- persistence --------------------------------------------------------
    # Without ``counts``: the head, the buckets (interleaved doubles), the running totals. With ``counts``:
    # the head, each count field's column as uint32, each other field's column as doubles, the totals.
    def to_bytes(self) -> bytes:
        head = self.head.to_bytes(8, "little", signed=True)
        counts = self.counts
        if not counts:
            return head + self.data.tobytes() + self.sums.tobytes()
        data, f, n = self.data, self.fields, self.n
        # Each column starts as zeros and only the used slots are filled: a slot whose bit is clear holds 0.0, whose
        # uint32 is 0 (converting each count took most of a card's write: most of its slots are empty). The count
        # columns in one array and the others in another, one after the other: the same bytes as a column each.
        # int() of a whole double is exact; a negative or >= 2**32 count raises OverflowError, never wraps.
        plain = _plain_fields(f, counts)
        ints = array("I", _zeros_u32(n * len(counts)))
        doubles = array("d", _zeros(n * len(plain)))
        used = self.used
        while used:
            lowest = used & -used
            used ^= lowest
            slot = lowest.bit_length() - 1
            base = slot * f
            at = slot
            for i in counts:  # not zip or enumerate: compiled, those are a generic call per slot
                ints[at] = int(data[base + i])
                at += n
            at = slot
            for i in plain:
                doubles[at] = data[base + i]
                at += n
        return b"".join((head, ints.tobytes(), doubles.tobytes(), self.sums.tobytes()))

    def load_bytes(self, raw: bytes | memoryview) -> None:
        self.head = int.from_bytes(raw[:8], "little", signed=True)
        n, f, counts = self.n, self.fields, self.counts
        end = 8 + 8 * n * f
        data: array[float] = array("d")
        if counts:
            data.extend(_zeros(n * f))
            end = 8
            for i in counts:
                column = _u32s(n)(raw, end)  # a tuple of ints, small ones shared: cheaper than an array("I") here
                if any(column):  # an all-zero column (a card that never used an ATM) leaves the zeros
                    data[i::f] = array("d", column)  # uint32 -> double: exact
                end += 4 * n
            for i in range(f):
                if i not in counts:
                    doubles: array[float] = array("d")
                    doubles.frombytes(raw[end : end + 8 * n])
                    data[i::f] = doubles
                    end += 8 * n
        else:
            data.frombytes(raw[8:end])
        self.data = data
        sums: array[float] = array("d")
        sums.frombytes(raw[end : end + 8 * len(self.spans) * f])
        self.sums = sums
        if counts:
            # Exactly the slots that hold anything (the others are all 0.0, every bit clear): to_bytes converts the
            # counts of those only, expiry skips the others, as for a ring filled here.
            blob, size, zero, used = data.tobytes(), 8 * f, _zeros(f).tobytes(), 0
            for slot in range(n):
                if blob[slot * size : slot * size + size] != zero:
                    used |= 1 << slot
            self.used = used
        else:
            self.used = (1 << n) - 1  # any slot may hold something: expiry checks them all once

    @property
    def nbytes(self) -> int:
        return 8 + (8 * self.fields - 4 * len(self.counts)) * self.n + 8 * len(self.spans) * self.fields
