"""Offline replay of recorded authorizations and labels through the same core.

Events and labels are merged in event-time order; a label reaches the model
only at its own ``ts``. With ``investigate=K`` a simulated analyst team
checks the top K alerted cards a day and answers a few hours later, with the
truth taken from the labels file.

>>> # fraudstream backtest var/sim/events.jsonl var/sim/labels.jsonl --investigate 100
"""

from __future__ import annotations

import argparse
import gc
import heapq
import os
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from fraudstream.config import Settings
from fraudstream.contracts import Authorization, CardReissue, Label, Rejection, decode_authorization, decode_label, encode
from fraudstream.core.features.card import DAY_MS, HOUR_MS
from fraudstream.core.features.partials import MerchantPartials
from fraudstream.core.model.online import OnlineModel
from fraudstream.core.scorer import FraudScorer
from fraudstream.simulate.reissues import REISSUE_AFTER_DAYS

__all__ = ["Backtest", "BacktestResult", "read_jsonl", "run_backtest_cli", "save_model"]

_EVENT, _LABEL = 1, 0  # at equal ts a label already known is applied first


def read_jsonl(path: str | Path, kind: str) -> tuple[list[Any], list[tuple[int, str]]]:
    """Decode a JSONL file of authorizations or labels; bad lines are reported, not fatal."""
    decoder = decode_authorization if kind == "events" else decode_label
    good: list[Any] = []
    bad: list[tuple[int, str]] = []
    with open(path, "rb") as fh:
        for n, line in enumerate(fh, 1):
            line = line.strip()
            if not line:
                continue
            rec = decoder(line, None, check_key=False)
            if isinstance(rec, Rejection):
                bad.append((n, f"{rec.reason}: {rec.detail}"))
            else:
                good.append(rec)
    return good, bad


@dataclass
class BacktestResult:
    card_id: list[str] = field(default_factory=list)
    ts: list[int] = field(default_factory=list)
    score: list[float] = field(default_factory=list)
    tx_id: list[str] = field(default_factory=list)
    amount: list[float] = field(default_factory=list)
    alerts: int = 0
    dispositions: int = 0
    seconds: float = 0.0


