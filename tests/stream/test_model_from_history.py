"""A deployment that starts from history: `backtest --save-model`, `model publish`, and the workers that start from it.

The claim: a worker started from a backtest's checkpoint gives the next authorizations the scores the backtest
gives them, when the backtest replays the history and those authorizations together.
"""

from __future__ import annotations

import os
import random
import re
import struct
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from confluent_kafka import Producer
from prometheus_client import CollectorRegistry

from fraudstream.cli import main
from fraudstream.config import Settings
from fraudstream.contracts import Authorization, Label, encode
from fraudstream.core.model.online import OnlineModel, TrainingExample
from fraudstream.core.scorer import FraudScorer
from fraudstream.kafka.topics import create_topics
from fraudstream.metrics import Metrics
from fraudstream.stream.learning import Checkpoint, ModelFollower, publish_checkpoint, training_end

from ..conftest import WorkerProcess, isolated_settings, produce, read_distinct, wait_for

DAY_MS = 86_400_000
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def history(seed: int = 17, n: int = 1500) -> tuple[list[Authorization], list[Label]]:
    """Two days of 80 cards at 25 merchants; 12 cards are compromised on the second day and used at 3 merchants.
    Analysts confirm every authorization an hour later; only labels known by the last authorization are kept,
    so the model the history ends with is the model that scores whatever comes next."""
    rng = random.Random(seed)
    cards = [f"h-card-{c:03d}" for c in range(80)]
    merchants = [f"h-merch-{m:02d}" for m in range(25)]
    compromised = set(cards[:12])
    events, labels = [], []
    for i in range(n):
        ts = T0 + i * (2 * DAY_MS // n) + rng.randrange(60_000)
        card = rng.choice(cards)
        fraud = card in compromised and ts >= T0 + DAY_MS and rng.random() < 0.7
        merchant = rng.choice(merchants[:3]) if fraud else rng.choice(merchants)
        amount = float(round(rng.uniform(20_000, 90_000) if fraud else rng.lognormvariate(8.0, 0.5)))
        a = Authorization(f"h-{i:05d}", card, merchant, amount, ts, channel="ecom" if fraud else rng.choice(["pos", "pos", "ecom"]))
        events.append(a)
        labels.append(Label(card, fraud, ts + 3_600_000, "analyst", a.tx_id))
    end = max(a.ts for a in events)
    return events, [lb for lb in labels if lb.ts <= end]


def next_authorizations(after: int, seed: int = 18) -> list[Authorization]:
    """What comes after the history: cards and merchants the history never saw, so their features start from
    nothing in the backtest too, as in a worker whose tables start empty. Some cards buy several times."""
    rng = random.Random(seed)
    out = []
    for i in range(40):
        card = f"n-card-{rng.randrange(14):02d}"
        big = rng.random() < 0.3
        amount = float(round(rng.uniform(20_000, 90_000) if big else rng.lognormvariate(8.0, 0.5)))
        out.append(Authorization(f"n-{i:03d}", card, f"n-merch-{rng.randrange(6)}", amount, after + 1 + i * 20_000,
                                 channel="ecom" if big else "pos"))
    return out


def write_jsonl(path: Path, records: list[Any]) -> Path:
    path.write_bytes(b"".join(encode(r) + b"\n" for r in records))
    return path


def use_settings(monkeypatch: pytest.MonkeyPatch, s: Settings) -> None:
    """The CLI reads its settings from the environment: these, and no FRAUDSTREAM_* of this shell."""
    for k in [k for k in os.environ if k.startswith("FRAUDSTREAM_")]:
        monkeypatch.delenv(k)
    for k, v in s.to_env().items():
        monkeypatch.setenv(k, v)


# --- the checkpoint format ----------------------------------------------------------
def test_generation_zero_is_the_original_checkpoint_format_and_publishing_restamps_only_the_header() -> None:
    model = OnlineModel("logistic", "separate")
    for i in range(50):
        model.learn(TrainingExample(f"t{i}", {"amount": 900.0 if i % 2 else 10.0}, bool(i % 2), 1.0, "analyst", i))
    raw = Checkpoint.pack(model, 7)
    offset, at = struct.unpack_from("<qd", raw)  # the header workers always wrote: training offset, time
    assert offset == 7 and abs(at - time.time()) < 60 and raw[16:] == model.to_bytes()
    assert Checkpoint.header(raw).generation == 0
    published = Checkpoint.restamp(raw, 123, 3)
    assert Checkpoint.header(published)[0::2] == (123, 3) and published.endswith(raw[16:])
    back, offset, _ = Checkpoint.unpack(published)
    assert (back.version, offset, back.score({"amount": 900.0})) == (model.version, 123, model.score({"amount": 900.0}))


def test_model_publish_refuses_what_is_not_a_checkpoint(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("FRAUDSTREAM_BROKER", "kafka://127.0.0.1:9")  # never reached: the file is refused first
    bogus = tmp_path / "model.bin"
    bogus.write_bytes(b"not a checkpoint at all")
    assert main(["model", "publish", str(bogus)]) == 2
    assert "is not a model checkpoint" in capsys.readouterr().err
    assert main(["model", "publish", str(tmp_path / "missing.model")]) == 2
    assert "cannot read" in capsys.readouterr().err


# --- workers -----------------------------------------------------------------------
class _Owner:
    """What a ModelFollower needs of its worker: settings, the scorer, metrics, a producer."""

    def __init__(self, s: Settings) -> None:
        self.settings = s
        self.scorer = FraudScorer(s, learn_inline=False)
        self.metrics = Metrics(CollectorRegistry())
        self.producer = Producer(s.producer_config())
        self.outputs = SimpleNamespace(produce=lambda topic, value, key: self.producer.produce(topic, value, key))
        self.dead_letters: list[Any] = []

    def dead_letter(self, rejection: Any, msg: Any) -> None:
        self.dead_letters.append(rejection)

    def follower(self) -> ModelFollower:
        f = ModelFollower(self, self.settings.kafka_client_config())  # type: ignore[arg-type]
        f.restore()
        return f


def _examples(s: Settings, first: int, n: int) -> None:
    produce(s, s.topic_training, [(None, encode(TrainingExample(f"x{i}", {"amount": 10.0 + i}, i % 2 == 0, 1.0, "analyst",
                                                                            T0 + i).as_dict())) for i in range(first, first + n)])


@pytest.mark.broker
def test_a_published_checkpoint_outranks_every_older_workers_checkpoint(broker, tmp_path: Path) -> None:
    """A running worker switches to it; a new worker, and a restarted one with its own newer file, start from it;
    an older worker's checkpoint written after the publish does not replace it; the examples the deployment had
    before the publish are not learned on it, the ones after are."""
    s = isolated_settings(broker, tmp_path)
    create_topics(s)
    _examples(s, 0, 5)
    running = _Owner(s.with_overrides(state_dir=str(tmp_path / "running")))
    old = running.follower()
    assert (old.generation, old.offset, running.scorer.model.examples) == (0, 5, 5)
    old.checkpoint()
    running.producer.flush(10)

    events, labels = history()
    backtest_model = FraudScorer(s, partitions=1)
    for a in events:
        backtest_model.process(a)
    for lb in labels:
        backtest_model.label(lb)
    history_model = backtest_model.model
    assert history_model.ready and history_model.examples > 100
    model, header = publish_checkpoint(s, Checkpoint.pack(history_model, 0))
    assert (model.version, header.generation, header.offset) == (history_model.version, 1, 5)

    # The running worker switches within a poll, and learns only what comes after the publish.
    _examples(s, 5, 2)
    wait_for(lambda: old.poll() >= 0 and running.scorer.model.examples == history_model.examples + 2, timeout=20, interval=0.1)
    assert old.generation == 1 and Checkpoint.header((tmp_path / "running" / f"{s.app_id}.model").read_bytes()).generation == 1

    # An older worker that never saw the publish checkpoints its blind model after it, far along the topic.
    stale = Checkpoint.pack(OnlineModel(s.model, s.label_streams), training_end(s.kafka_client_config(), s.topic_training))
    produce(s, s.topic_models, [(s.app_id.encode(), stale)])
    restarted_dir = tmp_path / "restarted"
    restarted_dir.mkdir()
    (restarted_dir / f"{s.app_id}.model").write_bytes(stale)
    for state_dir in (tmp_path / "new", restarted_dir):
        owner = _Owner(s.with_overrides(state_dir=str(state_dir)))
        f = owner.follower()
        assert (f.generation, owner.scorer.model.version) == (1, f"{s.model}-{history_model.examples + 2}"), state_dir


def _scores(path: Path) -> dict[str, dict[str, Any]]:
    return {r["tx_id"]: r for r in map(orjson.loads, path.read_bytes().splitlines())}


@pytest.mark.broker
def test_a_worker_started_from_a_backtests_checkpoint_scores_the_next_authorizations_as_the_backtest(
        broker, tmp_path: Path, monkeypatch, capsys) -> None:
    s = isolated_settings(broker, tmp_path)
    create_topics(s)
    use_settings(monkeypatch, s)
    events, labels = history()
    nexts = next_authorizations(after=max(a.ts for a in events))
    history_events = write_jsonl(tmp_path / "history.jsonl", [a.as_dict() for a in events])
    all_events = write_jsonl(tmp_path / "all.jsonl", [a.as_dict() for a in events + nexts])
    labels_file = write_jsonl(tmp_path / "labels.jsonl", labels)

    # The backtest of the history saves its model; the backtest of history and what came next scores it all.
    checkpoint = tmp_path / "history.model"
    assert main(["backtest", str(history_events), str(labels_file), "--save-model", str(checkpoint)]) == 0
    saved = re.search(r"model (\S+) saved to (\S+):", capsys.readouterr().out)
    assert saved is not None and saved.group(2) == str(checkpoint)
    model, offset, _ = Checkpoint.unpack(checkpoint.read_bytes())
    assert (model.version, offset) == (saved.group(1), 0) and model.ready  # it scores with what it learned
    reference = tmp_path / "reference.jsonl"
    assert main(["backtest", str(all_events), str(labels_file), "--scores-out", str(reference)]) == 0
    expected = {tx: r for tx, r in _scores(reference).items() if tx.startswith("n-")}
    assert len(expected) == len(nexts)
    # Nothing was learned between the end of the history and these authorizations: the same model scored them.
    assert {r["model_version"] for r in expected.values()} == {model.version}

    # A new deployment: the model published, then a worker that has seen none of the history.
    capsys.readouterr()
    assert main(["model", "publish", str(checkpoint)]) == 0
    assert f"published model {model.version}" in capsys.readouterr().out
    worker = WorkerProcess(s, tmp_path / "worker.log")
    try:
        produce(s, s.topic_authorizations, [(a.card_id.encode(), encode(a.as_dict())) for a in nexts])
        live = read_distinct(s, s.topic_scores, len(nexts), timeout=60)
        assert re.search(rf"model restored at version {model.version} \(training offset 0\) from {s.topic_models}, generation 1",
                         worker.tail(100_000))
    finally:
        worker.stop()
    assert set(live) == set(expected)
    assert {v["model_version"] for v in live.values()} == {model.version}
    differ = {tx: (v["score"], expected[tx]["score"]) for tx, v in live.items() if abs(v["score"] - expected[tx]["score"]) > 1e-9}
    assert not differ, f"{len(differ)} of {len(nexts)} scores differ from the backtest's: {list(differ.items())[:3]}"
    assert len({round(v["score"], 6) for v in live.values()}) > 5, "the scores tell authorizations apart"
