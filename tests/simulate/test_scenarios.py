"""The named fraud scenarios: each typology leaves the trace the literature describes, hidden in realistic legitimate
traffic, with labels that come only for fraud, never before it, and as late as each kind of victim notices.

Sizes are small (1,000 to 4,000 cards over 30 days, well under a second each) and each is made once per module.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections import Counter, defaultdict
from pathlib import Path
from statistics import median
from typing import Any

import pytest

from fraudstream.cli import main
from fraudstream.config import Settings
from fraudstream.contracts import CARD_NOT_PRESENT, Rejection, decode, decode_authorization, decode_label, encode
from fraudstream.simulate import SCENARIOS, HandbookSimulator, LabelDelays, ScenarioData, make_scenario, produce
from fraudstream.simulate.scenarios import KINDS, LABEL_DELAYS, TYPOLOGIES, YEN_PER_UNIT

from ..conftest import read_topic

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
SECOND_MS = 1000
JST_MS = 9 * HOUR_MS
NAMED = [name for name in SCENARIOS if name != "handbook"]
EVENT_FIELDS = {"tx_id", "card_id", "merchant_id", "amount", "ts", "currency", "mcc", "country", "channel"}
RESALE = {"5732", "5045", "4812", "6540", "5944", "4722", "5818", "5311"}


@functools.cache
def made(name: str, cards: int = 1000, days: int = 30, seed: int = 5) -> ScenarioData:
    return make_scenario(name, cards=cards, days=days, seed=seed)


def yen(event: dict[str, Any]) -> float:
    return event["amount"] * YEN_PER_UNIT[event["currency"]]


def rows(data: ScenarioData, kind: str | None = None, typology: str | None = None) -> list[int]:
    return [i for i in range(len(data.events)) if (kind is None or data.kind[i] == kind) and (typology is None or data.typology[i] == typology)]


def legit_median_yen(data: ScenarioData) -> dict[str, float]:
    """Each card's median legitimate purchase (ATM cash left out), in yen."""
    amounts: dict[str, list[float]] = defaultdict(list)
    for e, fraud in zip(data.events, data.is_fraud, strict=True):
        if not fraud and e["channel"] != "atm":
            amounts[e["card_id"]].append(yen(e))
    return {card: median(a) for card, a in amounts.items()}


def first_fraud_ts(data: ScenarioData, typology: str | None = None) -> dict[str, int]:
    first: dict[str, int] = {}
    for e, t in zip(data.events, data.typology, strict=True):
        if t and (typology is None or t == typology):
            first.setdefault(e["card_id"], e["ts"])
    return first


# --- the API --------------------------------------------------------------------------------------------------------


def test_every_scenario_is_listed_and_unknown_ones_are_refused() -> None:
    assert set(SCENARIOS) == {"handbook", "card-testing", "merchant-breach", "skimming", "account-takeover", "drift", "mixed"}
    assert all(isinstance(text, str) and text for text in SCENARIOS.values())
    with pytest.raises(ValueError, match="unknown scenario"):
        make_scenario("phishing", cards=50, days=2)
    with pytest.raises(ValueError):
        make_scenario("mixed", cards=0, days=2)


