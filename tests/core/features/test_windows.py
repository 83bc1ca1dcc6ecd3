"""BucketRing: sums over the last n buckets of event time, expired by the ring's own clock."""

from __future__ import annotations

import random
from array import array

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fraudstream.core.features.windows import BucketRing

W = 300_000  # 5-minute buckets, as in the card's 1-hour window
N = 12


def ring() -> BucketRing:
    return BucketRing(n=N, width=W, fields=2)


# --- bucket boundaries -----------------------------------------------------------


def test_empty_ring_sums_to_zero() -> None:
    r = ring()
    assert r.head == -1
    assert r.totals(0) == [0.0, 0.0]
    assert r.totals(10 * W) == [0.0, 0.0]


def test_ts_exactly_on_a_boundary_opens_the_next_bucket() -> None:
    r = ring()
    assert r.add(W - 1, (1.0, 10.0))  # last ms of bucket 0
    assert r.head == 0
    assert r.add(W, (1.0, 20.0))  # first ms of bucket 1
    assert r.head == 1
    # As of the last ms of bucket 0, bucket 1 is in the future: not counted.
    assert r.totals(W - 1) == [1.0, 10.0]
    assert r.totals(0) == [1.0, 10.0]
    assert r.totals(W) == [2.0, 30.0]
    assert r.totals(2 * W - 1) == [2.0, 30.0]


def test_first_and_last_ms_of_a_bucket_share_it() -> None:
    r = ring()
    r.add(5 * W, (1.0, 1.0))
    r.add(6 * W - 1, (1.0, 2.0))
    assert r.head == 5
    assert r.totals(5 * W) == [2.0, 3.0]
    assert r.totals(5 * W - 1) == [0.0, 0.0]  # bucket 4 holds nothing


def test_the_window_covers_the_bucket_of_ts_and_the_n_minus_1_before() -> None:
    r = ring()
    r.add(0, (1.0, 7.0))  # bucket 0
    # Queried from bucket n-1 (its first and last ms), bucket 0 is the far edge: still in.
    assert r.totals((N - 1) * W) == [1.0, 7.0]
    assert r.totals(N * W - 1) == [1.0, 7.0]
    # From bucket n, bucket 0 is out, even though the ring's clock has not moved.
    assert r.totals(N * W) == [0.0, 0.0]
    assert r.head == 0


@pytest.mark.parametrize("spans", [(), (7, 30)])
def test_a_span_limits_the_window_to_the_most_recent_buckets(spans: tuple[int, ...]) -> None:
    r = BucketRing(n=30, width=1000, fields=1, spans=spans)
    for b in range(30):
        r.add(b * 1000 + 500, (float(b),))
    assert r.totals(29_999) == [float(sum(range(30)))]
    assert r.totals(29_999, 7) == [float(sum(range(23, 30)))]
    assert r.totals(29_999, 1) == [29.0]  # a span the ring keeps no running total for
    # 7 buckets as of bucket 10 (an older bucket than the clock): buckets 4..10
    assert r.totals(10_000, 7) == [float(sum(range(4, 11)))]
    r.add(35_000, (100.0,))  # clock moves 6 buckets: 0..5 expire, 23..28 leave the 7-day span
    assert r.totals(35_000) == [float(sum(range(6, 30)) + 100)]
    assert r.totals(35_000, 7) == [129.0]


# --- expiry as the clock moves ---------------------------------------------------


def test_advance_by_less_than_n_buckets_keeps_old_buckets() -> None:
    r = ring()
    r.add(0, (1.0, 5.0))
    assert r.add((N - 1) * W, (1.0, 6.0))  # clock moves n-1 buckets
    assert r.head == N - 1
    assert r.totals((N - 1) * W) == [2.0, 11.0]
    assert r.totals(0) == [1.0, 5.0]


def test_advance_by_exactly_n_buckets_expires_the_oldest() -> None:
    r = ring()
    r.add(0, (1.0, 5.0))
    r.add(3 * W, (1.0, 1.0))
    assert r.add(N * W, (1.0, 6.0))  # bucket n reuses bucket 0's slot
    assert r.head == N
    assert r.totals(N * W) == [2.0, 7.0]
    # Bucket 0 is gone even when asked about its own time.
    assert r.totals(0) == [0.0, 0.0]
    assert r.totals(3 * W) == [1.0, 1.0]


