"""``make evaluate``: fraudstream against a plain learner and the batch baselines, on every scenario.

A figure alone says little; "against a plain learner on the same stream, with the same labels at the same times"
says something. For each scenario of :mod:`fraudstream.simulate.scenarios`, and for the Fraud Detection
Handbook's own stream and test week:

1. simulate it (seeded) and write it as JSONL, as any recorded stream would be, then read it back;
2. replay it through fraudstream's backtest with the settings in force (the defaults, unless the environment says
   otherwise): the labels a card issuer gets without its own review team, customer reports in days and chargebacks
   in weeks; on the Handbook stream also with analysts answering alerts on ``--investigate`` cards a day, the setting
   of the published comparison;
3. run the reference learner (:mod:`fraudstream.evaluation.reference`) on the same stream;
4. train the Handbook's batch baselines by its protocol (7 training days, 7 delay days, the test week) on the stream's
   latest full week with at least 20 frauds (the Handbook's own test week on its stream);
5. print, per scenario, the whole stream (what a new deployment lives through, its first days included) and the test
   week, where the batch baselines and the published figures stand beside the online learners.

Every learner's alerts come from the same decision policy over its scores (a budget of ``k`` cards a day), so time to
detection and amount prevented compare learners, not policies. Truth is the simulator's.

Run: ``python -m fraudstream.evaluation.compare [--scenarios a,b] [--cards N --days D] [--no-handbook] [--jobs N]``.
The scenarios run side by side, one process each, up to ``--jobs`` at once (the machine's cores): the Handbook's,
the longest, starts first. Each replay's authorizations a second are then measured beside the others'.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import os
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, fields
from multiprocessing import get_context
from typing import Any

from fraudstream.backtest import Backtest, BacktestResult, fraud_known_at, read_jsonl
from fraudstream.config import Settings
from fraudstream.core import CORE_CODE
from fraudstream.evaluation.baselines import PUBLISHED, baseline_reports, protocol_known_cards
from fraudstream.evaluation.metrics import DAY_MS, EvaluationReport, evaluate, format_hours
from fraudstream.evaluation.reference import ReferenceLearner
from fraudstream.simulate.scenarios import SCENARIOS, ScenarioData, make_scenario

__all__ = ["Row", "ScenarioResult", "compare_scenario", "main", "HANDBOOK_TEST_WEEK"]

#: The Handbook's test week (its chapter on the baselines), in its 183 days from 2018-04-01.
HANDBOOK_TEST_WEEK = "2018-08-08"
_BASELINE_NAMES = {"logistic_regression": "logistic regression", "random_forest": "random forest", "xgboost": "XGBoost"}


@dataclass(frozen=True)
class Row:
    """One learner's figures on one span of one stream; nan where a figure does not apply."""

    learner: str
    auc: float
    ap: float
    cp_at_k: float
    card_recall: float
    median_hours_to_detection: float = math.nan
    alerted_share: float = math.nan  # of the compromised cards, those whose first detection was an alert
    prevented_share: float = math.nan
    per_second: float = math.nan  # authorizations replayed a second, learning on

    @classmethod
    def of(cls, learner: str, report: EvaluationReport, per_second: float = math.nan) -> Row:
        return cls(learner, report.auc, report.ap, report.cp_at_k, report.card_recall, report.median_hours_to_detection,
                   report.detection.alerted_share if report.detection else math.nan, report.prevented_share, per_second)


@dataclass
class ScenarioResult:
    name: str
    k: int
    authorizations: int
    fraud_share: float
    whole: list[Row]
    week: list[Row]
    week_days: tuple[str, ...]

    def table(self) -> str:
        head = (f"{'learner':60} {'AUC':>6} {'AP':>6} {f'CP@{self.k}':>7} {f'CR@{self.k}':>7} {'TTD':>8} "
                f"{'alerted':>8} {'prevented':>9} {'auth/s':>8}")
        lines = [f"== {self.name}: {self.authorizations:,} authorizations, {self.fraud_share:.2%} fraud, k = {self.k} cards a day",
                 head, "-" * len(head)]
        for title, rows in (("whole stream", self.whole), (f"test week {self.week_days[0]}..{self.week_days[-1]}", self.week)):
            lines.append(f"  {title}")
            lines += [_format(r) for r in rows]
        lines.append("  CP/CR@k, AUC and AP leave out the cards already known compromised: by the labels each online learner had, by\n"
                     "  the Handbook protocol's rule for the batch baselines and the rows on the protocol's test set (a fraud known 7\n"
                     "  days after it happened: fewer known, more candidates); TTD: median hours from a card's first\n"
                     "  fraud to its first alert or block (never detected counts as late); alerted: cards whose first stop was an alert")
        return "\n".join(lines)