class Backtest:
    """Replays ``events`` and ``labels`` through a :class:`FraudScorer`."""

    def __init__(self, settings: Settings, investigate: int | None = None, investigator_delay_h: float = 3.0,
                 partitions: int = 1, reissue_after_days: float | None = REISSUE_AFTER_DAYS,
                 merchant_partials: bool = True) -> None:
        self.settings = settings
        self.investigate = investigate
        self.reissue_after_days = reissue_after_days
        self.investigator_delay_h = investigator_delay_h
        self.partitions = partitions
        # The worker's merchant features (`fraudstream.core.features.partials`), its cards placed on
        # `settings.partitions` card partitions as the platform's producer places them; or (False) exact, one state
        # per merchant, from every authorization at the merchant (what the worker would compute with no partitions).
        book = MerchantPartials(settings.partitions, grace_ms=settings.grace_ms) if merchant_partials else None
        self.scorer = FraudScorer(settings, partitions=partitions, learn_inline=True, explain=False, merchant_partials=book)
        self.investigated: list[Label] = []  # the analysts' dispositions, as labels

    def run(self, events: list[Authorization], labels: list[Label], scores_out: IO[bytes] | None = None) -> BacktestResult:
        started = time.perf_counter()
        scorer, out = self.scorer, BacktestResult()
        truth = {lb.tx_id: lb.is_fraud for lb in labels if lb.tx_id is not None and lb.is_fraud}
        events = sorted(events, key=lambda a: (a.ts, a.tx_id))
        pending: list[tuple[int, int, Label]] = [(lb.ts, i, lb) for i, lb in enumerate(labels)]
        heapq.heapify(pending)
        seq = len(labels)
        checked: dict[int, set[str]] = {}
        delay_ms = int(self.investigator_delay_h * HOUR_MS)
        reissue_ms = None if self.reissue_after_days is None else int(self.reissue_after_days * DAY_MS)
        reissues: list[tuple[int, str]] = []  # the issuer replaces a card a while after its fraud is confirmed
        scheduled: set[str] = set()
        with _collector_paused():
            for auth in events:
                while pending or reissues:
                    if reissues and reissues[0][0] <= auth.ts and (not pending or reissues[0][0] <= pending[0][0]):
                        ts, card_id = heapq.heappop(reissues)
                        scorer.reissue(CardReissue(card_id, ts))
                        scheduled.discard(card_id)
                    elif pending and pending[0][0] <= auth.ts:
                        label = heapq.heappop(pending)[2]
                        scorer.label(label)
                        if reissue_ms is not None and label.is_fraud and label.card_id not in scheduled:
                            scheduled.add(label.card_id)
                            heapq.heappush(reissues, (label.ts + reissue_ms, label.card_id))
                    else:
                        break
                scored = scorer.process(auth)
                oldest = scorer.pending.oldest()
                if oldest is not None and auth.ts >= oldest:  # the queue holds due times
                    scorer.mature(auth.ts)
                out.card_id.append(auth.card_id)
                out.ts.append(auth.ts)
                out.score.append(scored.score)
                out.tx_id.append(auth.tx_id)
                out.amount.append(auth.amount)
                if scored.decision.action in ("alert", "block"):
                    out.alerts += 1
                    if self.investigate and scored.decision.action == "alert":
                        day = auth.ts // DAY_MS
                        cards = checked.setdefault(day, set())
                        if len(cards) < self.investigate and auth.card_id not in cards:
                            cards.add(auth.card_id)
                            disposition = Label(auth.card_id, truth.get(auth.tx_id, False), auth.ts + delay_ms, "analyst", auth.tx_id)
                            heapq.heappush(pending, (disposition.ts, seq, disposition))
                            self.investigated.append(disposition)
                            seq += 1
                            out.dispositions += 1
                if scores_out is not None:
                    scores_out.write(encode({"tx_id": auth.tx_id, "card_id": auth.card_id, "ts": auth.ts, "score": scored.score,
                                             "model_version": scored.model_version}) + b"\n")
        out.seconds = time.perf_counter() - started
        return out


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector, paused for a replay.

    It would walk every snapshot held, again and again (millions of objects in a year's replay): about a tenth of
    the time. A replay makes no reference cycles to collect: collections of the young generation every 100,000
    authorizations found none in 1.2 million (three scenarios, analysts on) and cost 3% of the time. It runs again
    afterwards.
    """
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def fraud_known_at(labels: Iterable[Label]) -> dict[str, int]:
    """The earliest time a fraud label revealed each card."""
    known: dict[str, int] = {}
    for lb in labels:
        if lb.is_fraud and lb.ts < known.get(lb.card_id, sys.maxsize):
            known[lb.card_id] = lb.ts
    return known


def truth_of(labels: Iterable[Label]) -> dict[str, bool]:
    """tx_id → fraud, as finally known: the latest tx-level label wins."""
    latest: dict[str, tuple[int, bool]] = {}
    for lb in labels:
        if lb.tx_id is not None and lb.ts >= latest.get(lb.tx_id, (-1, False))[0]:
            latest[lb.tx_id] = (lb.ts, lb.is_fraud)
    return {k: v for k, (_, v) in latest.items()}


def _report(result: BacktestResult, labels: list[Label], investigated: list[Label], k: int, days: Any = None) -> Any:
    """Truth from the labels file; a card is known compromised from its first fraud label, analysts' included."""
    from fraudstream.evaluation import evaluate

    truth = truth_of(labels)
    is_fraud = [truth.get(t, False) for t in result.tx_id]
    return evaluate({"card_id": result.card_id, "ts": result.ts, "score": result.score, "is_fraud": is_fraud}, k=k,
                    fraud_known_at=fraud_known_at([*labels, *investigated]), days=days)


def run_backtest_cli(settings: Settings, args: argparse.Namespace) -> int:
    for path in (args.events, args.labels):
        if not Path(path).is_file():
            print(f"fraudstream backtest: no such file: {path}", file=sys.stderr)
            return 2
    if getattr(args, "save_model", None) and Path(args.save_model).is_dir():
        print(f"fraudstream backtest: --save-model {args.save_model} is a directory, not a file", file=sys.stderr)
        return 2
    events, bad_events = read_jsonl(args.events, "events")
    labels, bad_labels = read_jsonl(args.labels, "labels")
    for what, bad in (("events", bad_events), ("labels", bad_labels)):
        for n, why in bad[:10]:
            print(f"skipped {what} line {n}: {why}", file=sys.stderr)
        if len(bad) > 10:
            print(f"... and {len(bad) - 10} more bad {what} lines", file=sys.stderr)
    if not events:
        print("fraudstream backtest: no valid authorization in the events file", file=sys.stderr)
        return 2
    backtest = Backtest(settings, investigate=args.investigate)
    sink = open(args.scores_out, "wb") if args.scores_out else None
    try:
        result = backtest.run(events, labels, sink)
    finally:
        if sink:
            sink.close()
    print(f"replayed {len(events)} authorizations and {len(labels)} labels in {result.seconds:.1f} s "
          f"({len(events) / max(result.seconds, 1e-9):,.0f}/s); {result.alerts} alerts, {result.dispositions} analyst dispositions; "
          f"model {backtest.scorer.model.version}")
    print(_report(result, labels, backtest.investigated, args.k).format_table())
    if getattr(args, "save_model", None):
        save_model(backtest.scorer.model, args.save_model)
        print(f"model {backtest.scorer.model.version} saved to {args.save_model}: `fraudstream model publish "
              f"{args.save_model}` makes every worker start from it")
    return 0


def save_model(model: OnlineModel, path: str | Path) -> None:
    """Write ``model`` as a worker's checkpoint file (``fraudstream.stream.learning.Checkpoint``, the bytes of
    ``STATE_DIR/APP_ID.model``), at training offset 0 and generation 0: it has learned nothing of a deployment's
    training topic. ``fraudstream model publish`` gives it the offset and generation a deployment needs."""
    from fraudstream.stream.learning import Checkpoint

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(Checkpoint.pack(model, 0))
    os.replace(tmp, path)