def test_advance_by_more_than_n_buckets_clears_everything() -> None:
    r = ring()
    for b in range(N):
        r.add(b * W + 1, (1.0, float(b)))
    assert r.totals((N - 1) * W) == [float(N), float(sum(range(N)))]
    r.add(5 * N * W, (1.0, 100.0))
    assert r.totals(5 * N * W) == [1.0, 100.0]
    assert list(r.data[2:]) == [0.0] * (2 * (N - 1))  # bucket 5n sits in slot 0; every other slot was cleared


def test_a_query_ahead_of_the_clock_sees_what_will_still_be_in_range() -> None:
    r = ring()
    r.add(0, (1.0, 1.0))
    r.add(4 * W, (1.0, 2.0))
    assert r.totals((N + 3) * W) == [1.0, 2.0]  # bucket 0 out of range, bucket 4 in
    assert r.head == 4  # a query never moves the clock


def test_add_to_an_expired_bucket_returns_false_and_changes_nothing() -> None:
    r = ring()
    r.add(N * W, (1.0, 1.0))  # head = n
    before = r.to_bytes()
    assert r.add(0, (1.0, 99.0)) is False  # bucket 0 <= head - n
    assert r.add(W - 1, (1.0, 99.0)) is False
    assert r.to_bytes() == before
    assert r.add(W, (1.0, 2.0)) is True  # bucket 1 = head - n + 1: the oldest still kept
    assert r.totals(N * W) == [2.0, 3.0]


def test_out_of_order_add_lands_in_its_bucket_without_moving_the_clock() -> None:
    r = ring()
    r.add(5 * W, (1.0, 1.0))
    assert r.add(2 * W, (1.0, 10.0))
    assert r.head == 5
    assert r.totals(2 * W) == [1.0, 10.0]
    assert r.totals(5 * W) == [2.0, 11.0]


# --- add_at ----------------------------------------------------------------------


def test_add_at_never_moves_the_clock() -> None:
    r = ring()
    r.add(3 * W, (1.0, 10.0))
    assert r.add_at(3 * W + 5, 1, 4.0) is True
    assert r.head == 3
    assert r.totals(3 * W) == [1.0, 14.0]
    # A later bucket than the clock: refused, the clock stays.
    before = r.to_bytes()
    assert r.add_at(4 * W, 0, 1.0) is False
    assert r.add_at(100 * W, 0, 1.0) is False
    assert r.head == 3
    assert r.to_bytes() == before


def test_add_at_on_an_empty_ring_is_refused() -> None:
    r = ring()
    assert r.add_at(0, 0, 1.0) is False
    assert r.head == -1


def test_add_at_of_an_expired_bucket_is_refused() -> None:
    r = ring()
    r.add(N * W + 1, (1.0, 1.0))
    before = r.to_bytes()
    assert r.add_at(0, 0, 5.0) is False
    assert r.to_bytes() == before
    assert r.add_at(W, 0, 5.0) is True  # the oldest bucket still kept
    assert r.totals(N * W) == [6.0, 1.0]


def test_add_at_can_subtract() -> None:
    r = ring()
    r.add(0, (1.0, 0.0))
    r.add_at(0, 1, 1.0)
    r.add_at(0, 1, -1.0)
    assert r.totals(0) == [1.0, 0.0]


# --- persistence -----------------------------------------------------------------


def test_to_bytes_load_bytes_round_trip() -> None:
    r = BucketRing(n=24, width=3_600_000, fields=4)
    for i in range(100):
        r.add(i * 1_000_003, (1.0, i * 1.5, i * i * 2.25, float(i % 2)))
    raw = r.to_bytes()
    assert len(raw) == r.nbytes
    copy = BucketRing(n=24, width=3_600_000, fields=4)
    copy.load_bytes(raw)
    assert copy.head == r.head
    assert copy.to_bytes() == raw
    for ts in range(0, 100 * 1_000_003, 777_777):
        assert copy.totals(ts) == r.totals(ts)
        assert copy.totals(ts, 7) == r.totals(ts, 7)
    # Both keep behaving the same.
    for ring_ in (r, copy):
        ring_.add(200_000_000, (1.0, 1.0, 1.0, 1.0))
    assert copy.to_bytes() == r.to_bytes()