def _format(r: Row) -> str:
    def num(v: float, spec: str) -> str:
        return "–" if math.isnan(v) else format(v, spec)

    ttd = "–" if math.isnan(r.median_hours_to_detection) else format_hours(r.median_hours_to_detection)
    return (f"  {r.learner:58} {num(r.auc, '6.3f'):>6} {num(r.ap, '6.4f'):>6} {num(r.cp_at_k, '7.3f'):>7} "
            f"{num(r.card_recall, '7.3f'):>7} {ttd:>8} {num(r.alerted_share, '8.1%'):>8} {num(r.prevented_share, '9.1%'):>9} "
            f"{num(r.per_second, ',.0f'):>8}")


def _records(result: BacktestResult | Any, is_fraud: Sequence[bool]) -> dict[str, Any]:
    return {"card_id": result.card_id, "ts": result.ts, "score": result.score, "is_fraud": is_fraud, "amount": result.amount}


def _test_week(ts: Sequence[int], is_fraud: Sequence[bool], min_frauds: int = 20) -> tuple[str, ...]:
    """The latest full week with at least ``min_frauds`` frauds (a week without fraud measures nothing), after the
    fortnight the batch baselines train and wait on; the last full week if none has that many."""
    first_day, last_day = ts[0] // DAY_MS + 15, (ts[-1] + 1) // DAY_MS - 1
    per_day: dict[int, int] = {}
    for t, f in zip(ts, is_fraud, strict=True):
        if f:
            per_day[t // DAY_MS] = per_day.get(t // DAY_MS, 0) + 1
    end = last_day
    while end - 6 >= first_day and sum(per_day.get(d, 0) for d in range(end - 6, end + 1)) < min_frauds:
        end -= 1
    if end - 6 < first_day:
        end = last_day
    return tuple((dt.date(1970, 1, 1) + dt.timedelta(days=d)).isoformat() for d in range(max(end - 6, first_day), end + 1))


def compare_scenario(data: ScenarioData, settings: Settings, out_dir: str, k: int, investigate: int | None = None,
                     week: Sequence[str] | None = None, published: bool = False, exact: bool = False) -> ScenarioResult:
    """Replay one scenario through fraudstream, the reference learner and the batch baselines.

    fraudstream's merchant features are the worker's: each card partition's own, exact, plus the others' partials of
    a minute or two before (``fraudstream.core.features.partials``), on ``settings.partitions`` partitions. ``exact``:
    fraudstream once more with one state per merchant, from every authorization at the merchant, for comparison."""
    os.makedirs(out_dir, exist_ok=True)
    data.write_jsonl(out_dir)
    events, _ = read_jsonl(os.path.join(out_dir, "events.jsonl"), "events")
    labels, _ = read_jsonl(os.path.join(out_dir, "labels.jsonl"), "labels")
    truth = dict(zip((e["tx_id"] for e in data.events), data.is_fraud, strict=True))
    week_days = tuple(week or _test_week([e["ts"] for e in data.events], data.is_fraud))

    runs: list[tuple[str, Any, list[Any], float]] = []  # learner, result, labels it had, seconds
    plans: list[tuple[str, int | None, bool]] = [("fraudstream", None, True)]  # learner, analysts, merchant partials
    if exact:
        plans.append(("fraudstream, exact merchant features (one state per merchant)", None, False))
    if investigate:
        plans.append((f"fraudstream + analysts ({investigate} cards/day)", investigate, True))
    for learner, analysts, partials in plans:
        backtest = Backtest(settings, investigate=analysts, merchant_partials=partials)
        result = backtest.run(events, labels)
        runs.append((learner, result, [*labels, *backtest.investigated], result.seconds))
    reference = ReferenceLearner().run(sorted(events, key=lambda a: (a.ts, a.tx_id)), labels)
    runs.append(("reference learner (plain river LR)", reference, labels, reference.seconds))

    whole, in_week = [], []
    for learner, result, known_labels, seconds in runs:
        records = _records(result, [truth[t] for t in result.tx_id])
        known = fraud_known_at(known_labels)
        rate = len(result.tx_id) / seconds if seconds else math.nan
        whole.append(Row.of(learner, evaluate(records, k=k, fraud_known_at=known, alerted="policy"), rate))
        in_week.append(Row.of(learner, evaluate(records, k=k, fraud_known_at=known, days=week_days, alerted="policy")))

    columns = {"tx_id": [e["tx_id"] for e in data.events], "card_id": [e["card_id"] for e in data.events],
               "merchant_id": [e["merchant_id"] for e in data.events], "amount": [e["amount"] for e in data.events],
               "ts": [e["ts"] for e in data.events], "is_fraud": data.is_fraud}
    try:
        baselines = baseline_reports(columns, test_start=week_days[0], k=k)
    except ValueError as exc:  # a small stream's training week can hold one class only
        print(f"{data.name}: no batch baselines ({exc})")
        baselines = {}
    if baselines:
        # The batch baselines' test set (the Handbook protocol's): it keeps the cards an online learner's faster labels
        # already made known, so their rows above are on a harder set. The online learners on that same set:
        protocol_known = protocol_known_cards(columns, test_start=week_days[0])
        for learner, result, _labels, _seconds in runs:
            records = _records(result, [truth[t] for t in result.tx_id])
            in_week.append(Row.of(f"{learner}, protocol's test set",
                                  evaluate(records, k=k, fraud_known_at=protocol_known, days=week_days, alerted="policy")))
    for name, report in baselines.items():
        if name != "random":
            in_week.append(Row.of(f"batch baseline: {_BASELINE_NAMES.get(name, name)} (Handbook protocol)", report))
    if published:
        for name, figures in PUBLISHED.items():
            if name != "random":
                in_week.append(Row(f"published: {name.replace('_', ' ')}", figures["auc"], figures["ap"], figures["cp100"], math.nan))
    return ScenarioResult(data.name, k, len(events), data.fraud_share, whole, in_week, week_days)


def _changed_settings(settings: Settings) -> str:
    changed = [f"{f.metadata['env']}={getattr(settings, f.name)}" for f in fields(settings)
               if getattr(settings, f.name) != f.default and f.name not in ("broker", "embedded_port")]
    return ", ".join(changed) if changed else "defaults"


def main(argv: list[str] | None = None) -> int:
    names = [n for n in SCENARIOS if n != "handbook"]
    p = argparse.ArgumentParser(prog="fraudstream-evaluate", description=__doc__.split("\n")[0])
    p.add_argument("--scenarios", default=",".join(names), help=f"comma-separated, of: {', '.join(names)} (default: all)")
    p.add_argument("--cards", type=int, default=5000, help="cards of each scenario (default: 5000)")
    p.add_argument("--days", type=int, default=60, help="days of each scenario (default: 60)")
    p.add_argument("--k", type=int, default=20, help="cards a day the team reviews, on the scenarios (default: 20)")
    p.add_argument("--seed", type=int, default=0, help="seed of every simulation (default: 0)")
    p.add_argument("--no-handbook", action="store_true", help="skip the Handbook stream (5,000 customers, 183 days: the longest)")
    p.add_argument("--investigate", type=int, default=100, help="analysts' cards a day on the Handbook stream (default: 100)")
    p.add_argument("--exact", action="store_true",
                   help="fraudstream once more with exact merchant features (one state per merchant, as with no partitions)")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                   help="scenarios run at once, each in a process of its own (default: the machine's cores)")
    p.add_argument("--out", default="var/evaluate", help="where the simulated streams are written (default: var/evaluate)")
    args = p.parse_args(argv)
    chosen = [n.strip() for n in args.scenarios.split(",") if n.strip()]
    unknown = sorted(set(chosen) - set(names))
    if unknown:
        p.error(f"unknown scenario(s) {', '.join(unknown)}; choose from {', '.join(names)}")

    settings = Settings.load()
    print(f"fraudstream settings: {_changed_settings(settings)}; model {settings.model}, feedback delay "
          f"{settings.feedback_delay_days:g} days, maturity {settings.maturity_days:g} days; core code {CORE_CODE}\n")
    started = time.perf_counter()
    jobs = [_Job(name, args.cards, args.days, args.seed, args.k, args.out, args.exact) for name in chosen]
    if not args.no_handbook:
        jobs.append(_Job("handbook", 5000, 183, args.seed, 100, args.out, args.exact, args.investigate))
    # Each scenario on a core of its own, the longest (the Handbook's) first; printed in the order above.
    order = sorted(range(len(jobs)), key=lambda i: jobs[i].name != "handbook")
    with ProcessPoolExecutor(max_workers=max(1, min(args.jobs, len(jobs))), mp_context=get_context("fork")) as pool:
        futures = {i: pool.submit(_run, settings, jobs[i]) for i in order}
        for i in range(len(jobs)):
            print(futures[i].result(), "\n", flush=True)
    print(f"evaluated in {time.perf_counter() - started:.0f} s")
    return 0


@dataclass(frozen=True)
class _Job:
    """One scenario of `main`, as a worker process runs it."""

    name: str
    cards: int
    days: int
    seed: int
    k: int
    out: str
    exact: bool
    investigate: int | None = None


def _run(settings: Settings, job: _Job) -> str:
    out_dir = os.path.join(job.out, job.name)
    if job.name != "handbook":
        data = make_scenario(job.name, cards=job.cards, days=job.days, seed=job.seed)
        return compare_scenario(data, settings, out_dir, k=job.k, exact=job.exact).table()
    data = make_scenario("handbook", cards=job.cards, days=job.days, seed=job.seed, start="2018-04-01")
    week = tuple((dt.date.fromisoformat(HANDBOOK_TEST_WEEK) + dt.timedelta(days=i)).isoformat() for i in range(7))
    return compare_scenario(data, settings, out_dir, k=job.k, investigate=job.investigate, week=week, published=True,
                            exact=job.exact).table()


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