def test_same_seed_same_data_other_seed_other_data() -> None:
    a, b = make_scenario("mixed", cards=300, days=20, seed=3), make_scenario("mixed", cards=300, days=20, seed=3)
    assert (a.events, a.labels, a.is_fraud, a.typology, a.kind) == (b.events, b.labels, b.is_fraud, b.typology, b.kind)
    c = make_scenario("mixed", cards=300, days=20, seed=4)
    assert [e["amount"] for e in c.events[:100]] != [e["amount"] for e in a.events[:100]]


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_events_and_labels_pass_the_contract(name: str) -> None:
    data = make_scenario(name, cards=300, days=20, seed=1)
    assert len(data.events) == len(data.is_fraud) == len(data.typology) == len(data.kind) > 0
    assert any(data.is_fraud) and data.labels
    for e in data.events:
        assert not isinstance(decode_authorization(encode(e), e["card_id"].encode()), Rejection), e
        assert set(e) <= EVENT_FIELDS  # no truth on the wire
    for label in data.labels:
        assert not isinstance(decode_label(encode(label), label["card_id"].encode()), Rejection), label
    ts = [e["ts"] for e in data.events]
    assert ts == sorted(ts) and [x["ts"] for x in data.labels] == sorted(x["ts"] for x in data.labels)
    tx_ids = [e["tx_id"] for e in data.events]
    assert tx_ids == sorted(set(tx_ids))  # unique, and in event-time order
    assert [bool(t) for t in data.typology] == data.is_fraud
    if name != "handbook":
        assert set(data.events[0]) == EVENT_FIELDS
        assert {t for t in data.typology if t} <= set(TYPOLOGIES) and {k for k in data.kind if k} <= set(KINDS)
        assert data.start_ms <= ts[0] and ts[-1] < data.start_ms + 20 * DAY_MS


def test_write_jsonl_writes_events_labels_and_truth(tmp_path: Path) -> None:
    data = made("mixed", cards=300, days=20, seed=1)
    assert data.write_jsonl(tmp_path / "out") == (len(data.events), len(data.labels))
    lines = {name: (tmp_path / "out" / f"{name}.jsonl").read_bytes().splitlines() for name in ("events", "labels", "truth")}
    assert lines["events"] == [encode(e) for e in data.events]
    assert [decode(x) for x in lines["labels"]] == data.labels
    truth = [decode(x) for x in lines["truth"]]
    assert [t["tx_id"] for t in truth] == [e["tx_id"] for e in data.events]
    assert [(t["is_fraud"], t["typology"], t["kind"]) for t in truth] == list(zip(data.is_fraud, data.typology, data.kind, strict=True))


def test_handbook_comes_through_the_same_door() -> None:
    data = make_scenario("handbook", cards=100, days=10, seed=2)
    sim = HandbookSimulator(n_customers=100, n_terminals=200, n_days=10, start="2026-01-05", seed=2)
    txs = sim.transactions()
    assert data.events == [a.as_event() for a in sim.authorizations()]
    assert data.labels == LabelDelays(seed=2).labels(sim)
    assert data.is_fraud == txs.is_fraud.tolist()
    names = {0: "", 1: "handbook-amount", 2: "handbook-terminal", 3: "handbook-customer"}
    assert data.typology == [names[s] for s in txs.scenario.tolist()]
    assert data.start_ms == sim.start_ms


# --- the legitimate population ---------------------------------------------------------------------------------------


