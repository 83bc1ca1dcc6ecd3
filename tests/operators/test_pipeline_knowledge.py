"""`label`, `report-fraud` and `reissue` against a running worker whose event time is far behind the wall clock
(a replay, or `make run`): they check what the pipeline has scored, and take effect on the card's next authorization.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterator

import pytest

from fraudstream.cli import main
from fraudstream.config import Settings
from fraudstream.contracts import encode
from fraudstream.kafka.topics import create_topics

from ..conftest import WorkerProcess, isolated_settings, produce, read_topic, settings_env, wait_for
from .conftest import Result

pytestmark = pytest.mark.broker

MINUTE = 60_000
#: 60 days before the wall clock, as in `make run`.
T0 = (int(time.time() * 1000) - 60 * 86_400_000) // MINUTE * MINUTE


def _auth(tx: str, card: str, ts: int, amount: float = 2500.0) -> tuple[bytes, bytes]:
    return card.encode(), encode({"tx_id": tx, "card_id": card, "merchant_id": "m-1", "amount": amount, "ts": ts, "currency": "JPY"})


def _iso(ts: int) -> str:
    return dt.datetime.fromtimestamp(ts / 1000, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture(scope="module")
def pipeline(broker, tmp_path_factory) -> Iterator[tuple[Settings, WorkerProcess]]:
    tmp = tmp_path_factory.mktemp("operators-pipeline")
    s = isolated_settings(broker, tmp, partitions=1)
    create_topics(s)
    worker = WorkerProcess(s, tmp / "worker.log")
    history = [_auth(f"p-{i}", "card-P1", T0 + i * MINUTE) for i in range(3)]
    history += [_auth(f"q-{i}", "card-Q1", T0 + i * MINUTE + 30_000) for i in range(3)]
    produce(s, s.topic_authorizations, history)
    wait_for(lambda: worker.metric("fraudstream_authorizations_scored_total") >= len(history), timeout=60)
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("FRAUDSTREAM_CONFIG", raising=False)
        for name, value in settings_env(s).items():
            if name.startswith("FRAUDSTREAM_"):
                mp.setenv(name, value)
        yield s, worker
    worker.stop()


@pytest.fixture
def run(pipeline, capsys) -> Callable[..., Result]:
    def go(*argv: str) -> Result:
        capsys.readouterr()
        try:
            code = main(list(argv))
        except SystemExit as exc:
            code = int(exc.code or 0)
        out = capsys.readouterr()
        return Result(code, out.out, out.err)

    return go


def test_a_report_blocks_the_cards_next_authorization_when_event_time_is_behind(pipeline, run):
    s, worker = pipeline
    report = run("report-fraud", "card-P1", "--since", _iso(T0))
    assert report.code == 0, report.err
    assert "pipeline's event time" in report.out, report.out
    wait_for(lambda: worker.metric("fraudstream_labels_total", 'source="customer_report",status="card_level"') >= 1, timeout=60)
    label = next(v for k, v in read_topic(s, s.topic_labels, idle=1.0, timeout=10) if k == b"card-P1")
    # The newest authorization scored in the card's partition (the only one here: card-Q1's), not the wall clock.
    newest = max(v["ts"] for _, v in read_topic(s, s.topic_scores, idle=1.0, timeout=10))
    assert label["ts"] == newest < time.time() * 1000 - 59 * 86_400_000  # event time, not the wall clock

    produce(s, s.topic_authorizations, [_auth("p-next", "card-P1", T0 + 3 * MINUTE)])
    scored = {}
    wait_for(lambda: scored.update({v["tx_id"]: v for _, v in read_topic(s, s.topic_scores, idle=1.0, timeout=10)})
             or "p-next" in scored, timeout=30)
    assert scored["p-next"]["decision"]["action"] == "block", scored["p-next"]["decision"]


REFUSED = [
    (["label", "tx-nobody", "--fraud", "--card", "card-Q1"], "there is no scored transaction tx-nobody in the 7 scored"),
    (["label", "q-1", "--fraud", "--card", "card-P1"], "transaction q-1 belongs to card card-Q1, not to --card card-P1"),
    (["label", "q-1", "--fraud", "--card", "card-nobody9"], "transaction q-1 belongs to card card-Q1, not to --card card-nobody9"),
    (["report-fraud", "card-nobody9", "--since", "2024-03-10"], "there is no scored authorization of card card-nobody9"),
    (["reissue", "card-nobody9"], "there is no scored authorization of card card-nobody9"),
]


def test_unknown_cards_and_transactions_are_refused_unless_forced(pipeline, run):
    s, _ = pipeline
    sent = len(read_topic(s, s.topic_labels, idle=0.5, timeout=5)) + len(read_topic(s, s.topic_card_reissues, idle=0.5, timeout=5))
    for argv, message in REFUSED:
        refused = run(*argv)
        assert refused.code == 2, (argv, refused)
        assert message in refused.err and "--force" in refused.err and "nothing was sent" in refused.err, refused.err
    wall_clock = run("report-fraud", "card-P1", "--since", _iso(int(time.time() * 1000) - 86_400_000))
    assert wall_clock.code == 2 and "is after the pipeline's event time" in wall_clock.err, wall_clock
    for argv, message in REFUSED:
        forced = run(*argv, "--force")
        assert forced.code == 0, (argv, forced)
        assert forced.err.startswith(f"warning (--force): {message.split(' in the ')[0]}"), forced.err
    after = len(read_topic(s, s.topic_labels, idle=0.5, timeout=5)) + len(read_topic(s, s.topic_card_reissues, idle=0.5, timeout=5))
    assert after == sent + len(REFUSED)  # only the forced ones were sent


def test_a_label_of_a_known_transaction_is_stamped_with_event_time(pipeline, run):
    s, _ = pipeline
    done = run("label", "q-2", "--legit", "--card", "card-Q1")
    assert done.code == 0, done.err
    label = [v for k, v in read_topic(s, s.topic_labels, idle=1.0, timeout=10) if v.get("tx_id") == "q-2"][-1]
    newest = max(v["ts"] for _, v in read_topic(s, s.topic_scores, idle=1.0, timeout=10))
    assert label["ts"] == newest < time.time() * 1000 - 59 * 86_400_000  # event time, not the wall clock
