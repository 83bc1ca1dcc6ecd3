"""A worker keeps at most FRAUDSTREAM_LIVE_STATES_MAX states of each kind in its heap; the rest load from the tables."""

from __future__ import annotations

import time

import pytest

from fraudstream.contracts import encode
from fraudstream.kafka.topics import create_topics

from ..conftest import isolated_settings, produce, read_distinct, wait_for

pytestmark = pytest.mark.broker

CARDS = 24
BOUND = 4


def auth(tx_id: str, card_id: str, ts: int) -> tuple[bytes, bytes]:
    return card_id.encode(), encode({"tx_id": tx_id, "card_id": card_id, "merchant_id": "term-1", "amount": 25.0,
                                     "ts": ts, "channel": "pos"})


@pytest.mark.parametrize("store", ["memory://", "rocksdb://"])
def test_states_past_the_bound_leave_the_heap_and_come_back_whole(broker, tmp_path, start_worker, store):
    s = isolated_settings(broker, tmp_path, live_states_max=BOUND, store=store)
    create_topics(s)
    worker = start_worker(s)
    start = int(time.time() * 1000) - 3_600_000
    produce(s, s.topic_authorizations, [auth(f"first-{i}", f"card-{i:02d}", start + i) for i in range(CARDS)])
    read_distinct(s, s.topic_scores, CARDS, timeout=90)

    def live(kind: str) -> float:
        return worker.metric("fraudstream_live_states", f'kind="{kind}"')

    wait_for(lambda: live("card") > 0, timeout=30)  # reported every 5 s
    for kind in ("card", "standing"):
        assert 0 < live(kind) <= BOUND, kind

    # Each card again: most states were dropped from the heap, and the features still count both authorizations.
    produce(s, s.topic_authorizations, [auth(f"second-{i}", f"card-{i:02d}", start + 60_000 + i) for i in range(CARDS)])
    scores = read_distinct(s, s.topic_scores, 2 * CARDS, timeout=90)
    counts = {scores[f"second-{i}"]["features"]["card_count_1h"] for i in range(CARDS)}
    assert counts == {2.0}
    gaps = {scores[f"second-{i}"]["features"]["card_seconds_since_prev"] for i in range(CARDS)}
    assert gaps == {60.0}
    wait_for(lambda: 0 < live("card") <= BOUND, timeout=30)
    assert worker.alive()
