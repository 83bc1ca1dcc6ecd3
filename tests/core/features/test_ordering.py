"""EventTimeOrder: merchant partitions see every card partition's authorizations in event-time order."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from fraudstream.core.features.ordering import EventTimeOrder


def test_nothing_is_released_before_every_source_is_heard_from() -> None:
    order = EventTimeOrder(sources=3)
    assert order.offer(100, "a", "a")
    order.advance(0, 500)
    order.advance(1, 500)
    assert order.release() == []  # source 2 could still send something older
    order.go_idle(2)
    assert order.release() == ["a"]


def test_release_waits_for_the_slowest_source_and_is_strictly_older() -> None:
    order = EventTimeOrder(sources=2)
    for ts, key in ((300, "c"), (100, "a"), (200, "b")):
        order.offer(ts, key, key)
    order.advance(0, 300)
    order.advance(1, 200)
    assert order.release() == ["a"]  # 200 itself waits: source 1 may send another authorization at 200
    order.advance(1, 201)
    assert order.release() == ["b"]
    order.advance(1, 1000)
    assert order.release() == []  # source 0 is at 300 and may hand on another at 300
    order.advance(0, 301)
    assert order.release() == ["c"]
    assert len(order) == 0


def test_ties_are_ordered_by_key() -> None:
    order = EventTimeOrder(sources=1)
    for key in ("t3", "t1", "t2"):
        order.offer(100, key, key)
    order.advance(0, 101)
    assert order.release() == ["t1", "t2", "t3"]


def test_an_authorization_older_than_what_was_released_is_out_of_order() -> None:
    order = EventTimeOrder(sources=1)
    order.offer(100, "a", "a")
    order.advance(0, 200)
    assert order.release() == ["a"]
    assert order.watermark == 200
    assert not order.offer(150, "late", "late")  # the caller handles it at once
    assert order.offer(200, "b", "b")  # not older than the watermark: still ordered


def test_a_copy_of_a_held_authorization_is_refused_but_recognised() -> None:
    order = EventTimeOrder(sources=1)
    assert order.offer(100, ("t1", 0, 7), "first")
    assert not order.offer(100, ("t1", 0, 7), "copy")
    assert order.held(100, ("t1", 0, 7)) == "first"
    assert order.held(100, ("t1", 0, 8)) is None
    assert order.offer(100, ("t1", 0, 9), "redelivered by the platform")  # another source offset: its own answer
    order.advance(0, 101)
    assert order.release() == ["first", "redelivered by the platform"]


def test_all_sources_idle_releases_everything_held() -> None:
    order = EventTimeOrder(sources=2)
    order.advance(0, 10)
    order.advance(1, 10)
    order.offer(50, "x", "x")
    order.offer(40, "y", "y")
    assert order.release() == []
    order.go_idle(0)
    assert order.release() == []  # source 1 is still at 10
    order.go_idle(1)
    assert order.release() == ["y", "x"]
    assert not order.offer(49, "z", "z")  # older than what went out


def test_an_idle_source_that_resumes_is_waited_for_again() -> None:
    order = EventTimeOrder(sources=2)
    order.advance(0, 100)
    order.go_idle(1)
    order.offer(90, "a", "a")
    assert order.release() == ["a"]
    order.advance(1, 95)  # it hands on something again
    order.offer(120, "b", "b")
    order.advance(0, 500)
    assert order.release() == []  # held until source 1 passes 120
    order.advance(1, 130)
    assert order.release() == ["b"]


def test_the_watermark_never_goes_back() -> None:
    order = EventTimeOrder(sources=2)
    order.advance(0, 100)
    order.advance(1, 100)
    order.release()
    order.advance(0, 50)  # a restarted intake re-sends an older mark
    order.release()
    assert order.watermark == 100


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 4), st.integers(0, 60), st.integers(0, 2**32))
def test_any_interleaving_of_ordered_sources_gives_the_event_time_order(sources: int, n: int, seed: int) -> None:
    """Each source hands on its events in ts order, as a card partition of an ordered stream does; however the
    sources interleave, batch and go idle at the end, the release order is the global (ts, key) order."""
    rng = random.Random(seed)
    events = sorted((rng.randrange(0, 50), f"t{i:03d}") for i in range(n))
    streams: list[list[tuple[int, str]]] = [[] for _ in range(sources)]
    for e in events:
        streams[rng.randrange(sources)].append(e)
    order = EventTimeOrder(sources)
    out: list[tuple[int, str]] = []
    cursors = [0] * sources
    while any(c < len(s) for c, s in zip(cursors, streams, strict=True)):
        s = rng.choice([i for i in range(sources) if cursors[i] < len(streams[i])])
        batch = streams[s][cursors[s] : cursors[s] + rng.randint(1, 5)]
        cursors[s] += len(batch)
        for ts, key in batch:
            assert order.offer(ts, key, (ts, key)), "an ordered source is never out of order"
        order.advance(s, batch[-1][0])
        if cursors[s] == len(streams[s]):
            order.go_idle(s)
        out.extend(order.release())
    for s in range(sources):
        order.go_idle(s)
    out.extend(order.release())
    assert out == events