def test_load_bytes_reads_its_own_part_of_a_longer_buffer() -> None:
    a, b = BucketRing(3, 10, 1), BucketRing(2, 10, 2)
    a.add(25, (4.0,))
    b.add(7, (1.0, 2.0))
    raw = memoryview(a.to_bytes() + b.to_bytes() + b"tail")
    a2, b2 = BucketRing(3, 10, 1), BucketRing(2, 10, 2)
    a2.load_bytes(raw)
    b2.load_bytes(raw[a2.nbytes :])
    assert (a2.head, a2.totals(25)) == (2, [4.0])
    assert (b2.head, b2.totals(7)) == (0, [1.0, 2.0])


def test_an_empty_ring_round_trips() -> None:
    r = ring()
    copy = ring()
    copy.load_bytes(r.to_bytes())
    assert copy.head == -1
    assert copy.to_bytes() == r.to_bytes()


# --- against a brute-force model ---------------------------------------------------


class ReferenceRing:
    """Every accepted event kept in a list; the documented window computed from scratch."""

    def __init__(self, n: int, width: int) -> None:
        self.n, self.width = n, width
        self.events: list[tuple[int, float]] = []  # (bucket, value)
        self.head: int | None = None

    def add(self, ts: int, value: float) -> bool:
        b = ts // self.width
        if self.head is not None and b <= self.head - self.n:
            return False
        self.head = b if self.head is None else max(self.head, b)
        self.events.append((b, value))
        return True

    def add_at(self, ts: int, value: float) -> bool:
        b = ts // self.width
        if self.head is None or b > self.head or b <= self.head - self.n:
            return False
        self.events.append((b, value))
        return True

    def totals(self, ts: int, span: int) -> float:
        if self.head is None:
            return 0.0
        b = ts // self.width
        return sum(v for eb, v in self.events if b - span < eb <= b and eb > self.head - self.n)


ops = st.lists(
    st.tuples(st.sampled_from(["add", "add", "add", "add_at", "query"]), st.integers(0, 60), st.integers(-2, 5)),
    min_size=1,
    max_size=60,
)


@settings(max_examples=120, deadline=None)
@given(ops=ops, n=st.integers(1, 6), span=st.integers(1, 6), keep_span=st.booleans())
def test_matches_brute_force_model(ops: list[tuple[str, int, int]], n: int, span: int, keep_span: bool) -> None:
    """Every answer, at every query time, whether or not the ring keeps a running total for the span."""
    width = 10
    span = min(span, n)
    r, ref = BucketRing(n, width, 1, spans=(span, n) if keep_span else ()), ReferenceRing(n, width)
    for op, t, v in ops:
        ts = t * 3  # several events per bucket, some exactly on edges
        if op == "add":
            assert r.add(ts, (float(v),)) == ref.add(ts, float(v))
        elif op == "add_at":
            assert r.add_at(ts, 0, float(v)) == ref.add_at(ts, float(v))
        for q in range(0, 200, 7):
            assert r.totals(q, span)[0] == ref.totals(q, span)
            assert r.totals(q)[0] == ref.totals(q, n)
        assert r.head == (-1 if ref.head is None else ref.head)


