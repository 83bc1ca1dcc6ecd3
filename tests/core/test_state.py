"""The live states' stores: what they write is what they hold."""

from __future__ import annotations

import random

from fraudstream.contracts import encode
from fraudstream.core.state import CardTransactions


def test_a_card_list_written_in_pieces_is_the_list_encoded_whole() -> None:
    """`CardTransactions.flush` appends the entries added since a list's last write to those bytes: they stay the
    list's own encoding through pruning (horizon and cap), trimming, and lists dropped to be read again."""
    rng = random.Random(5)
    durable: dict[str, bytes] = {}
    index = CardTransactions(durable, horizon_ms=1000, cap=8, capacity=3)
    ts = 0
    for step in range(3000):
        ts += rng.choice((1, 10, 400))
        card = f"c{rng.randrange(5)}"
        index.add(card, ts, f"t{step}")
        if rng.random() < 0.3:
            written = set(index.dirty)
            index.flush()
            for card in written:
                assert durable[card] == encode(index.live[card])
            index.trim()
        if rng.random() < 0.02:  # as a rebuild of the index drops a card's list (fraudstream.stream.card_index)
            dropped = f"c{rng.randrange(5)}"
            index.live.pop(dropped, None)
            index.dirty.discard(dropped)
    index.flush()
    for card, entries in index.live.items():
        assert durable[card] == encode(entries)
        assert CardTransactions(dict(durable)).since(card, 0) == list(entries)
