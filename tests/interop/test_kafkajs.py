"""A non-Python Kafka client against the real worker: KafkaJS in, KafkaJS out.

The card issuer's authorization platform (tests/js/produce_authorizations.js) writes authorizations with
KafkaJS; the monitoring team's tooling (tests/js/consume_scores.js) reads fraud.scores in a KafkaJS consumer
group. Between them runs a real ``fraudstream worker`` on the embedded broker.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections import Counter

import pytest

from ..conftest import ROOT, read_topic

pytestmark = pytest.mark.broker

JS = ROOT / "tests" / "js"
N = 300


def node() -> str:
    """The machine's Node.js with KafkaJS installed in tests/js; fails (never skips) without them."""
    exe = shutil.which("node")
    if exe is None:
        pytest.fail("Node.js is not installed: run `make test`, which installs it (make system-deps)", pytrace=False)
    if not (JS / "node_modules" / "kafkajs" / "package.json").is_file():
        pytest.fail("KafkaJS is not installed in tests/js/node_modules: run `make test`, which runs npm ci in tests/js", pytrace=False)
    return exe


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_kafkajs_producer_and_consumer_group_through_the_worker(topics, start_worker):
    exe = node()
    s = topics
    brokers = s.bootstrap_servers
    # The consumer joins its group while the worker starts: a join on the embedded broker takes seconds.
    consumer = subprocess.Popen(
        [exe, "consume_scores.js", "--brokers", brokers, "--topic", s.topic_scores, "--count", str(N),
         "--group", f"{s.app_id}-monitoring", "--timeout-ms", "60000", "--idle-ms", "1000"],
        cwd=JS, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        worker = start_worker(s)
        produced = subprocess.run(
            [exe, "produce_authorizations.js", "--brokers", brokers, "--topic", s.topic_authorizations,
             "--count", str(N), "--seed", "11", "--compression", "gzip"],
            cwd=JS, capture_output=True, text=True, timeout=60,
        )
        assert produced.returncode == 0, f"KafkaJS producer failed:\n{produced.stderr}"
        out, err = consumer.communicate(timeout=90)
    finally:
        if consumer.poll() is None:
            consumer.kill()
            consumer.communicate()
    assert consumer.returncode == 0, f"KafkaJS consumer failed ({consumer.returncode}):\n{err}"

    # What the issuer sent, as acked by the broker: N authorizations keyed by card_id, and one malformed message.
    sent = json_lines(produced.stdout)
    valid = {a["tx_id"]: a for a in (json.loads(m["value"]) for m in sent if m["valid"])}
    malformed = [m for m in sent if not m["valid"]]
    assert len(valid) == N and len(malformed) == 1
    assert all(json.loads(m["value"])["card_id"] == m["key"] for m in sent if m["valid"])

    # Every authorization came back scored exactly once, with what the issuer sent.
    scores = json_lines(out)
    assert all(line["value"] is not None for line in scores), [line for line in scores if line["value"] is None][:3]
    times = Counter(line["value"]["tx_id"] for line in scores)
    assert set(times) == set(valid), f"missing {sorted(set(valid) - set(times))[:5]}, unexpected {sorted(set(times) - set(valid))[:5]}"
    assert max(times.values()) == 1, f"scored more than once: {[t for t, c in times.items() if c > 1][:5]}"
    for line in scores:
        v, auth = line["value"], valid[line["value"]["tx_id"]]
        assert (v["card_id"], v["amount"], v["merchant_id"], v["ts"]) == (auth["card_id"], auth["amount"], auth["merchant_id"], auth["ts"])
        assert line["key"] == auth["card_id"]
        assert 0.0 <= v["score"] <= 1.0
        assert isinstance(v["model_version"], str) and v["model_version"]

    # The malformed message went to the dead-letter topic, and the worker kept going.
    letters = read_topic(s, s.topic_dead_letter, until=1, timeout=30)
    assert len(letters) == 1, letters
    _, letter = letters[0]
    assert letter["reason"] == "not_json" and letter["topic"] == s.topic_authorizations
    assert letter["key"] == malformed[0]["key"] and letter["raw"] == malformed[0]["value"]
    assert worker.alive()
    assert worker.metric("fraudstream_dead_letters_total") == 1