def test_legitimate_traffic_has_habits_rhythms_and_noise() -> None:
    data = made("mixed")
    legit = [e for e, f in zip(data.events, data.is_fraud, strict=True) if not f]
    n = len(legit)
    channels = Counter(e["channel"] for e in legit)
    assert channels["pos"] / n > 0.55 and 0.15 < channels["ecom"] / n < 0.4 and channels["atm"] / n > 0.005 and channels["moto"] > 0
    assert 0.85 < sum(e["currency"] == "JPY" for e in legit) / n < 0.99  # mostly yen, some abroad
    # Legitimate traffic does what fraud does, now and then: abroad, big tickets, tiny online amounts, online at night.
    assert 0.01 < sum(e["country"] != "JP" for e in legit) / n < 0.15
    assert sum(yen(e) >= 50_000 for e in legit) / n > 0.01
    assert sum(yen(e) <= 300 and e["channel"] in CARD_NOT_PRESENT for e in legit) / n > 0.005
    # Daily rhythm of everyday use (subscriptions are billed by the merchants' night batches).
    jst_hour = Counter((e["ts"] + JST_MS) // HOUR_MS % 24 for e in legit if e["mcc"] not in ("4899", "5968", "4814"))
    assert 0 < jst_hour[3] * 5 < jst_hour[12] and jst_hour[19] * 2 > jst_hour[12]
    assert sum(jst_hour[h] for h in range(0, 6)) / n > 0.02
    # Weekends are busier than midweek: per Saturday against per Tuesday (30 days from Monday 2026-01-05: 4 and 5).
    weekday = Counter(((e["ts"] + JST_MS) // DAY_MS + 3) % 7 for e in legit)
    assert weekday[5] / 4 > 1.1 * weekday[1] / 5
    # Heavy-tailed activity: some cards many times a day, some about weekly.
    per_card = sorted(Counter(e["card_id"] for e in legit).values())
    assert per_card[int(0.95 * len(per_card))] > 8 * per_card[int(0.1 * len(per_card))]
    # Habits: most of a busy card's use is at its three favourite merchants.
    by_card: dict[str, Counter[str]] = defaultdict(Counter)
    for e in legit:
        by_card[e["card_id"]][e["merchant_id"]] += 1
    top3 = [sum(c for _, c in m.most_common(3)) / sum(m.values()) for m in by_card.values() if sum(m.values()) >= 30]
    assert median(top3) > 0.35
    # Cash comes in notes.
    assert all(e["amount"] % 1000 == 0 for e in legit if e["channel"] == "atm" and e["currency"] == "JPY")
    # Monthly subscriptions: the same card, merchant and amount, a month apart.
    longer = made("mixed", cards=300, days=62, seed=1)
    charges: dict[tuple[str, str, float], list[int]] = defaultdict(list)
    for e, f in zip(longer.events, longer.is_fraud, strict=True):
        if not f and e["mcc"] in ("4899", "5968") and e["amount"] > 1:
            charges[(e["card_id"], e["merchant_id"], e["amount"])].append(e["ts"])
    monthly = [ts for ts in charges.values() if len(ts) == 2 and 27 * DAY_MS < ts[1] - ts[0] < 32 * DAY_MS]
    assert len(monthly) > 20


def test_no_single_signal_separates_fraud_from_legitimate_use() -> None:
    data = made("mixed", cards=2000, days=30)
    seen: set[tuple[str, str]] = set()
    signals: dict[str, list[bool]] = defaultdict(list)
    for e in data.events:
        signals["abroad"].append(e["country"] != "JP")
        signals["online"].append(e["channel"] in CARD_NOT_PRESENT)
        signals["tiny"].append(yen(e) <= 300)
        signals["large"].append(yen(e) >= 50_000)
        signals["night"].append((e["ts"] + JST_MS) // HOUR_MS % 24 < 6)
        signals["atm"].append(e["channel"] == "atm")
        signals["new merchant"].append((e["card_id"], e["merchant_id"]) not in seen)
        seen.add((e["card_id"], e["merchant_id"]))
    for name, flags in signals.items():
        flagged = [f for f, x in zip(data.is_fraud, flags, strict=True) if x]
        precision = sum(flagged) / len(flagged)
        recall = len([1 for f, x in zip(data.is_fraud, flags, strict=True) if f and x]) / sum(data.is_fraud)
        assert precision < 0.2, (name, precision, recall)


# --- each typology's trace -----------------------------------------------------------------------------------------


def test_card_testing_probes_many_cards_at_few_merchants_then_cashes_out_elsewhere() -> None:
    data = made("card-testing", cards=2000)
    ev = data.events
    probes = rows(data, kind="card-testing/probe")
    cash = rows(data, kind="card-testing/cash-out")
    assert len(probes) > 40 and len(cash) > 10
    assert all(ev[i]["channel"] in CARD_NOT_PRESENT and yen(ev[i]) <= 301 for i in probes)
    merchants = Counter(ev[i]["merchant_id"] for i in probes)
    assert len(merchants) <= len(probes) / 10
    # Many cards at one merchant within minutes.
    burst = 0
    for m in merchants:
        times = sorted((ev[i]["ts"], ev[i]["card_id"]) for i in probes if ev[i]["merchant_id"] == m)
        for k, (t, _) in enumerate(times):
            burst = max(burst, len({c for u, c in times[k:] if u - t <= 30 * 60_000}))
    assert burst >= 8
    # Cash-outs: large resaleable purchases elsewhere, on probed cards, an hour to days after the probe.
    probed: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for i in probes:
        probed[ev[i]["card_id"]].append((ev[i]["ts"], ev[i]["merchant_id"]))
    for i in cash:
        e = ev[i]
        assert any(HOUR_MS - SECOND_MS <= e["ts"] - t <= 7 * DAY_MS for t, _ in probed[e["card_id"]]), e
        assert e["merchant_id"] not in {m for _, m in probed[e["card_id"]]}
        assert e["channel"] in CARD_NOT_PRESENT and yen(e) >= 7_999 and e["mcc"] in RESALE
    # Probes are tiny next to the card's normal; cash-outs far above it.
    normal = legit_median_yen(data)
    assert median(yen(ev[i]) / normal[ev[i]["card_id"]] for i in cash if ev[i]["card_id"] in normal) > 5


def common_points(data: ScenarioData, typology: str) -> tuple[dict[str, int], dict[str, set[str]], Counter[str]]:
    """Per merchant, the victims that used it before their first fraud, and how many cards used it at all."""
    first = first_fraud_ts(data, typology)
    before: dict[str, set[str]] = defaultdict(set)
    users: dict[str, set[str]] = defaultdict(set)
    for e, f in zip(data.events, data.is_fraud, strict=True):
        if not f:
            users[e["merchant_id"]].add(e["card_id"])
            if e["card_id"] in first and e["ts"] < first[e["card_id"]]:
                before[e["merchant_id"]].add(e["card_id"])
    return first, before, Counter({m: len(c) for m, c in users.items()})


def test_merchant_breach_victims_shared_a_merchant_before_fraud_elsewhere() -> None:
    data = made("merchant-breach", cards=2000)
    ev = data.events
    first, before, users = common_points(data, "merchant-breach")
    assert len(first) >= 10
    # As investigators do: intersect the victims' histories. A 30-day stream has up to two breaches, so one or two
    # merchants were visited by every victim before its fraud, and far more often than by other cards.
    n_cards = len({e["card_id"] for e in ev})

    def lift(m: str) -> float:
        return (len(before[m]) / len(first)) / ((users[m] - len(before[m]) + 1) / (n_cards - len(first)))

    top = sorted(before, key=lambda m: -len(before[m]))[:30]
    covers = [c for k in (1, 2) for c in itertools.combinations(top, k) if len(set().union(*(before[m] for m in c))) == len(first)]
    assert covers
    breached = max((c for c in covers if len(c) == len(covers[0])), key=lambda c: min(map(lift, c)))
    assert min(map(lift, breached)) > 2
    for card, t in first.items():
        visits = [e["ts"] for e in ev if e["card_id"] == card and e["merchant_id"] in breached and e["ts"] < t]
        assert t - min(visits) >= DAY_MS - SECOND_MS  # days to weeks later
    fraud = rows(data, typology="merchant-breach")
    assert all(not f for e, f in zip(ev, data.is_fraud, strict=True) if e["merchant_id"] in breached)  # only legitimate use there
    assert all(ev[i]["channel"] in CARD_NOT_PRESENT for i in fraud)
    assert sum(ev[i]["country"] != "JP" for i in fraud) / len(fraud) > 0.3
    normal = legit_median_yen(data)
    assert median(yen(ev[i]) / normal[ev[i]["card_id"]] for i in fraud if ev[i]["card_id"] in normal) > 3


def test_skimming_drains_cash_at_several_atms_far_from_the_skimmer() -> None:
    data = made("skimming", cards=1500)
    ev = data.events
    fraud = rows(data, typology="skimming")
    cash = [i for i in fraud if ev[i]["channel"] == "atm"]
    assert len(cash) >= 0.5 * len(fraud) and len(cash) > 20
    assert all(ev[i]["mcc"] == "6011" for i in cash)
    assert all(ev[i]["channel"] == "pos" for i in fraud if i not in set(cash))  # the rest: counterfeit card present
    # Near the limit: far above what holders take out.
    legit_cash = [yen(e) for e, f in zip(ev, data.is_fraud, strict=True) if not f and e["channel"] == "atm"]
    assert min(yen(ev[i]) for i in cash) >= 40_000 > median(legit_cash)
    # Every victim used a Japanese ATM or fuel pump that other victims used too, before its first fraud; the
    # counterfeit then goes to ATMs the card had never used.
    first = first_fraud_ts(data, "skimming")
    used_before: dict[str, set[str]] = {}
    for card, t in first.items():
        used_before[card] = {e["merchant_id"] for e in ev if e["card_id"] == card and e["ts"] < t and not data.is_fraud[int(e["tx_id"][3:])]}
    terminals = Counter(m for ms in used_before.values() for m in ms)
    skimmable = {e["merchant_id"] for e in ev if e["country"] == "JP" and (e["channel"] == "atm" or e["mcc"] == "5541")}
    assert all(used_before[card] & skimmable for card in first)
    shared = {m for m in skimmable if terminals[m] >= 2}
    assert sum(bool(used_before[card] & shared) for card in first) / len(first) > 0.8
    assert sum(ev[i]["merchant_id"] not in used_before[ev[i]["card_id"]] for i in cash) / len(cash) > 0.95
    # Crews: several ATMs within hours, many abroad.
    sessions: list[list[int]] = []
    for i in sorted(cash, key=lambda i: ev[i]["ts"]):
        if sessions and ev[i]["ts"] - ev[sessions[-1][-1]]["ts"] < 6 * HOUR_MS and ev[i]["country"] == ev[sessions[-1][0]]["country"]:
            sessions[-1].append(i)
        else:
            sessions.append([i])
    assert all(len({ev[i]["merchant_id"] for i in s}) >= 2 for s in sessions if len(s) >= 4)
    assert any(ev[s[0]]["country"] != "JP" for s in sessions)


def test_account_takeover_breaks_the_cards_habits() -> None:
    data = made("account-takeover", cards=2000)
    ev = data.events
    first = first_fraud_ts(data)
    fraud = rows(data, typology="account-takeover")
    assert len(first) > 10
    history: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e, f in zip(ev, data.is_fraud, strict=True):
        if not f and e["card_id"] in first and e["ts"] < first[e["card_id"]]:
            history[e["card_id"]].append(e)
    assert all(ev[i]["channel"] == "ecom" and ev[i]["mcc"] in RESALE for i in fraud)
    new_merchant = [ev[i]["merchant_id"] not in {h["merchant_id"] for h in history[ev[i]["card_id"]]} for i in fraud]
    assert sum(new_merchant) / len(fraud) > 0.9
    home = {card: Counter(h["country"] for h in hs).most_common(1)[0][0] for card, hs in history.items() if hs}
    assert sum(ev[i]["country"] != home.get(ev[i]["card_id"], "JP") for i in fraud) / len(fraud) > 0.3
    # Cards used mostly in shops suddenly online only: the channel changes.
    assert median(sum(h["channel"] == "pos" for h in hs) / len(hs) for hs in history.values() if hs) > 0.5
    normal = legit_median_yen(data)
    assert median(yen(ev[i]) / normal[ev[i]["card_id"]] for i in fraud if ev[i]["card_id"] in normal) > 5


def test_drift_changes_the_fraud_mid_stream() -> None:
    data = made("drift", cards=2000)
    ev = data.events
    mid = data.start_ms + 15 * DAY_MS
    early = [i for i in rows(data) if data.is_fraud[i] and ev[i]["ts"] < mid]
    late = [i for i in rows(data) if data.is_fraud[i] and ev[i]["ts"] >= mid]
    assert len(early) > 50 and len(late) > 50
    assert {data.typology[i] for i in early} == {"card-testing", "skimming"}
    assert {data.typology[i] for i in late} == {"card-testing", "low-and-slow"}
    # Probes were tiny; once a tiny-amount rule would catch them, they use ordinary amounts.
    assert all(yen(ev[i]) <= 301 for i in early if data.kind[i] == "card-testing/probe")
    assert all(yen(ev[i]) >= 299 for i in late if data.kind[i] == "card-testing/probe")
    # Early fraud is far from the card's normal (tiny or huge); late fraud mostly near it.
    normal = legit_median_yen(data)

    def near(i: int) -> bool:
        return abs(math.log(yen(ev[i]) / normal[ev[i]["card_id"]])) < math.log(2.5)

    early, late = [i for i in early if ev[i]["card_id"] in normal], [i for i in late if ev[i]["card_id"] in normal]
    assert sum(map(near, early)) / len(early) < 0.25
    assert sum(map(near, late)) / len(late) > 0.5
    # At ordinary web shops of the holder's own country.
    home = {c: Counter(e["country"] for e, f in zip(ev, data.is_fraud, strict=True) if not f and e["card_id"] == c).most_common(1)[0][0]
            for c in {ev[i]["card_id"] for i in late} & set(normal)}
    slow = [i for i in rows(data, typology="low-and-slow") if ev[i]["card_id"] in home]
    assert all(ev[i]["channel"] == "ecom" for i in slow)
    assert sum(ev[i]["country"] == home[ev[i]["card_id"]] for i in slow) / len(slow) > 0.9  # (a traveller's "home" is off)


def test_mixed_has_every_typology_at_a_realistic_rate() -> None:
    data = made("mixed", cards=2000)
    assert {t for t in data.typology if t} == set(TYPOLOGIES)
    assert 0.002 <= data.fraud_share <= 0.012


@pytest.mark.parametrize("name", NAMED)
def test_fraud_is_interleaved_with_the_holders_own_use(name: str) -> None:
    data = made(name, cards=2000)
    card_rows: dict[str, list[bool]] = defaultdict(list)
    for e, f in zip(data.events, data.is_fraud, strict=True):
        card_rows[e["card_id"]].append(f)
    victims = [flags for flags in card_rows.values() if any(flags)]
    after = [not all(flags[flags.index(True):]) for flags in victims]
    assert sum(after) / len(victims) > 0.7  # the holder keeps using the card after the fraud starts
    between = [False in flags[flags.index(True): len(flags) - flags[::-1].index(True)] for flags in victims if sum(flags) >= 2]
    assert any(between)


# --- labels --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMED)
def test_labels_only_for_fraud_never_before_it_and_within_each_kinds_delays(name: str) -> None:
    data = made(name)
    by_tx = {e["tx_id"]: i for i, e in enumerate(data.events)}
    fraud_at: dict[tuple[str, int], int] = {(e["card_id"], e["ts"]): i for i, e in enumerate(data.events) if data.is_fraud[i]}
    sources = Counter(label["source"] for label in data.labels)
    assert set(sources) == {"chargeback", "customer_report"}
    for label in data.labels:
        assert label["is_fraud"] is True
        if label["source"] == "chargeback":
            i = by_tx[label["tx_id"]]
            assert data.is_fraud[i] and data.events[i]["card_id"] == label["card_id"]
            lo, hi = LABEL_DELAYS[data.kind[i]].chargeback_delay_days
            assert lo * DAY_MS <= label["ts"] - data.events[i]["ts"] <= hi * DAY_MS
        else:
            # A report's since is the card's first fraud of the incident; it comes after it, as late as that kind.
            i = fraud_at[(label["card_id"], label["since"])]
            lo, hi = LABEL_DELAYS[data.kind[i]].report_delay_hours
            assert lo * HOUR_MS <= label["ts"] - label["since"] <= hi * HOUR_MS


def test_report_delays_follow_how_victims_notice() -> None:
    def delays(name: str) -> list[int]:
        return [x["ts"] - x["since"] for x in made(name).labels if x["source"] == "customer_report"]

    assert max(delays("skimming")) <= 48 * HOUR_MS < min(delays("merchant-breach"))  # cash is missed at once
    # Probes are rarely reported, cash-outs mostly are.
    data = made("card-testing", cards=4000)
    kinds: dict[str, set[str]] = defaultdict(set)
    for e, k in zip(data.events, data.kind, strict=True):
        if k:
            kinds[e["card_id"]].add(k)
    reported = {x["card_id"] for x in data.labels if x["source"] == "customer_report"}
    probed_only = [c for c, k in kinds.items() if k == {"card-testing/probe"}]
    cashed = [c for c, k in kinds.items() if "card-testing/cash-out" in k]
    assert len(probed_only) > 30 and len(cashed) > 20
    assert sum(c in reported for c in probed_only) / len(probed_only) < 0.2
    assert sum(c in reported for c in cashed) / len(cashed) > 0.6
    charged = Counter(data.kind[int(x["tx_id"][3:])] for x in data.labels if x["source"] == "chargeback")
    total = Counter(k for k in data.kind if k)
    assert charged["card-testing/probe"] / total["card-testing/probe"] < 0.2 < 0.6 < charged["card-testing/cash-out"] / total["card-testing/cash-out"]


# --- the command line and Kafka -------------------------------------------------------------------------------------


def test_cli_writes_a_scenario_and_keeps_the_handbook_defaults(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", "--scenario", "skimming", "--customers", "200", "--days", "5", "--seed", "3", "--jsonl", str(tmp_path / "s")]) == 0
    data = make_scenario("skimming", cards=200, days=5, seed=3)
    assert (tmp_path / "s" / "events.jsonl").read_bytes().splitlines() == [encode(e) for e in data.events]
    assert len((tmp_path / "s" / "truth.jsonl").read_bytes().splitlines()) == len(data.events)
    assert "skimming" in capsys.readouterr().out
    # Without --scenario: the Handbook, from its own 2018-04-01.
    assert main(["simulate", "--customers", "20", "--terminals", "40", "--days", "3", "--jsonl", str(tmp_path / "h")]) == 0
    sim = HandbookSimulator(n_customers=20, n_terminals=40, n_days=3, start="2018-04-01")
    assert (tmp_path / "h" / "events.jsonl").read_bytes().splitlines() == [encode(a.as_event()) for a in sim.authorizations()]


@pytest.mark.broker
def test_produce_sends_a_scenario_with_its_own_labels(topics: Settings) -> None:
    data = make_scenario("card-testing", cards=200, days=10, seed=2)
    before = [dict(e) for e in data.events]
    counts = produce(topics, data, start="2026-01-06", reissue_after_days=None)
    assert counts.delivery_errors == counts.undelivered == 0
    assert (counts.events, counts.labels) == (len(data.events), len(data.labels))
    assert data.events == before  # the offset went to the wire, not into the caller's records
    sent = read_topic(topics, topics.topic_authorizations, until=counts.events, timeout=30)
    assert sorted((v for _, v in sent), key=lambda e: e["tx_id"]) == [dict(e, ts=e["ts"] + DAY_MS) for e in data.events]
    assert all(k == v["card_id"].encode() for k, v in sent)
    labels = read_topic(topics, topics.topic_labels, until=counts.labels, timeout=30)
    assert sorted((v["ts"] for _, v in labels)) == [x["ts"] + DAY_MS for x in data.labels]
    with pytest.raises(ValueError, match="own labels"):
        produce(topics, data, LabelDelays())