def test_running_totals_do_not_drift_over_a_long_stream() -> None:
    """Fractional amounts in and out of the running totals for a year: still the sum of the buckets."""
    rng = random.Random(5)
    r = BucketRing(30, 1000, 2, spans=(7, 30))
    ref = ReferenceRing(30, 1000)
    ts = 0
    for _ in range(20_000):
        ts += rng.choice((0, 1, 17, 250, 999, 1000, 4000))
        amount = rng.uniform(0.01, 5000.0)
        r.add(ts, (1.0, amount * amount))
        ref.add(ts, amount * amount)
        ref.events = [e for e in ref.events if e[0] > ref.head - 30]  # keep the reference fast
    expected = ref.totals(ts, 30)
    assert r.totals(ts, 30)[1] == pytest.approx(expected, rel=1e-9)
    assert r.totals(ts, 7)[1] == pytest.approx(ref.totals(ts, 7), rel=1e-9)
    assert r.totals(ts, 30)[0] == float(sum(1 for b, _ in ref.events if b > ref.head - 30))


# --- window(): add and read in one call, the same floats as a plain ring -------------------------


class PlainRing:
    """The straightforward ring: every leaving bucket subtracted, every field added, no shortcut.

    BucketRing skips empty buckets and absent fields (adding or subtracting 0.0 changes nothing); its
    answers must be these, bit for bit, since features are compared exactly across restarts and versions.
    """

    def __init__(self, n: int, width: int, fields: int, spans: tuple[int, ...]) -> None:
        self.n, self.width, self.fields, self.spans = n, width, fields, spans or (n,)
        self.head = -1
        self.data = [0.0] * (n * fields)
        self.sums = [0.0] * (len(self.spans) * fields)

    def add(self, ts: int, values: list[float]) -> bool:
        b = ts // self.width
        if b > self.head:
            old, self.head = self.head, b
            if b - old >= self.n:
                self.data = [0.0] * len(self.data)
                self.sums = [0.0] * len(self.sums)
            else:
                for k, span in enumerate(self.spans):
                    for leaving in range(old - span + 1, min(b - span, old) + 1):
                        for i in range(self.fields):
                            self.sums[k * self.fields + i] -= self.data[(leaving % self.n) * self.fields + i]
                for cleared in range(old + 1, b + 1):
                    for i in range(self.fields):
                        self.data[(cleared % self.n) * self.fields + i] = 0.0
        elif b <= self.head - self.n:
            return False
        for i, v in enumerate(values):
            self.data[(b % self.n) * self.fields + i] += v
        for k, span in enumerate(self.spans):
            if b > self.head - span:
                for i, v in enumerate(values):
                    self.sums[k * self.fields + i] += v
        return True

    def totals(self, ts: int, span: int) -> list[float]:
        b = ts // self.width
        if b == self.head and span in self.spans:
            k = self.spans.index(span)
            return self.sums[k * self.fields : (k + 1) * self.fields]
        out = [0.0] * self.fields
        for bucket in range(max(b - span + 1, self.head - self.n + 1), min(b, self.head) + 1):
            for i in range(self.fields):
                out[i] += self.data[(bucket % self.n) * self.fields + i]
        return out

    def window(self, ts: int, values: list[float], store: bool) -> list[float]:
        held = store and self.add(ts, values + [0.0] * (self.fields - len(values)))
        out: list[float] = []
        for span in self.spans:
            t = self.totals(ts, span)
            out += t if held else [x + (values[i] if i < len(values) else 0.0) for i, x in enumerate(t)]
        return out


@settings(max_examples=150, deadline=None)
@given(events=st.lists(st.tuples(st.integers(0, 90), st.integers(1, 10**6), st.integers(1, 3), st.booleans(), st.booleans()),
                       min_size=1, max_size=80),
       n=st.integers(1, 8), spans=st.sampled_from([(), (2,), (3, 8), (1, 4, 8)]), round_trip=st.integers(-1, 80))
