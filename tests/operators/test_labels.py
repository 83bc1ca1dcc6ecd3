"""`fraudstream label`, `report-fraud` and `reissue`: validated, then published keyed by card."""

from __future__ import annotations

import datetime as dt
import time

import pytest

from ..conftest import read_topic

pytestmark = pytest.mark.broker


def _now_ms() -> int:
    return int(time.time() * 1000)


def test_labels_and_fraud_reports(ops, cli):
    # Nothing is scored on these topics: every card and transaction is unknown to the pipeline, hence --force
    # (tests/operators/test_pipeline_knowledge.py has the checks against a worker's scores).
    t0 = _now_ms()
    fraud = cli("label", "tx-1", "--fraud", "--card", "card-1", "--force")
    assert fraud.code == 0, fraud.err
    assert "tx-1 on card card-1 FRAUD" in fraud.out
    legit = cli("label", "tx-2", "--legit", "--card", "card-2", "--source", "chargeback", "--force")
    assert legit.code == 0, legit.err

    iso = cli("report-fraud", "card-3", "--since", "2024-03-10T08:00:00Z", "--force")
    assert iso.code == 0, iso.err
    assert "compromised since 2024-03-10 08:00:00 UTC" in iso.out and "read in" not in iso.out
    local = cli("report-fraud", "card-4", "--since", "2024-03-10", "--force")
    assert local.code == 0 and "--since 2024-03-10 read in UTC (FRAUDSTREAM_TZ_OFFSET_H; no zone given)" in local.out
    assert cli("report-fraud", "card-5", "--since", "2024-03-10T17:00:00+09:00", "--force").code == 0
    assert cli("report-fraud", "card-6", "--since", "1710057600000", "--force").code == 0

    # Refused, with the reason, and nothing sent.
    for argv, message in [
        (["label", "tx-9", "--legit", "--card", ""], "--card is empty"),
        (["label", "", "--fraud", "--card", "card-9"], "transaction id is empty"),
        (["label", "tx-9", "--fraud", "--card", " card-9"], "leading or trailing spaces"),
        (["label", "tx-9", "--fraud", "--card", "c" * 129], "at most 128"),
        (["report-fraud", "card-9", "--since", "last tuesday"], "'last tuesday' is not a time: use ISO 8601"),
        (["report-fraud", "card-9", "--since", "2024-02-30"], "is not a time"),
        (["report-fraud", "card-9", "--since", "2999-01-01"], "is in the future"),
        (["report-fraud", "card-9", "--since", str(_now_ms() + 3_600_000)], "is in the future"),
        (["report-fraud", "card-9", "--since", "1710057600"], "not epoch milliseconds; did you mean 1710057600000"),
        (["report-fraud", "card-9", "--since", "1999-12-31"], "before 2000-01-01"),
        (["report-fraud", "", "--since", "2024-03-10"], "card is empty"),
    ]:
        result = cli(*argv)
        assert result.code == 2, (argv, result)
        assert message in result.err and "Traceback" not in result.err, (argv, result.err)
        assert result.err.startswith(f"fraudstream {argv[0]}: ")

    # argparse: --fraud and --legit together, or neither, or an unknown source, are usage errors (exit 2).
    source = cli("label", "tx-9", "--fraud", "--card", "card-9", "--source", "gut-feeling")
    assert source.code == 2 and "argument --source: invalid choice: 'gut-feeling'" in source.err
    both = cli("label", "tx-9", "--fraud", "--legit", "--card", "card-9")
    assert both.code == 2 and "not allowed with argument" in both.err
    neither = cli("label", "tx-9", "--card", "card-9")
    assert neither.code == 2 and "one of the arguments --fraud --legit is required" in neither.err

    records = read_topic(ops, ops.topic_labels, until=6, timeout=20)
    assert len(records) == 6
    by_card = {k.decode(): v for k, v in records}
    assert set(by_card) == {f"card-{n}" for n in range(1, 7)}
    assert all(t0 <= v["ts"] <= _now_ms() for v in by_card.values())
    assert {k: v for k, v in by_card["card-1"].items() if k != "ts"} == {
        "tx_id": "tx-1", "card_id": "card-1", "is_fraud": True, "source": "analyst"}
    assert by_card["card-2"]["is_fraud"] is False and by_card["card-2"]["source"] == "chargeback"
    since = int(dt.datetime(2024, 3, 10, 8, tzinfo=dt.UTC).timestamp() * 1000)
    assert {k: v for k, v in by_card["card-3"].items() if k != "ts"} == {
        "card_id": "card-3", "is_fraud": True, "since": since, "source": "customer_report"}
    assert "tx_id" not in by_card["card-3"]
    assert by_card["card-4"]["since"] == since - 8 * 3_600_000
    assert by_card["card-5"]["since"] == since == by_card["card-6"]["since"]
    assert len(read_topic(ops, ops.topic_labels, idle=1.0, timeout=10)) == 6  # the refused ones sent nothing


def test_reissue(ops, cli):
    t0 = _now_ms()
    result = cli("reissue", "card-000123", "--force")
    assert result.code == 0, result.err
    assert "card card-000123 reissued" in result.out
    bad = cli("reissue", "")
    assert bad.code == 2 and "card is empty" in bad.err
    records = read_topic(ops, ops.topic_card_reissues, idle=1.0, timeout=10)
    assert len(records) == 1
    key, value = records[0]
    assert key == b"card-000123" and value["card_id"] == "card-000123" and t0 <= value["ts"] <= _now_ms()
    assert set(value) == {"card_id", "ts"}
