"""The reference learner: it learns an obvious signal, from labels only once they are known, deterministically."""

from __future__ import annotations

import random
import subprocess
import sys

import pytest

from fraudstream.contracts import Authorization, Label
from fraudstream.evaluation import ReferenceLearner, in_legit_sample, roc_auc
from fraudstream.evaluation.reference import FEATURES

T0 = 1_533_686_400_000  # 2018-08-08T00:00Z
H, DAY = 3_600_000, 86_400_000
WEEK = 7 * DAY


def obvious_stream(seed: int = 0, n_cards: int = 150, n_days: int = 20) -> tuple[list[Authorization], list[Label], dict[str, bool]]:
    """Everyday spending, and on some cards bursts of three large amounts at a few bad merchants, charged back a day later."""
    rng = random.Random(seed)
    events: list[Authorization] = []
    labels: list[Label] = []
    truth: dict[str, bool] = {}

    def add(card: str, merchant: str, amount: float, ts: int, fraud: bool) -> None:
        tx_id = f"tx-{len(events):06d}"
        events.append(Authorization(tx_id, card, merchant, round(amount, 2), ts))
        truth[tx_id] = fraud
        if fraud:
            labels.append(Label(card, True, ts + DAY, "chargeback", tx_id))

    for c in range(n_cards):
        card, mean = f"card-{c:03d}", rng.uniform(10, 80)
        for day in range(n_days):
            for _ in range(rng.randint(1, 4)):
                add(card, f"m-{rng.randrange(200)}", rng.uniform(0.5, 1.5) * mean, T0 + day * DAY + rng.randrange(DAY), False)
        if rng.random() < 0.3:
            start = T0 + rng.randrange(n_days * DAY)
            for i in range(3):
                add(card, f"bad-{rng.randrange(3)}", rng.uniform(8, 12) * mean, start + i * 600_000, True)
    rng.shuffle(events)  # the learner orders by time itself
    return events, labels, truth


@pytest.fixture(scope="module")
def stream() -> tuple[list[Authorization], list[Label], dict[str, bool]]:
    return obvious_stream()


def test_learns_an_obvious_signal_once_labels_arrive(stream) -> None:  # type: ignore[no-untyped-def]
    events, labels, truth = stream
    result = ReferenceLearner().run(events, labels)
    assert len(result.score) == len(events)
    assert result.ts == sorted(result.ts)
    first_label = min(lb.ts for lb in labels)
    assert {s for s, t in zip(result.score, result.ts, strict=True) if t < first_label} == {0.5}  # nothing to learn from yet
    late = [i for i, t in enumerate(result.ts) if t >= T0 + 10 * DAY]
    y = [truth[result.tx_id[i]] for i in late]
    assert sum(y) >= 30
    assert roc_auc(y, [result.score[i] for i in late]) > 0.9
    assert result.learned_fraud == sum(truth.values()) - sum(1 for lb in labels if lb.ts > max(result.ts))
    assert result.learned_legit > 0 and result.unmatched_labels == 0
    assert result.seconds > 0 and result.amount[0] == next(e.amount for e in events if e.tx_id == result.tx_id[0])


def test_deterministic_whatever_the_input_order(stream) -> None:  # type: ignore[no-untyped-def]
    events, labels, _ = stream
    first = ReferenceLearner().run(events, labels)
    again = ReferenceLearner().run(list(reversed(events)), list(reversed(labels)))
    assert again.score == first.score and again.tx_id == first.tx_id


def _card(n: int, start: int = T0, step: int = H, card: str = "c1") -> list[Authorization]:
    return [Authorization(f"t{i}", card, "m1", 10.0 + i, start + i * step) for i in range(n)]


def test_legitimate_is_learned_seven_days_after_the_authorization() -> None:
    learner = ReferenceLearner(legit_sample_rate=1.0)  # every authorization sampled: the timing alone is tested
    a, b, c = Authorization("a", "c1", "m1", 10.0, T0), Authorization("b", "c2", "m1", 10.0, T0 + WEEK - 1), \
        Authorization("c", "c3", "m1", 10.0, T0 + WEEK)
    result = learner.run([a, b, c], [])
    # b comes 1 ms too early for a to be learned; c comes exactly 7 days after a, which is learned before c is scored.
    assert result.score[:2] == [0.5, 0.5] and result.score[2] < 0.5
    assert result.learned_legit == 1


def test_a_fraud_label_at_maturity_wins_over_legitimate() -> None:
    a, c = Authorization("a", "c1", "m1", 10.0, T0), Authorization("c", "c3", "m1", 10.0, T0 + WEEK)
    label = Label("c1", True, T0 + WEEK, "chargeback", "a")  # known at the same ts: before maturity
    result = ReferenceLearner(legit_sample_rate=1.0).run([a, c], [label])
    assert (result.learned_fraud, result.learned_legit) == (1, 0)
    assert result.score[1] > 0.5


def test_outside_the_sample_nothing_legitimate_is_learned() -> None:
    result = ReferenceLearner(legit_sample_rate=0.0).run(_card(50, step=DAY), [])
    assert result.learned_legit == 0 and set(result.score) == {0.5}


def test_card_report_labels_what_was_seen_since_and_never_matures_it() -> None:
    events = _card(10)  # t0..t9, an hour apart
    report = Label("c1", True, T0 + 5 * H, "customer_report", since=T0 + 2 * H)
    result = ReferenceLearner(legit_sample_rate=1.0).run(events + [Authorization("z", "c2", "m2", 5.0, T0 + 30 * DAY)], [report])
    # t2..t5 were seen when the report came (t5 at its very ts, scored after it: not yet seen); t6..t9 came later.
    assert result.learned_fraud == 3
    # Matured at the last event: t0 and t1 (before since) only; t2..t9 are on the card reported since t2.
    assert result.learned_legit == 2


def test_duplicate_and_unknown_labels() -> None:
    labels = [Label("c1", True, T0 + DAY, "chargeback", "t0"), Label("c1", True, T0 + 2 * DAY, "chargeback", "t0"),
              Label("c1", True, T0 + 2 * DAY, "chargeback", "nope")]
    result = ReferenceLearner().run(_card(5, step=DAY), labels)
    assert (result.learned_fraud, result.unmatched_labels) == (1, 1)


def test_features_are_a_dozen_or_so_and_the_sample_is_five_percent() -> None:
    assert 12 <= len(FEATURES) <= 16 and "merchant_fraud_rate_30d" in FEATURES
    picked = [in_legit_sample(f"tx-{i:010d}", 0.05) for i in range(20_000)]
    assert 0.045 <= sum(picked) / len(picked) <= 0.055
    assert picked == [in_legit_sample(f"tx-{i:010d}", 0.05) for i in range(20_000)]


def test_independent_of_the_core() -> None:
    # The yardstick must not share fraudstream's features or model: importing it loads nothing of fraudstream.core.
    code = "import sys, fraudstream.evaluation.reference; print(sorted(m for m in sys.modules if m.startswith('fraudstream.core')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