def test_window_gives_the_floats_of_a_plain_ring(events: list[tuple[int, int, int, bool, bool]], n: int, spans: tuple[int, ...],
                                                  round_trip: int) -> None:
    spans = tuple(min(s, n) for s in spans)
    ring, plain = BucketRing(n, 10, 3, spans=spans, counts=(0,)), PlainRing(n, 10, 3, spans)
    for j, (t, cents, k, store, add_at) in enumerate(events):
        ts = t * 7  # several events per bucket, gaps of many buckets
        amount = cents / 100  # fractions: the order of additions and subtractions shows in the last bits
        values = [1.0, amount, amount * amount][:k]
        if add_at:  # a label about an earlier time, without moving the clock: into field 1 (and the plain ring's)
            assert ring.add_at(ts, 1, -amount) == (plain.head >= ts // 10 > plain.head - n and plain.add(ts, [0.0, -amount, 0.0]))
        else:
            assert ring.window(ts, values, store) == plain.window(ts, values, store)
        if j == round_trip:  # a restart: the ring goes through its bytes and goes on
            ring.load_bytes(ring.to_bytes())
        assert ring.head == plain.head
        assert list(ring.sums) == plain.sums and list(ring.data) == plain.data


def test_count_fields_are_persisted_as_uint32_and_read_back_exactly() -> None:
    plain, compact = BucketRing(30, 1000, 3, spans=(7, 30)), BucketRing(30, 1000, 3, spans=(7, 30), counts=(0,))
    rng = random.Random(8)
    ts = 0
    for _ in range(5_000):
        ts += rng.choice((0, 1, 400, 1000, 3000))
        amount = rng.uniform(0.01, 5000.0)
        for r in (plain, compact):
            r.window(ts, (1.0, amount, amount * amount))
    assert compact.nbytes == plain.nbytes - 4 * 30 == len(compact.to_bytes())
    copy = BucketRing(30, 1000, 3, spans=(7, 30), counts=(0,))
    copy.load_bytes(compact.to_bytes())
    assert copy.to_bytes() == compact.to_bytes()
    assert (list(copy.data), list(copy.sums), copy.head) == (list(plain.data), list(plain.sums), plain.head)
    for r in (plain, copy):
        r.window(ts + 2500, (1.0, 2.5, 6.25))
    assert (list(copy.data), list(copy.sums)) == (list(plain.data), list(plain.sums))


def test_a_count_that_does_not_fit_in_uint32_is_refused_not_wrapped() -> None:
    r = BucketRing(3, 10, 2, counts=(0,))
    r.add(5, (2.0**32, 1.0))
    with pytest.raises(OverflowError):
        r.to_bytes()


def _columns(r: BucketRing) -> bytes:
    """The layout of a ring with counts, column by column, as it was first written (every count converted)."""
    f = r.fields
    columns = [array("I", [int(x) for x in r.data[i::f]]).tobytes() for i in r.counts]
    columns += [r.data[i::f].tobytes() for i in range(f) if i not in r.counts]
    return b"".join((r.head.to_bytes(8, "little", signed=True), *columns, r.sums.tobytes()))


def test_a_ring_with_counts_is_written_column_by_column_and_read_back_with_only_its_filled_slots_used() -> None:
    # Sparse traffic, as a card's: to_bytes converts only the used slots' counts, load_bytes finds exactly those.
    rng = random.Random(18)
    r = BucketRing(24, 1000, 6, counts=(0, 3, 4, 5))
    ts = 0
    for step in range(3_000):
        ts += rng.choice((0, 1, 700, 1000, 5000, 30_000))
        amount = rng.uniform(0.01, 900.0)
        if step % 97 == 0:
            r.add_at(ts - 3000, 2, 5.0)  # a slot with a value but no count: read back as used all the same
        else:
            r.window(ts, (1.0, amount, amount * amount, float(rng.random() < 0.3), 0.0, float(rng.random() < 0.05)))
        raw = r.to_bytes()
        assert raw == _columns(r)
        copy = BucketRing(24, 1000, 6, counts=(0, 3, 4, 5))
        copy.load_bytes(raw)
        assert (copy.head, copy.data, copy.sums) == (r.head, r.data, r.sums) and copy.to_bytes() == raw
        assert copy.used == sum(1 << s for s in range(24) if any(r.data[6 * s : 6 * s + 6]))
        assert copy.totals(ts + 9000) == r.totals(ts + 9000) and copy.newest_age(ts, 3) == r.newest_age(ts, 3)
    assert copy.window(ts + 9000, (1.0, 2.0, 4.0)) == r.window(ts + 9000, (1.0, 2.0, 4.0))  # expiry skips its empty slots
