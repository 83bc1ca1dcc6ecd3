"""The simulated issuer's reissues, without a broker: a card is replaced REISSUE_AFTER_DAYS after its fraud is
confirmed, once per compromise, as in the backtest."""

from __future__ import annotations

import inspect
import threading

import pytest

from fraudstream.backtest import Backtest
from fraudstream.core.features.card import DAY_MS, HOUR_MS
from fraudstream.simulate.reissues import REISSUE_AFTER_DAYS, Reissues


def fraud(card: str, ts: int, source: str = "analyst") -> dict[str, object]:
    return {"card_id": card, "tx_id": f"t-{card}-{ts}", "is_fraud": True, "ts": ts, "source": source}


def test_the_backtest_and_the_simulator_reissue_after_the_same_delay() -> None:
    assert inspect.signature(Backtest).parameters["reissue_after_days"].default == REISSUE_AFTER_DAYS
    r = Reissues()
    r.label(fraud("c1", 5 * HOUR_MS))
    assert r.due() == [{"card_id": "c1", "ts": 5 * HOUR_MS + round(REISSUE_AFTER_DAYS * DAY_MS)}]


def test_one_reissue_per_compromise_and_a_later_fraud_is_reissued_again() -> None:
    r = Reissues(after_days=2.0)
    r.label(fraud("c1", 0))
    r.label(fraud("c1", 6 * HOUR_MS, "customer_report"))  # the same compromise: its reissue is pending
    r.label({"card_id": "c2", "tx_id": "t-c2", "is_fraud": False, "ts": 0, "source": "analyst"})  # legitimate
    assert r.next_ts() == 2 * DAY_MS and len(r) == 1
    assert r.due(2 * DAY_MS) == []  # not before the event stream has passed it
    assert r.due(2 * DAY_MS + 1) == [{"card_id": "c1", "ts": 2 * DAY_MS}]
    r.label(fraud("c1", 30 * DAY_MS, "chargeback"))  # blocks the new card again: replaced again
    r.label(fraud("c1", 2 * DAY_MS, "chargeback"))  # at the reissue's ts: the core blocks from it, so again
    assert r.due() == [{"card_id": "c1", "ts": 4 * DAY_MS}, {"card_id": "c1", "ts": 32 * DAY_MS}]
    assert r.due() == [] and r.next_ts() is None


def test_labels_from_the_analysts_thread() -> None:
    r = Reissues(after_days=1.0)

    def analyst(i: int) -> None:
        for j in range(200):
            r.label(fraud(f"c{i}-{j}", j * HOUR_MS))

    threads = [threading.Thread(target=analyst, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    due = r.due()
    assert len(due) == 800 and [d["ts"] for d in due] == sorted(d["ts"] for d in due)


def test_an_issuer_that_never_reissues() -> None:
    r = Reissues(after_days=None)
    r.label(fraud("c1", 0))
    assert r.due() == [] and len(r) == 0
    with pytest.raises(ValueError):
        Reissues(after_days=-1.0)
