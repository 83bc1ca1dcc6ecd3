"""Named fraud-typology scenarios: realistic issuer traffic with the fraud patterns the literature describes.

Why: the Handbook simulator's fraud is a rule (any amount over 220, every transaction at a few terminals, ×5
amounts), so one feature finds most of it and its AP flatters a model about 10× (see /work/shared/domain.md). Real
fraud leaves a *trace* spread over several features and hidden in legitimate noise: card testing is many tiny
card-not-present authorizations at one merchant, then cash-outs days later; a merchant breach shows only as a
common point of purchase in the victims' past; skimmed cards are cashed out at ATMs far away; an account takeover
breaks the card's own habits. This module builds one legitimate issuer population and lays each typology over it,
each with the label delays its victims really produce, so that the model is measured on traces, not on a rule.

The legitimate population is what makes the traces hard: cards have habitual shops, daily and weekly rhythms,
heavy-tailed activity, monthly subscriptions billed at night, ¥1 card checks at new online shops, tiny in-app
purchases, occasional big-ticket buys and trips abroad (with ATM withdrawals in local currency). So every single
feature (foreign, online, night, tiny, large, new merchant) flags legitimate traffic too.

Conventions: ``ts`` is UTC epoch milliseconds; cardholders live on their home country's time (Japan: UTC+9, so set
``FRAUDSTREAM_TZ_OFFSET_H=9`` for the night and weekend flags) and merchants abroad on theirs. ``amount`` is in the
transaction currency (the merchant's, as in an authorization's transaction-amount field): ``YEN_PER_UNIT`` converts.
A card is ``card-NNNNNN``, a merchant ``mer-NNNNN``, a transaction ``tx-NNNNNNNNNN`` in event-time order.

>>> data = make_scenario("card-testing", cards=200, days=10, seed=1)
>>> len(data.events) == len(data.is_fraud) == len(data.typology)
True
>>> sorted({t for t in data.typology if t})
['card-testing']
>>> all(a["ts"] <= b["ts"] for a, b in zip(data.events, data.events[1:]))
True
>>> {label["source"] for label in data.labels} <= {"chargeback", "customer_report"}
True
"""

from __future__ import annotations

import dataclasses
import gc
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fraudstream.core.features.card import DAY_MS, HOUR_MS, MINUTE_MS
from fraudstream.simulate.handbook import HandbookSimulator, SimulatedTransactions, to_epoch_ms
from fraudstream.simulate.labels import LabelDelays
from fraudstream.simulate.run import _write_lines

__all__ = [
    "KINDS",
    "LABEL_DELAYS",
    "SCENARIOS",
    "TYPOLOGIES",
    "YEN_PER_UNIT",
    "ScenarioData",
    "make_scenario",
]


#: name -> what it simulates. Every name is accepted by :func:`make_scenario` and ``fraudstream simulate --scenario``.
SCENARIOS: dict[str, str] = {
    "handbook": "the Fraud Detection Handbook simulator (large amounts, compromised terminals, compromised customers)",
    "card-testing": "bots probe many cards with tiny online authorizations at one merchant, then cash out big elsewhere",
    "merchant-breach": "card data stolen at one merchant; its customers are defrauded online elsewhere days to weeks later",
    "skimming": "skimmers at ATMs and fuel pumps; counterfeits drain cash at ATMs in another country or region",
    "account-takeover": "a hijacked card suddenly buys resaleable goods online, abroad, far above its habits",
    "drift": "fraud changes mid-stream: testing, cash-outs and skimming, then low-and-slow fraud near the card's normal",
    "mixed": "every typology at once, at realistic rates (about half a percent of authorizations)",
}

#: The per-event ``typology`` values besides "" (legitimate).
TYPOLOGIES = ("card-testing", "merchant-breach", "skimming", "account-takeover", "low-and-slow")

#: Finer than a typology: what each fraudulent authorization is, which decides how its labels come.
KINDS = (
    "card-testing/probe",
    "card-testing/cash-out",
    "merchant-breach",
    "skimming/atm",
    "skimming/purchase",
    "account-takeover",
    "low-and-slow",
)
_PROBE, _CASH_OUT, _BREACH, _SKIM_ATM, _SKIM_PURCHASE, _ATO, _LOW_SLOW = range(len(KINDS))
_LEGIT = -1

#: How each kind of fraud comes to light: customer reports are card-level (one per card and incident, ``since`` its
#: first fraud), chargebacks per transaction (20-60 days, the schemes' dispute window). Why each: beside it.
LABEL_DELAYS: dict[str, LabelDelays] = {
    # A ¥100 probe is seldom noticed and hardly worth a dispute: most probes are never labelled.
    "card-testing/probe": LabelDelays(report_probability=0.05, report_delay_hours=(24, 240), chargeback_probability=0.05),
    # A ¥60,000 purchase the holder never made is noticed at the next app notification or statement check.
    "card-testing/cash-out": LabelDelays(report_probability=0.85, report_delay_hours=(24, 72), chargeback_probability=0.9),
    # Victims of a breach are hit weeks later, online, often in small foreign amounts: many notice late.
    "merchant-breach": LabelDelays(report_probability=0.7, report_delay_hours=(48, 240), chargeback_probability=0.85),
    # Cash gone from the account is noticed within hours; ATM cash is rarely charged back (no merchant to dispute with,
    # only the liability shift against a magnetic-stripe ATM), purchases at non-chip terminals are.
    "skimming/atm": LabelDelays(report_probability=0.9, report_delay_hours=(2, 48), chargeback_probability=0.25),
    "skimming/purchase": LabelDelays(report_probability=0.9, report_delay_hours=(2, 48), chargeback_probability=0.8),
    # The holder sees expensive orders (or the account lock-out) within days.
    "account-takeover": LabelDelays(report_probability=0.8, report_delay_hours=(24, 120), chargeback_probability=0.9),
    # Amounts like the holder's own at ordinary shops: found on the statement, if at all.
    "low-and-slow": LabelDelays(report_probability=0.55, report_delay_hours=(72, 336), chargeback_probability=0.8),
}
_KIND_TYPOLOGY = ("card-testing", "card-testing", "merchant-breach", "skimming", "skimming", "account-takeover", "low-and-slow")
#: A customer reports a card once for one incident: skimmed cash and skimmed purchases are one report.
_REPORT_GROUPS = ((_PROBE,), (_CASH_OUT,), (_BREACH,), (_SKIM_ATM, _SKIM_PURCHASE), (_ATO,), (_LOW_SLOW,))

# --- the world's constants ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Country:
    currency: str
    yen: float  # yen per unit of the currency
    decimals: int  # minor units an amount carries
    tz: int  # hours from UTC where its merchants and residents are
    note: float  # the note an ATM dispenses, in the currency


_COUNTRIES: dict[str, _Country] = {
    "JP": _Country("JPY", 1.0, 0, 9, 1000),
    "US": _Country("USD", 150.0, 2, -5, 20),
    "KR": _Country("KRW", 0.11, 0, 9, 10000),
    "TW": _Country("TWD", 4.7, 0, 8, 100),
    "CN": _Country("CNY", 21.0, 2, 8, 100),
    "HK": _Country("HKD", 19.0, 2, 8, 100),
    "TH": _Country("THB", 4.3, 2, 7, 100),
    "SG": _Country("SGD", 112.0, 2, 8, 10),
    "MY": _Country("MYR", 33.0, 2, 8, 50),
    "PH": _Country("PHP", 2.6, 2, 8, 500),
    "VN": _Country("VND", 0.006, 0, 7, 100000),
    "ID": _Country("IDR", 0.0094, 0, 7, 50000),
    "AU": _Country("AUD", 98.0, 2, 10, 20),
    "GB": _Country("GBP", 190.0, 2, 0, 10),
    "FR": _Country("EUR", 162.0, 2, 1, 10),
    "DE": _Country("EUR", 162.0, 2, 1, 10),
    "IT": _Country("EUR", 162.0, 2, 1, 10),
    "BR": _Country("BRL", 27.0, 2, -3, 20),
    "MX": _Country("MXN", 8.5, 2, -6, 100),
}
_CODES = tuple(_COUNTRIES)
_JP, _US = _CODES.index("JP"), _CODES.index("US")
_C_YEN = np.array([c.yen for c in _COUNTRIES.values()])
_C_DECIMALS = np.array([c.decimals for c in _COUNTRIES.values()])
_C_TZ = np.array([c.tz for c in _COUNTRIES.values()], dtype=np.int64)
_C_NOTE = np.array([c.note for c in _COUNTRIES.values()])

#: Currency -> yen per unit, to compare amounts across currencies.
YEN_PER_UNIT: dict[str, float] = {c.currency: c.yen for c in _COUNTRIES.values()}


def _weights(table: dict[str, float]) -> np.ndarray:
    w = np.zeros(len(_CODES))
    for code, v in table.items():
        w[_CODES.index(code)] = v
    return w / w.sum()


# The issuer is Japanese: most holders live in Japan, a few abroad.
_HOME = _weights({"JP": 0.96, "US": 0.008, "KR": 0.007, "TW": 0.005, "CN": 0.008, "GB": 0.003, "SG": 0.003, "FR": 0.003, "AU": 0.003})
# Where Japanese travellers go (JNTO outbound statistics, roughly).
_TRAVEL = _weights({"KR": 0.2, "TW": 0.14, "US": 0.14, "TH": 0.07, "HK": 0.06, "SG": 0.06, "CN": 0.06, "FR": 0.05, "GB": 0.04,
                    "IT": 0.04, "DE": 0.03, "AU": 0.04, "VN": 0.04, "PH": 0.02, "MY": 0.01, "JP": 0.3})
# Counterfeit magnetic-stripe cards are cashed where stripe fallback still works.
_CASHOUT = _weights({"US": 0.2, "TH": 0.12, "ID": 0.1, "MY": 0.1, "PH": 0.1, "BR": 0.1, "MX": 0.08, "VN": 0.08, "GB": 0.04, "IT": 0.04,
                     "KR": 0.04})
_FOREIGN_SHOPS = _weights({"KR": 0.13, "TW": 0.1, "US": 0.16, "TH": 0.07, "HK": 0.05, "SG": 0.05, "CN": 0.07, "FR": 0.05, "GB": 0.04,
                           "IT": 0.04, "DE": 0.03, "AU": 0.04, "VN": 0.04, "PH": 0.03, "MY": 0.03, "ID": 0.03, "BR": 0.02, "MX": 0.02})
_FOREIGN_WEB = _weights({"US": 0.5, "GB": 0.08, "CN": 0.12, "SG": 0.06, "HK": 0.08, "KR": 0.06, "DE": 0.05, "FR": 0.05})
# Japan's eight regions by population: skimmed cards are also cashed in another region.
_REGIONS = np.array([0.04, 0.07, 0.35, 0.17, 0.18, 0.06, 0.03, 0.10])

POS, ECOM, ATM, MOTO = range(4)
_CHANNELS = ("pos", "ecom", "atm", "moto")

# (mcc, weight, median amount in yen, log-spread). Amount scales from household-survey orders of magnitude.
_POS_MCC = (
    ("5411", 14, 2600, 0.7), ("5499", 12, 650, 0.6), ("5812", 14, 3200, 0.7), ("5814", 7, 850, 0.45), ("5541", 6, 5200, 0.45),
    ("5912", 7, 1900, 0.7), ("5311", 4, 8500, 0.9), ("5651", 6, 6500, 0.8), ("5732", 3, 18000, 1.1), ("5999", 8, 3000, 0.9),
    ("4111", 5, 1200, 0.6), ("5942", 3, 1800, 0.6), ("7011", 3, 22000, 0.7), ("7832", 2, 2000, 0.3), ("5944", 1, 45000, 1.0),
)
_ECOM_MCC = (
    ("5999", 16, 4200, 0.9), ("5732", 6, 22000, 1.0), ("5045", 3, 35000, 0.9), ("5815", 8, 700, 0.8), ("5816", 8, 1200, 1.0),
    ("5818", 4, 1500, 0.9), ("4899", 6, 1200, 0.3), ("5968", 4, 2500, 0.5), ("4814", 4, 7000, 0.4), ("4722", 4, 42000, 0.9),
    ("4511", 3, 38000, 0.8), ("5651", 6, 6000, 0.8), ("5311", 3, 9000, 0.9), ("6540", 2, 8000, 0.8), ("5945", 3, 4000, 0.8),
    ("8398", 1, 3000, 0.8), ("4812", 2, 30000, 0.9), ("5944", 1, 50000, 1.0),
)
_MOTO_MCC = (("5964", 1, 6000, 0.7), ("5969", 1, 4500, 0.7))
_SUBSCRIPTION_MCCS = ("4899", "5968", "4814")
_SUBSCRIPTION_PRICES = {"JPY": (330, 490, 550, 980, 990, 1100, 1490, 1650, 1980, 2189, 2990), "USD": (4.99, 7.99, 9.99, 11.99, 14.99)}
_BIG_TICKET_POS = ("5732", "5944", "5311", "7011")
_BIG_TICKET_WEB = ("5732", "5045", "4722", "4511", "5944")
_TRAVEL_WEB = ("4722", "4511")
# Habits are everyday shops: nobody buys jewellery or flights every week.
_HABIT_POS = tuple(t[0] for t in _POS_MCC if t[0] not in ("5944", "7011", "5732"))
_HABIT_WEB = ("5999", "5815", "5816", "5818", "5651", "5311", "5945")
# Card testers favour small web shops with weak checks: donation forms, digital goods, small marketplaces.
_TESTING_MCCS = ("8398", "5815", "5816", "5818", "5999", "5968")
# What fraudsters resell: electronics, computers, phones, gift cards and stored value, jewellery, travel.
_RESALE_MCCS = ("5732", "5045", "4812", "6540", "5944", "4722")
_BREACH_MCCS = ("5999", "5732", "6540", "5816", "5818", "4722", "5651", "5944", "5045")
_ATO_MCCS = ("5732", "5045", "4812", "6540", "5944", "5818", "5311")
_LOW_SLOW_MCCS = ("5999", "5651", "5815", "5816", "5311", "5945")
_CASH_PURCHASE_MCCS = ("5732", "5944", "5311", "5541", "5999")

# Share of a day's authorizations per local hour: pos peaks at lunch and evening, online later, ATMs in the day.
_HOURS = {
    POS: np.array([0.6, 0.3, 0.2, 0.15, 0.15, 0.3, 0.9, 2.0, 3.2, 3.8, 4.5, 5.2, 6.6, 5.8, 4.9, 4.8, 5.2, 6.2, 6.8, 6.3, 5.0, 3.6, 2.4, 1.3]),
    ECOM: np.array([2.0, 1.2, 0.7, 0.4, 0.3, 0.4, 0.8, 1.6, 2.4, 3.0, 3.4, 3.8, 4.6, 4.2, 3.8, 3.8, 4.0, 4.4, 4.9, 5.5, 6.4, 6.8, 6.0, 3.8]),
    ATM: np.array([0.2, 0.1, 0.05, 0.05, 0.05, 0.1, 0.4, 1.4, 3.0, 4.2, 5.0, 5.4, 6.0, 5.4, 5.0, 4.8, 4.8, 5.0, 4.8, 3.8, 2.8, 2.0, 1.2, 0.6]),
    MOTO: np.array([0.1, 0.05, 0.05, 0.05, 0.05, 0.1, 0.3, 1.0, 3.0, 5.0, 6.0, 6.0, 5.0, 5.5, 6.0, 6.0, 5.5, 5.0, 4.0, 3.0, 2.0, 1.2, 0.6, 0.3]),
}
_HOUR_CDF = {ch: np.cumsum(p) / p.sum() for ch, p in _HOURS.items()}
# Monday .. Sunday: more shopping on weekends.
_WEEKLY = np.array([0.92, 0.92, 0.95, 0.97, 1.08, 1.22, 1.12])

# --- the population -------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _World:
    """Merchants and cards as columns; everything else is drawn from them."""

    days: int
    start_ms: int
    first_weekday: int  # of local day 0, Monday = 0
    day_of_month: np.ndarray  # per local day 0..days
    # merchants
    m_country: np.ndarray
    m_region: np.ndarray  # -1 for online merchants and merchants abroad
    m_channel: np.ndarray
    m_mcc: np.ndarray  # '<U4'
    m_median: np.ndarray  # yen
    m_sigma: np.ndarray
    m_pop: np.ndarray
    m_price: np.ndarray  # subscription price in the merchant's currency, 0 for none
    m_hour: np.ndarray  # when a subscription merchant bills, local hour
    # cards
    c_country: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    c_region: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    c_factor: np.ndarray = field(default_factory=lambda: np.zeros(0))
    c_rate: np.ndarray = field(default_factory=lambda: np.zeros(0))
    c_share: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))  # pos, ecom, atm, moto
    c_loyal: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))  # p(favourite) for pos, ecom, atm
    fav: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)  # channel -> (card × K merchants, count)
    m_number: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # the number in the merchant's id

    @property
    def n_cards(self) -> int:
        return len(self.c_country)

    @property
    def span_ms(self) -> int:
        return self.days * DAY_MS

    def pick(
        self,
        rng: np.random.Generator,
        n: int,
        channel: int,
        *,
        country: int | None = None,
        not_country: int | None = None,
        region: int | None = None,
        not_region: int | None = None,
        mccs: tuple[str, ...] | None = None,
        exclude: np.ndarray | None = None,
        small: bool = False,
        goods_first: bool = False,
    ) -> np.ndarray:
        """``n`` merchants drawn by popularity (``small``: uniformly among the less popular half).

        Conditions are relaxed, finest first, when no merchant meets them all (a small world has few of each kind):
        region, then category (``mccs``), then country; ``goods_first`` keeps the category longest (a fraudster wants
        the goods more than the place).
        """
        if n == 0:
            return np.zeros(0, dtype=np.int64)
        conditions: list[np.ndarray] = [self.m_channel == channel]
        relaxable: list[np.ndarray] = []
        if country is not None:
            relaxable.append(self.m_country == country)
        if not_country is not None:
            relaxable.append(self.m_country != not_country)
        if mccs is not None:
            relaxable.insert(0 if goods_first else len(relaxable), np.isin(self.m_mcc, mccs))
        if region is not None and region >= 0:
            relaxable.append(self.m_region == region)
        if not_region is not None:
            relaxable.append(self.m_region != not_region)
        if exclude is not None and len(exclude):
            conditions.append(~np.isin(np.arange(len(self.m_channel)), exclude))
        idx = np.zeros(0, dtype=np.int64)
        for keep in range(len(relaxable), -1, -1):
            idx = np.flatnonzero(np.logical_and.reduce(conditions + relaxable[:keep]))
            if len(idx):
                break
        if not len(idx):
            idx = np.flatnonzero(self.m_channel == channel)
        if small:
            idx = idx[self.m_pop[idx] <= np.median(self.m_pop[idx])]
            return idx[rng.integers(0, len(idx), size=n)]
        cum = np.cumsum(self.m_pop[idx])
        return idx[np.minimum(np.searchsorted(cum, rng.random(n) * cum[-1], side="right"), len(idx) - 1)]

    def pick_per_row(
        self, rng: np.random.Generator, channel: int, country: np.ndarray, region: np.ndarray | None = None, **kw: Any
    ) -> np.ndarray:
        """One merchant per row, each in its row's country (and region), grouped so each group is one draw."""
        out = np.zeros(len(country), dtype=np.int64)
        reg = np.full(len(country), -1) if region is None else region
        key = country * 16 + (reg + 1)
        for k in np.unique(key):
            rows = np.flatnonzero(key == k)
            c, r = divmod(int(k), 16)
            out[rows] = self.pick(rng, len(rows), channel, country=c, region=r - 1, **kw)
        return out


def _allocate(n: int, weights: np.ndarray, minimum: int) -> np.ndarray:
    """Counts per category summing to ``n``: ``minimum`` each where it fits, the rest by weight (largest remainder)."""
    positive = weights > 0
    base = np.where(positive, min(minimum, n // max(int(positive.sum()), 1)), 0)
    rest = n - int(base.sum())
    share = weights / weights.sum() * rest
    counts = np.floor(share).astype(np.int64)
    order = np.argsort(-(share - counts), kind="stable")
    counts[order[: rest - int(counts.sum())]] += 1
    return base + counts


def _make_merchants(rng: np.random.Generator, n: int) -> dict[str, Any]:
    """Shops in Japan's regions, web shops at home and abroad, ATMs (mcc 6011) and a few mail-order merchants."""
    n_jp_web, n_jp_moto, n_jp_atm = round(0.12 * n), max(2, round(0.01 * n)), round(0.06 * n)
    n_far_pos, n_far_web, n_far_atm = round(0.13 * n), round(0.06 * n), round(0.05 * n)
    n_jp_pos = n - n_jp_web - n_jp_moto - n_jp_atm - n_far_pos - n_far_web - n_far_atm
    countries, regions, channels = [], [], []

    def block(count: int, channel: int, country_counts: np.ndarray | None, region_counts: np.ndarray | None) -> None:
        if country_counts is None:
            countries.append(np.full(count, _JP))
        else:
            countries.append(np.repeat(np.arange(len(_CODES)), country_counts))
        regions.append(np.full(count, -1) if region_counts is None else np.repeat(np.arange(len(_REGIONS)), region_counts))
        channels.append(np.full(count, channel))

    block(n_jp_pos, POS, None, _allocate(n_jp_pos, _REGIONS, 2))
    block(n_jp_web, ECOM, None, None)
    block(n_jp_moto, MOTO, None, None)
    block(n_jp_atm, ATM, None, _allocate(n_jp_atm, _REGIONS, 2))
    block(n_far_pos, POS, _allocate(n_far_pos, _FOREIGN_SHOPS, 2), None)
    block(n_far_web, ECOM, _allocate(n_far_web, _FOREIGN_WEB, 1), None)
    block(n_far_atm, ATM, _allocate(n_far_atm, _FOREIGN_SHOPS, 2), None)
    country, region, channel = np.concatenate(countries), np.concatenate(regions), np.concatenate(channels)

    mcc = np.full(n, "6011", dtype="<U4")
    median, sigma = np.zeros(n), np.zeros(n)
    for ch, table in ((POS, _POS_MCC), (ECOM, _ECOM_MCC), (MOTO, _MOTO_MCC)):
        rows = np.flatnonzero(channel == ch)
        w = np.array([t[1] for t in table], dtype=float)
        pick = rng.choice(len(table), size=len(rows), p=w / w.sum())
        mcc[rows] = np.array([t[0] for t in table])[pick]
        # Each merchant has its own price level around its category's.
        median[rows] = np.array([t[2] for t in table])[pick] * rng.lognormal(0, 0.25, len(rows))
        sigma[rows] = np.array([t[3] for t in table])[pick]
    # Popularity is heavy-tailed: a few chains and marketplaces take most of the traffic.
    pop = rng.lognormal(0, 1.0, n)
    pop[channel == ECOM] = rng.lognormal(0, 1.6, int((channel == ECOM).sum()))
    pop[channel == ATM] = rng.lognormal(0, 0.6, int((channel == ATM).sum()))

    price = np.zeros(n)
    for rows_mask, currency in ((country == _JP, "JPY"), (country != _JP, "USD")):
        rows = np.flatnonzero(rows_mask & np.isin(mcc, ("4899", "5968")))
        price[rows] = rng.choice(np.array(_SUBSCRIPTION_PRICES[currency]), size=len(rows))
    return {"m_country": country, "m_region": region, "m_channel": channel, "m_mcc": mcc, "m_median": median, "m_sigma": sigma,
            "m_pop": pop, "m_price": price, "m_hour": rng.integers(0, 6, n)}


def _make_cards(rng: np.random.Generator, w: _World, n: int) -> None:
    """Cards: a home, a spend level, a heavy-tailed activity rate, channel habits and habitual merchants."""
    w.c_country = rng.choice(len(_CODES), size=n, p=_HOME)
    w.c_region = np.where(w.c_country == _JP, rng.choice(len(_REGIONS), size=n, p=_REGIONS / _REGIONS.sum()), -1)
    w.c_factor = rng.lognormal(0, 0.45, n)
    # Median 0.8 a day: some cards are used many times a day, others about once a week.
    w.c_rate = np.clip(rng.lognormal(np.log(0.8), 1.0, n), 0.07, 25)
    ecom = rng.beta(1.4, 4.2, n)
    atm = np.where(rng.random(n) < 0.45, rng.beta(1.2, 25, n), 0.0)
    moto = np.where(rng.random(n) < 0.05, rng.uniform(0.005, 0.04, n), 0.0)
    w.c_share = np.column_stack([1 - ecom - atm - moto, ecom, atm, moto])
    w.c_loyal = np.column_stack([rng.beta(8, 2.2, n), rng.beta(5, 3, n), np.full(n, 0.9)])
    for channel, k, counts, mccs in (
        (POS, 12, np.clip(2 + rng.poisson(4, n), 2, 12), _HABIT_POS),
        (ECOM, 6, np.clip(1 + rng.poisson(1.5, n), 1, 6), _HABIT_WEB),
        (ATM, 2, 1 + (rng.random(n) < 0.3), None),
    ):
        cards = np.repeat(np.arange(n), k)
        region = w.c_region[cards] if channel != ECOM else None
        merchants = w.pick_per_row(rng, channel, w.c_country[cards], region, mccs=mccs)
        w.fav[channel] = (merchants.reshape(n, k), counts)


def _make_world(rng: np.random.Generator, cards: int, merchants: int, days: int, start_ms: int) -> _World:
    dates = np.datetime64(start_ms, "ms").astype("datetime64[D]") + np.arange(days + 1)
    day_of_month = (dates - dates.astype("datetime64[M]").astype("datetime64[D]")).astype(np.int64) + 1
    w = _World(days=days, start_ms=start_ms, first_weekday=int((start_ms // DAY_MS + 3) % 7), day_of_month=day_of_month,
               **_make_merchants(rng, merchants))
    _make_cards(rng, w, cards)
    # Merchants are made in blocks (shops, web shops, ATMs, abroad): shuffled ids do not tell which block.
    w.m_number = rng.permutation(merchants)
    return w


# --- rows -----------------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Rows:
    """Authorizations as columns. ``amount`` is in the merchant's currency; ``t`` is ms since the start (UTC)."""

    card: np.ndarray
    merchant: np.ndarray
    amount: np.ndarray
    t: np.ndarray
    kind: np.ndarray  # index into KINDS, -1 legitimate

    @classmethod
    def empty(cls) -> _Rows:
        z = np.zeros(0, dtype=np.int64)
        return cls(z, z, np.zeros(0), z, z)

    @classmethod
    def of(cls, card: np.ndarray, merchant: np.ndarray, amount: np.ndarray, t: np.ndarray, kind: int | np.ndarray) -> _Rows:
        kinds = np.broadcast_to(np.asarray(kind, dtype=np.int64), card.shape).copy()
        return cls(card.astype(np.int64), merchant.astype(np.int64), amount.astype(float), t.astype(np.int64), kinds)

    @classmethod
    def concat(cls, parts: list[_Rows]) -> _Rows:
        parts = [p for p in parts if len(p.card)] or [cls.empty()]
        return cls(*(np.concatenate([getattr(p, f.name) for p in parts]) for f in dataclasses.fields(cls)))

    def where(self, keep: np.ndarray) -> _Rows:
        return _Rows(self.card[keep], self.merchant[keep], self.amount[keep], self.t[keep], self.kind[keep])


def _local_amount(w: _World, yen: np.ndarray, merchant: np.ndarray) -> np.ndarray:
    """Yen to the merchant's currency, rounded to its minor unit; never nothing."""
    country = w.m_country[merchant]
    value = yen / _C_YEN[country]
    whole = _C_DECIMALS[country] == 0
    out = np.where(whole, np.round(value), np.round(value, 2))
    return np.maximum(out, np.where(whole, 1.0, 0.01))


def _atm_amount(w: _World, yen: np.ndarray, merchant: np.ndarray, up: bool = False) -> np.ndarray:
    """Cash in whole notes of the ATM's currency (rounded down when ``up`` is False: a limit is not exceeded)."""
    note = _C_NOTE[w.m_country[merchant]]
    units = yen / _C_YEN[w.m_country[merchant]] / note
    return np.maximum(np.ceil(units) if up else np.floor(units), 1) * note


def _purchase_amount(rng: np.random.Generator, w: _World, card: np.ndarray, merchant: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """The merchant's price level × the card's spend level × lognormal noise of the category."""
    yen = w.m_median[merchant] * w.c_factor[card] * scale * np.exp(w.m_sigma[merchant] * rng.standard_normal(len(card)))
    return _local_amount(w, yen, merchant)


def _seconds(rng: np.random.Generator, channel: int | np.ndarray, n: int) -> np.ndarray:
    """Seconds into the local day, by the channel's hourly rhythm."""
    channels = np.broadcast_to(np.asarray(channel), (n,))
    hour = np.zeros(n, dtype=np.int64)
    u = rng.random(n)
    for ch, cdf in _HOUR_CDF.items():
        rows = channels == ch
        hour[rows] = np.minimum(np.searchsorted(cdf, u[rows], side="right"), 23)
    return hour * 3600 + rng.integers(0, 3600, n)


def _on_local_day(rng: np.random.Generator, t: np.ndarray, tz: np.ndarray, channel: int) -> np.ndarray:
    """Move each time to the channel's rhythm on the same local day (fraudsters keep their own hours too)."""
    day = (t + tz * HOUR_MS) // DAY_MS
    return day * DAY_MS + _seconds(rng, channel, len(t)) * 1000 - tz * HOUR_MS


# --- legitimate traffic -----------------------------------------------------------------------------------------------


def _everyday(rng: np.random.Generator, w: _World) -> tuple[_Rows, np.ndarray, np.ndarray]:
    """Day-to-day use: returns the rows, their channel, and whether an online row is at a merchant new to the card."""
    n, nd = w.n_cards, w.days + 1
    week = _WEEKLY[(w.first_weekday + np.arange(nd)) % 7]
    payday = np.where((w.day_of_month >= 25) & (w.day_of_month <= 28), 1.12, 1.0)  # salaries are paid on the 25th
    # A gamma factor per card-day: people have shopping days and quiet days.
    lam = w.c_rate[:, None] * (week * payday)[None, :] * rng.gamma(3.0, 1 / 3, size=(n, nd))
    cell = np.repeat(np.arange(n * nd), rng.poisson(lam).ravel())
    card, day = np.divmod(cell, nd)
    cum = np.cumsum(w.c_share, axis=1)[card]
    channel = (rng.random(len(card))[:, None] >= cum[:, :3]).sum(axis=1)
    t = day * DAY_MS + _seconds(rng, channel, len(card)) * 1000 - _C_TZ[w.c_country[card]] * HOUR_MS

    merchant = np.zeros(len(card), dtype=np.int64)
    new_web = np.zeros(len(card), dtype=bool)
    for ch in (POS, ECOM, ATM):
        rows = np.flatnonzero(channel == ch)
        favs, counts = w.fav[ch]
        loyal = rng.random(len(rows)) < w.c_loyal[card[rows], min(ch, 2)]
        # Zipf-like: the first favourite is used most.
        k = np.floor(counts[card[rows]] * rng.random(len(rows)) ** 1.7).astype(np.int64)
        merchant[rows[loyal]] = favs[card[rows[loyal]], k[loyal]]
        new = rows[~loyal]
        if ch == ECOM:
            new_web[new] = True
            # Most new web shops are domestic; some are abroad (and bill in their currency).
            abroad = rng.random(len(new)) < 0.15
            merchant[new[~abroad]] = w.pick_per_row(rng, ECOM, w.c_country[card[new[~abroad]]])
            merchant[new[abroad]] = w.pick(rng, int(abroad.sum()), ECOM, not_country=_JP)
        else:
            # Mostly near home; sometimes elsewhere in the country (commutes, domestic trips).
            far = rng.random(len(new)) < 0.15
            region = np.where(far, -1, w.c_region[card[new]])
            merchant[new] = w.pick_per_row(rng, ch, w.c_country[card[new]], region)
    moto = np.flatnonzero(channel == MOTO)
    merchant[moto] = w.pick_per_row(rng, MOTO, w.c_country[card[moto]])

    amount = _purchase_amount(rng, w, card, merchant)
    atm = channel == ATM
    # Round withdrawals, mostly ¥10,000s.
    yen = rng.choice(np.array([10000, 20000, 30000, 50000, 5000, 40000, 100000]), size=int(atm.sum()),
                     p=[0.34, 0.22, 0.12, 0.12, 0.1, 0.05, 0.05])
    amount[atm] = _atm_amount(w, yen, merchant[atm], up=True)
    return _Rows.of(card, merchant, amount, t, _LEGIT), channel, new_web


def _big_tickets(rng: np.random.Generator, w: _World, rows: _Rows, channel: np.ndarray) -> None:
    """Now and then a legitimate card buys something expensive at a shop it never used: a TV, a ring, a flight."""
    for ch, mccs in ((POS, _BIG_TICKET_POS), (ECOM, _BIG_TICKET_WEB)):
        hit = np.flatnonzero((channel == ch) & (rng.random(len(channel)) < 0.005))
        card = rows.card[hit]
        region = w.c_region[card] if ch == POS else None
        rows.merchant[hit] = w.pick_per_row(rng, ch, w.c_country[card], region, mccs=mccs)
        yen = np.clip(rng.lognormal(np.log(60000), 0.7, len(hit)), 15000, 1_000_000)
        rows.amount[hit] = _local_amount(w, yen, rows.merchant[hit])


def _trips(rng: np.random.Generator, w: _World, rows: _Rows, channel: np.ndarray) -> _Rows:
    """Holidays abroad: card-present use moves to the destination's shops and ATMs, in its currency and time zone.

    Online habits continue from abroad; most trips are booked online weeks before. Returns the bookings.
    """
    n = w.n_cards
    travels = rng.random(n) < 1 - np.exp(-0.5 * w.days / 365)  # about one trip in two years
    dest_p = np.tile(_TRAVEL, (n, 1))
    dest_p[np.arange(n), w.c_country] = 0  # abroad means not home
    dest_p /= dest_p.sum(axis=1, keepdims=True)
    dest = (rng.random(n)[:, None] >= np.cumsum(dest_p, axis=1)).sum(axis=1)
    dest = np.minimum(dest, len(_CODES) - 1)
    first = rng.integers(0, w.days, n)
    length = rng.integers(3, 11, n)
    day = (rows.t + _C_TZ[w.c_country[rows.card]] * HOUR_MS) // DAY_MS
    c = rows.card
    away = np.flatnonzero(travels[c] & (day >= first[c]) & (day < first[c] + length[c]) & ((channel == POS) | (channel == ATM)))
    for ch in (POS, ATM):
        sub = away[channel[away] == ch]
        rows.merchant[sub] = w.pick_per_row(rng, ch, dest[rows.card[sub]])
        if ch == POS:
            rows.amount[sub] = _purchase_amount(rng, w, rows.card[sub], rows.merchant[sub], scale=1.3)
        else:
            yen = rng.choice(np.array([10000, 20000, 30000, 50000]), size=len(sub))
            rows.amount[sub] = _atm_amount(w, yen, rows.merchant[sub], up=True)
        local = rows.t[sub] + _C_TZ[w.c_country[rows.card[sub]]] * HOUR_MS
        rows.t[sub] = local - _C_TZ[dest[rows.card[sub]]] * HOUR_MS
    booked = np.flatnonzero(travels & (rng.random(n) < 0.7))
    when = first[booked] - rng.integers(7, 46, len(booked))
    booked, when = booked[when >= 0], when[when >= 0]
    merchant = w.pick_per_row(rng, ECOM, np.where(rng.random(len(booked)) < 0.75, w.c_country[booked], _US), mccs=_TRAVEL_WEB)
    t = when * DAY_MS + _seconds(rng, ECOM, len(booked)) * 1000 - _C_TZ[w.c_country[booked]] * HOUR_MS
    amount = _local_amount(w, np.clip(rng.lognormal(np.log(90000), 0.6, len(booked)), 20000, 800000), merchant)
    return _Rows.of(booked, merchant, amount, t, _LEGIT)


def _card_checks(rng: np.random.Generator, rows: _Rows, new_web: np.ndarray) -> _Rows:
    """A new web shop often checks a card with a ¥1 (or 1-unit) authorization just before the first order."""
    hit = np.flatnonzero(new_web & (rng.random(len(new_web)) < 0.06))
    t = rows.t[hit] - rng.integers(5_000, 120_000, len(hit))
    return _Rows.of(rows.card[hit], rows.merchant[hit], np.ones(len(hit)), t, _LEGIT)


def _subscriptions(rng: np.random.Generator, w: _World) -> _Rows:
    """Streaming, memberships and phone bills: the same shop each month, on the same day, billed at night."""
    n = w.n_cards
    per_card = np.minimum(rng.poisson(1.0, n), 4)
    card = np.repeat(np.arange(n), per_card)
    abroad = rng.random(len(card)) < 0.15
    merchant = np.where(abroad, w.pick(rng, len(card), ECOM, not_country=_JP, mccs=_SUBSCRIPTION_MCCS),
                        w.pick_per_row(rng, ECOM, w.c_country[card], mccs=_SUBSCRIPTION_MCCS))
    # One subscription per service and card.
    _, once = np.unique(card * len(w.m_channel) + merchant, return_index=True)
    card, merchant = card[np.sort(once)], merchant[np.sort(once)]
    bill_day = rng.integers(1, 29, len(card))
    base = _purchase_amount(rng, w, card, merchant)  # phone bills vary with the card; fixed prices do not
    price = np.where(w.m_price[merchant] > 0, w.m_price[merchant], base)
    parts = []
    for dom in range(1, 29):
        days = np.flatnonzero(w.day_of_month == dom)
        subs = np.flatnonzero(bill_day == dom)
        if not len(days) or not len(subs):
            continue
        s, d = np.repeat(subs, len(days)), np.tile(days, len(subs))
        m = merchant[s]
        seconds = w.m_hour[m] * 3600 + rng.integers(0, 3600, len(s))
        t = d * DAY_MS + seconds * 1000 - _C_TZ[w.m_country[m]] * HOUR_MS
        amount = np.where(w.m_price[m] > 0, price[s], _local_amount(w, price[s] * _C_YEN[w.m_country[m]] * rng.lognormal(0, 0.1, len(s)), m))
        parts.append(_Rows.of(card[s], m, amount, t, _LEGIT))
    return _Rows.concat(parts)


def _legit(rng: np.random.Generator, w: _World) -> _Rows:
    rows, channel, new_web = _everyday(rng, w)
    _big_tickets(rng, w, rows, channel)
    bookings = _trips(rng, w, rows, channel)
    return _Rows.concat([rows, bookings, _card_checks(rng, rows, new_web), _subscriptions(rng, w)])


# --- fraud typologies -----------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Ctx:
    rng: np.random.Generator
    world: _World
    legit: _Rows

    def months(self, lo: int, hi: int) -> float:
        return (hi - lo) / (30 * DAY_MS)

    @property
    def portfolio(self) -> float:
        """Cards relative to the default 5,000: how many of our cards a fraud wave reaches scales with it."""
        return self.world.n_cards / 5000

    def visitors(self, merchant: int, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
        """Cards that used ``merchant`` in [lo, hi), with the time of their first visit there."""
        rows = np.flatnonzero((self.legit.merchant == merchant) & (self.legit.t >= lo) & (self.legit.t < hi))
        order = np.lexsort((self.legit.t[rows], self.legit.card[rows]))
        cards, first = np.unique(self.legit.card[rows][order], return_index=True)
        return cards, self.legit.t[rows][order][first]

    def busy(self, candidates: np.ndarray, lo: int, hi: int, top: float = 0.1, giants: float = 0.0) -> np.ndarray:
        """The busiest ``top`` share of the candidate merchants in [lo, hi), less the ``giants`` share at the very top:
        thieves go where the cards are, and breaches hit mid-sized shops more than the giants' hardened systems."""
        inside = (self.legit.t >= lo) & (self.legit.t < hi)
        counts = np.bincount(self.legit.merchant[inside], minlength=len(self.world.m_channel))[candidates]
        if not len(candidates) or counts.max() == 0:
            return candidates[:0]
        keep = (counts >= max(np.quantile(counts, 1 - top), 1)) & (counts <= np.quantile(counts, 1 - giants))
        return candidates[keep]

    def normal_yen(self) -> np.ndarray:
        """Each card's median purchase at home, in yen (for fraud that imitates it)."""
        w, lg = self.world, self.legit
        home = (w.m_country[lg.merchant] == w.c_country[lg.card]) & (w.m_channel[lg.merchant] != ATM) & (lg.kind == _LEGIT)
        card, amount = lg.card[home], lg.amount[home] * _C_YEN[w.c_country[lg.card[home]]]
        order = np.lexsort((amount, card))
        counts = np.bincount(card, minlength=w.n_cards)
        starts = np.cumsum(counts) - counts
        has = counts > 0
        median = np.zeros(w.n_cards)
        median[has] = amount[order][starts[has] + counts[has] // 2]
        return np.where(has, median, 3000 * w.c_factor)


def _count(rng: np.random.Generator, expected: float) -> int:
    """How many incidents: the expected number ±20%, at least one. A scenario promises its typology; a Poisson draw
    would leave a small or short one with almost none."""
    return max(1, round(expected * rng.uniform(0.8, 1.2)))


def _sessions(rng: np.random.Generator, start: np.ndarray, sizes: np.ndarray, gap_ms: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """``sizes[i]`` events from ``start[i]``, ``gap_ms`` apart: returns (owner index, time) per event, by owner."""
    owner = np.repeat(np.arange(len(start)), sizes)
    if not len(owner):
        return owner, np.zeros(0, dtype=np.int64)
    gaps = rng.integers(gap_ms[0], gap_ms[1] + 1, len(owner))
    first = np.cumsum(sizes) - sizes  # each owner's first event
    gaps[first[sizes > 0]] = 0
    cum = np.cumsum(gaps)
    return owner, start[owner] + cum - cum[first[owner]]


def _card_testing(ctx: _Ctx, lo: int, hi: int, intensity: float, adapted: bool = False) -> _Rows:
    """Enumeration: a bot probes many cards with tiny web authorizations at one weak merchant within minutes; cards
    that pass are cashed out hours to days later with large purchases of resaleable goods at other web shops.

    ``adapted``: after a tiny-amount rule starts, testers probe with ordinary amounts, spread over hours, at more
    merchants with fewer cards each (the drift scenario's second half).
    """
    rng, w = ctx.rng, ctx.world
    n_attacks = _count(rng, 10 * intensity * ctx.months(lo, hi) * (1.6 if adapted else 1))
    parts, merchant = [], -1
    for _ in range(n_attacks):
        # Weak merchants get hit again and again until they add checks.
        if merchant < 0 or rng.random() > 0.3 or adapted:
            country = _JP if rng.random() < 0.5 else None
            merchant = int(w.pick(rng, 1, ECOM, country=country, not_country=None if country is not None else _JP,
                                  mccs=_TESTING_MCCS, small=True)[0])
        size = int(np.clip(round(rng.lognormal(np.log(40), 0.6) * ctx.portfolio / (3 if adapted else 1)), 4, w.n_cards // 5))
        cards = rng.choice(w.n_cards, size=size, replace=False)
        probes = rng.choice(np.array([1, 2, 3, 4, 6, 8]), size=size, p=[0.7, 0.15, 0.1, 0.02, 0.02, 0.01])
        if adapted:
            probes[:] = 1
        # Cards arrive one after another (a bot: seconds apart; adapted: minutes), each probed a few times.
        gap = rng.uniform(120, 900) if adapted else rng.uniform(5, 40)
        arrive = int(rng.integers(lo, hi)) + np.cumsum(rng.exponential(gap * 1000, size)).astype(np.int64)
        owner, t = _sessions(rng, arrive, probes, (3_000, 60_000))
        if adapted:
            yen = np.clip(rng.lognormal(np.log(1500), 0.5, len(owner)), 300, 6000)
        else:
            yen = np.where(rng.random(len(owner)) < 0.5, rng.choice(np.array([1, 10, 50, 100, 110, 150, 200, 220, 300]), len(owner)),
                           rng.integers(1, 301, len(owner)))
        m = np.full(len(owner), merchant)
        parts.append(_Rows.of(cards[owner], m, _local_amount(w, yen.astype(float), m), t, _PROBE))
        parts.append(_cash_out(ctx, cards, t[np.cumsum(probes) - 1], merchant, 0.3 if adapted else 0.4))
    rows = _Rows.concat(parts)
    return rows.where((rows.t >= lo) & (rows.t < hi))


def _cash_out(ctx: _Ctx, cards: np.ndarray, tested: np.ndarray, tester: int, share: float) -> _Rows:
    """Passing cards are sold on and cashed out: 1-4 large web purchases within hours, after 1 hour to 6 days."""
    rng, w = ctx.rng, ctx.world
    chosen = np.flatnonzero(rng.random(len(cards)) < share)
    start = tested[chosen] + np.clip(rng.lognormal(np.log(20 * HOUR_MS), 0.9, len(chosen)), HOUR_MS, 6 * DAY_MS).astype(np.int64)
    sizes = rng.choice(np.array([1, 2, 3, 4]), size=len(chosen), p=[0.4, 0.3, 0.2, 0.1])
    owner, t = _sessions(rng, start, sizes, (2 * MINUTE_MS, 40 * MINUTE_MS))
    card = cards[chosen][owner]
    abroad = rng.random(len(card)) < 0.4
    merchant = np.where(abroad, w.pick(rng, len(card), ECOM, not_country=_JP, mccs=_RESALE_MCCS, exclude=np.array([tester])),
                        w.pick(rng, len(card), ECOM, country=_JP, mccs=_RESALE_MCCS, exclude=np.array([tester])))
    yen = np.clip(rng.lognormal(np.log(60000), 0.7, len(card)), 8000, 400000)
    return _Rows.of(card, merchant, _local_amount(w, yen, merchant), t, _CASH_OUT)


def _merchant_breach(ctx: _Ctx, lo: int, hi: int, intensity: float) -> _Rows:
    """Common point of purchase: a web shop (script skimming) or a shop's tills (malware) leak the data of every card
    used there during the breach; the data is sold in batches and a share of those cards is defrauded online,
    often abroad and for more than the holder spends, days to weeks later. The breached merchants see no fraud."""
    rng, w = ctx.rng, ctx.world
    room = hi - lo
    breaches: list[tuple[int, int, int]] = []
    for _ in range(max(1, round(2 * intensity * ctx.months(lo, hi)))):
        w_lo = lo + int(rng.uniform(0, 0.35) * room)
        w_hi = w_lo + int(min(rng.uniform(7, 25) * DAY_MS, 0.3 * room))
        channel = ECOM if rng.random() < 0.65 else POS
        taken = [b[0] for b in breaches]
        candidates = np.flatnonzero((w.m_channel == channel) & (w.m_country == _JP) & ~np.isin(np.arange(len(w.m_channel)), taken))
        # Most breaches in Japan are small and mid-sized web shops (unpatched shop software), not the marketplaces.
        busy = ctx.busy(candidates, w_lo, w_hi, top=0.1, giants=0.02)
        if len(busy):
            breaches.append((int(rng.choice(busy)), w_lo, w_hi))
    breached = np.array([b[0] for b in breaches], dtype=np.int64)
    rows = _Rows.concat([_breach_victims(ctx, m, w_lo, w_hi, room, breached) for m, w_lo, w_hi in breaches])
    return rows.where((rows.t >= lo) & (rows.t < hi))


def _breach_victims(ctx: _Ctx, merchant: int, w_lo: int, w_hi: int, room: int, breached: np.ndarray) -> _Rows:
    """The fraud on one breach's cards: sold in batches after the breach, used online elsewhere."""
    rng, w = ctx.rng, ctx.world
    cards, _ = ctx.visitors(merchant, w_lo, w_hi)
    used = rng.random(len(cards)) < rng.uniform(0.5, 0.8)  # not every stolen card is sold and used
    if not used.any() and len(cards):
        used[rng.integers(len(cards))] = True
    cards = cards[used]
    # Batches ("drops") go on sale a day to weeks after the breach; each buyer starts within days of buying.
    drops = w_hi + DAY_MS + np.sort(rng.uniform(0, 20, rng.integers(2, 4))) * min(DAY_MS, 0.25 * room / 20)
    drop = drops[rng.integers(0, len(drops), len(cards))].astype(np.int64)
    start = drop + rng.exponential(2 * DAY_MS, len(cards)).astype(np.int64)
    sizes = rng.choice(np.arange(1, 7), size=len(cards), p=[0.3, 0.25, 0.18, 0.12, 0.09, 0.06])
    owner, t = _sessions(rng, start, sizes, (10 * MINUTE_MS, 30 * HOUR_MS))
    card = cards[owner]
    abroad = rng.random(len(card)) < 0.55
    shop = np.where(abroad, w.pick(rng, len(card), ECOM, not_country=_JP, mccs=_BREACH_MCCS, exclude=breached),
                    w.pick(rng, len(card), ECOM, country=_JP, mccs=_BREACH_MCCS, exclude=breached))
    t = np.maximum(_on_local_day(rng, t, _C_TZ[w.m_country[shop]], ECOM), drop[owner])
    yen = np.clip(rng.lognormal(np.log(25000), 0.8, len(card)), 3000, 300000)
    # Some buyers check a card first with a tiny authorization.
    checked = np.flatnonzero(rng.random(len(cards)) < 0.2)
    tester = w.pick(rng, len(checked), ECOM, mccs=_TESTING_MCCS, exclude=breached, small=True)
    t_check = np.maximum(start[checked] - rng.integers(10 * MINUTE_MS, 12 * HOUR_MS, len(checked)), drop[checked])
    tiny = _local_amount(w, rng.integers(1, 301, len(checked)).astype(float), tester)
    return _Rows.concat([_Rows.of(card, shop, _local_amount(w, yen, shop), t, _BREACH),
                         _Rows.of(cards[checked], tester, tiny, t_check, _BREACH)])


def _skimming(ctx: _Ctx, lo: int, hi: int, intensity: float) -> _Rows:
    """Skimmers on ATMs and fuel pumps copy the stripe of every card used there for days; crews then cash the
    counterfeits abroad (or in another region) in one go: several ATMs within hours, near the withdrawal limit,
    some around local midnight to use two days' limits, plus a few card-present purchases."""
    rng, w = ctx.rng, ctx.world
    parts, used_terminals = [], np.zeros(0, dtype=np.int64)
    room = hi - lo
    for _ in range(max(1, round(3 * intensity * ctx.months(lo, hi)))):
        # Skimmers stay days before a check finds them; crews cash within days, inside the scenario's window.
        length = int(min(rng.uniform(3, 12) * DAY_MS, 0.25 * room))
        delay = int(min(rng.uniform(1, 10) * DAY_MS, 0.2 * room))
        w_lo = lo + int(rng.uniform(0, 1) * max(room - length - delay - DAY_MS, 0))
        w_hi = w_lo + length
        at_atm = rng.random() < 0.6
        candidates = np.flatnonzero((w.m_country == _JP) & ((w.m_channel == ATM) if at_atm else (w.m_mcc == "5541"))
                                    & ~np.isin(np.arange(len(w.m_channel)), used_terminals))
        busy = ctx.busy(candidates, w_lo, w_hi)
        if not len(busy):
            continue
        terminal = int(rng.choice(busy))
        used_terminals = np.append(used_terminals, terminal)
        cards, _ = ctx.visitors(terminal, w_lo, w_hi)
        cards = cards[rng.random(len(cards)) < 0.85]  # a skimmer misreads some stripes
        if not len(cards):
            continue
        n_sessions = min(3, 1 + len(cards) // 20)
        session_of = rng.integers(0, n_sessions, len(cards))
        for s in range(n_sessions):
            mine = cards[session_of == s]
            if len(mine):
                parts.append(_cash_session(ctx, mine, w_hi + int(rng.uniform(0.1, 1) * delay), int(w.m_region[terminal])))
    rows = _Rows.concat(parts)
    return rows.where((rows.t >= lo) & (rows.t < hi))


def _cash_session(ctx: _Ctx, cards: np.ndarray, day_t: int, skim_region: int) -> _Rows:
    """One crew, one place, one night: each card withdrawn 1-4 times at a handful of ATMs, then some purchases."""
    rng, w = ctx.rng, ctx.world
    if rng.random() < 0.7:
        country, region = int(rng.choice(len(_CODES), p=_CASHOUT)), -1
    else:
        country = _JP
        region = int(rng.choice(np.delete(np.arange(len(_REGIONS)), max(skim_region, 0))))
    # A handful of different ATMs close to each other (mules move on before the bank reacts).
    atms = np.unique(w.pick(rng, 40, ATM, country=country, region=region))
    atms = rng.permutation(atms)[: int(rng.integers(3, 7))]
    tz = int(_C_TZ[country])
    local_day = (day_t + tz * HOUR_MS) // DAY_MS
    # Around midnight the daily limit resets: a withdrawal just before and one just after.
    start_h = rng.uniform(23, 23.9) if rng.random() < 0.4 else rng.uniform(10, 21)
    start = local_day * DAY_MS + int(start_h * HOUR_MS) - tz * HOUR_MS
    begin = start + rng.integers(0, 3 * HOUR_MS, len(cards))
    sizes = rng.choice(np.array([1, 2, 3, 4]), size=len(cards), p=[0.3, 0.35, 0.2, 0.15])
    owner, t = _sessions(rng, begin, sizes, (MINUTE_MS, 15 * MINUTE_MS))
    atm = atms[rng.integers(0, len(atms), len(owner))]
    # Near the limit: the card's cash limit or the machine's, whichever is lower, less a margin.
    limit = rng.choice(np.array([50000, 100000, 200000]), size=len(cards), p=[0.5, 0.35, 0.15])[owner]
    machine = 200000 if country == _JP else 70000
    yen = np.minimum(limit, machine) * rng.uniform(0.85, 1.0, len(owner))
    cash = _Rows.of(cards[owner], atm, _atm_amount(w, yen, atm), t, _SKIM_ATM)
    buyers = np.flatnonzero(rng.random(len(cards)) < 0.4)
    n_buy = rng.integers(1, 3, len(buyers))
    b_owner, b_t = _sessions(rng, start + rng.integers(HOUR_MS // 2, 6 * HOUR_MS, len(buyers)), n_buy, (10 * MINUTE_MS, 90 * MINUTE_MS))
    shop = w.pick(rng, len(b_owner), POS, country=country, region=region, mccs=_CASH_PURCHASE_MCCS)
    b_yen = np.clip(rng.lognormal(np.log(45000), 0.7, len(b_owner)), 5000, 300000)
    buys = _Rows.of(cards[buyers][b_owner], shop, _local_amount(w, b_yen, shop), b_t, _SKIM_PURCHASE)
    return _Rows.concat([cash, buys])


def _account_takeover(ctx: _Ctx, lo: int, hi: int, intensity: float) -> _Rows:
    """Stolen credentials: the card suddenly shops online, often abroad, for phones, computers, gift cards and
    jewellery, in 1-3 sessions over a few days with rising amounts, whatever its own habits were."""
    rng, w = ctx.rng, ctx.world
    n = min(w.n_cards, _count(rng, 75 * intensity * ctx.months(lo, hi) * ctx.portfolio))
    victims = rng.choice(w.n_cards, size=n, replace=False)
    t0 = rng.integers(lo, hi, n)
    n_sessions = rng.choice(np.array([1, 2, 3]), size=n, p=[0.5, 0.35, 0.15])
    s_owner, s_start = _sessions(rng, t0, n_sessions, (2 * HOUR_MS, 3 * DAY_MS))
    sizes = rng.choice(np.array([1, 2, 3, 4]), size=len(s_owner), p=[0.3, 0.3, 0.25, 0.15])
    owner_s, t = _sessions(rng, s_start, sizes, (3 * MINUTE_MS, 60 * MINUTE_MS))
    owner = s_owner[owner_s]
    card = victims[owner]
    abroad = rng.random(n)[owner] < 0.6  # one takeover, one place
    merchant = np.where(abroad, w.pick(rng, len(card), ECOM, not_country=_JP, mccs=_ATO_MCCS),
                        w.pick_per_row(rng, ECOM, w.c_country[card], mccs=_ATO_MCCS, goods_first=True))
    foreign_home = abroad & (w.m_country[merchant] == w.c_country[card])
    merchant[foreign_home] = w.pick(rng, int(foreign_home.sum()), ECOM, country=_JP, mccs=_ATO_MCCS)
    # Amounts rise as the fraudster finds nothing stops them.
    rank = np.arange(len(owner)) - np.concatenate([[0], np.cumsum(np.bincount(owner, minlength=n))[:-1]])[owner]
    yen = np.clip(rng.lognormal(np.log(40000), 0.6, len(card)) * (1 + 0.6 * rank), 5000, 500000)
    return _Rows.of(card, merchant, _local_amount(w, yen, merchant), t, _ATO).where((t >= lo) & (t < hi))


def _low_and_slow(ctx: _Ctx, lo: int, hi: int, intensity: float) -> _Rows:
    """Fraud that imitates the holder: amounts near the card's own, at ordinary domestic web shops, in the day,
    one purchase every few days for weeks, so that neither the holder nor a velocity rule notices soon."""
    rng, w = ctx.rng, ctx.world
    n = min(w.n_cards, _count(rng, 100 * intensity * ctx.months(lo, hi) * ctx.portfolio))
    victims = rng.choice(w.n_cards, size=n, replace=False)
    sizes = rng.integers(2, 9, n)
    owner, t = _sessions(rng, rng.integers(lo, hi, n), sizes, (DAY_MS, 4 * DAY_MS))
    card = victims[owner]
    merchant = w.pick_per_row(rng, ECOM, w.c_country[card], mccs=_LOW_SLOW_MCCS, goods_first=True)
    t = _on_local_day(rng, t, _C_TZ[w.c_country[card]], POS)  # the holder's daytime rhythm
    yen = ctx.normal_yen()[card] * rng.lognormal(0, 0.35, len(card))
    return _Rows.of(card, merchant, _local_amount(w, yen, merchant), t, _LOW_SLOW).where((t >= lo) & (t < hi))


def _plan(name: str) -> list[tuple[Callable[..., _Rows], float, float, float, dict[str, Any]]]:
    """(typology, from, to (fractions of the span), intensity, options) for each scenario."""
    single = {"card-testing": _card_testing, "merchant-breach": _merchant_breach, "skimming": _skimming,
              "account-takeover": _account_takeover}
    if name in single:
        return [(single[name], 0.0, 1.0, 1.0, {})]
    if name == "drift":
        # Fraudsters adapt when countermeasures start: big and fast first, then quiet and ordinary.
        return [(_card_testing, 0.0, 0.5, 0.8, {}), (_skimming, 0.0, 0.5, 0.8, {}),
                (_low_and_slow, 0.5, 1.0, 2.0, {}), (_card_testing, 0.5, 1.0, 0.5, {"adapted": True})]
    if name == "mixed":
        return [(_card_testing, 0.0, 1.0, 0.4, {}), (_merchant_breach, 0.0, 1.0, 0.5, {}), (_skimming, 0.0, 1.0, 0.4, {}),
                (_account_takeover, 0.0, 1.0, 0.5, {}), (_low_and_slow, 0.0, 1.0, 0.4, {})]
    raise ValueError(f"unknown scenario {name!r}; choose one of {', '.join(SCENARIOS)}")


# --- the result -----------------------------------------------------------------------------------------------------


@dataclass
class ScenarioData:
    """One scenario's traffic: what the pipeline sees (``events``, ``labels``) and the truth it must not see.

    ``kind`` refines ``typology`` (e.g. card-testing probes vs cash-outs, see :data:`KINDS`); ``start_ms`` is day 0.
    """

    name: str
    events: list[dict[str, Any]]
    labels: list[dict[str, Any]]
    is_fraud: list[bool]
    typology: list[str]
    kind: list[str] = field(default_factory=list)
    start_ms: int = 0

    @property
    def fraud_share(self) -> float:
        return sum(self.is_fraud) / len(self.is_fraud) if self.is_fraud else 0.0

    def write_jsonl(self, directory: str | Path) -> tuple[int, int]:
        """Write DIR/events.jsonl, DIR/labels.jsonl and DIR/truth.jsonl (tx_id, is_fraud, typology, kind)."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        n_events = _write_lines(out / "events.jsonl", self.events)
        n_labels = _write_lines(out / "labels.jsonl", self.labels)
        kinds = self.kind or [""] * len(self.events)
        truth = ({"tx_id": e["tx_id"], "is_fraud": f, "typology": t, "kind": k}
                 for e, f, t, k in zip(self.events, self.is_fraud, self.typology, kinds, strict=True))
        _write_lines(out / "truth.jsonl", truth)
        return n_events, n_labels


def make_scenario(name: str, *, cards: int = 5000, days: int = 60, seed: int = 0, start: str = "2026-01-05",
                  merchants: int | None = None) -> ScenarioData:
    """Generate a named scenario (see :data:`SCENARIOS`); the same arguments give the same data.

    ``merchants`` defaults to 0.6 per card, at least 800 (so every country has its shops and ATMs).
    """
    if cards < 1 or days < 1:
        raise ValueError("cards and days must be at least 1")
    if name == "handbook":
        return _handbook(cards, days, seed, start)
    plan = _plan(name)
    start_ms = to_epoch_ms(start)
    world_rng, legit_rng, fraud_rng, clock_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(4))
    world = _make_world(world_rng, cards, merchants or max(800, round(0.6 * cards)), days, start_ms)
    legit = _legit(legit_rng, world)
    ctx = _Ctx(fraud_rng, world, legit)
    span = world.span_ms
    fraud = [fn(ctx, int(a * span), int(b * span), intensity, **opts) for fn, a, b, intensity, opts in plan]
    rows = _Rows.concat([legit, *fraud])
    # One clock for all: whole seconds plus random milliseconds, so no row betrays its origin by its resolution.
    rows.t = rows.t // 1000 * 1000 + clock_rng.integers(0, 1000, len(rows.t))
    rows = rows.where((rows.t >= 0) & (rows.t < span))
    rows = rows.where(np.argsort(rows.t, kind="stable"))  # ties keep legitimate rows first, so the order is the seed's
    return _assemble(name, world, rows, seed)


def _assemble(name: str, w: _World, rows: _Rows, seed: int) -> ScenarioData:
    n = len(rows.t)
    txs = SimulatedTransactions(
        start_ms=w.start_ms, ts=w.start_ms + rows.t, day=rows.t // DAY_MS, customer=rows.card, terminal=rows.merchant,
        amount=rows.amount, is_fraud=rows.kind >= 0, scenario=np.zeros(n, dtype=np.int8), customer_xy=np.zeros((w.n_cards, 2)),
        customer_mean_amount=w.c_factor, customer_std_amount=w.c_factor, customer_tx_rate=w.c_rate,
        terminal_xy=np.zeros((len(w.m_channel), 2)), tx_width=max(10, len(str(max(n - 1, 0)))),
        card_width=max(6, len(str(w.n_cards - 1))), terminal_width=5,
    )
    country = w.m_country[rows.merchant]
    currency = np.array([_COUNTRIES[c].currency for c in _CODES])[country].tolist()
    codes = np.array(_CODES)[country].tolist()
    channel = np.array(_CHANNELS)[w.m_channel[rows.merchant]].tolist()
    mcc = w.m_mcc[rows.merchant].tolist()
    merchant_names = [f"mer-{m:05d}" for m in w.m_number.tolist()]
    card_names = [txs.card_id(c) for c in range(w.n_cards)]
    was_enabled = gc.isenabled()
    gc.disable()  # hundreds of thousands of new dicts: nothing to collect, much to scan
    try:
        events = [
            {"tx_id": tx, "card_id": card_names[c], "merchant_id": merchant_names[m], "amount": a, "ts": t, "currency": cur,
             "mcc": code, "country": cty, "channel": ch}
            for tx, c, m, a, t, cur, code, cty, ch in zip(txs.tx_ids(), rows.card.tolist(), rows.merchant.tolist(),
                                                          rows.amount.tolist(), txs.ts.tolist(), currency, mcc, codes, channel,
                                                          strict=True)
        ]
    finally:
        if was_enabled:
            gc.enable()
    kinds = rows.kind.tolist()
    return ScenarioData(
        name=name, events=events, labels=_labels(txs, rows.kind, seed), is_fraud=[k >= 0 for k in kinds],
        typology=["" if k < 0 else _KIND_TYPOLOGY[k] for k in kinds], kind=["" if k < 0 else KINDS[k] for k in kinds],
        start_ms=w.start_ms,
    )


def _labels(txs: SimulatedTransactions, kind: np.ndarray, seed: int) -> list[dict[str, Any]]:
    """Chargebacks per kind and one customer report per card and report group, by each kind's :data:`LABEL_DELAYS`."""
    out: list[dict[str, Any]] = []
    seeds = iter(np.random.SeedSequence([seed, 7]).generate_state(2 * len(KINDS)).tolist())
    for k, name in enumerate(KINDS):
        d = LABEL_DELAYS[name]
        only = LabelDelays(report_probability=0, chargeback_probability=d.chargeback_probability,
                           chargeback_delay_days=d.chargeback_delay_days, seed=next(seeds))
        out += only.labels(dataclasses.replace(txs, is_fraud=kind == k))
    for group in _REPORT_GROUPS:
        d = LABEL_DELAYS[KINDS[group[0]]]
        only = LabelDelays(report_probability=d.report_probability, report_delay_hours=d.report_delay_hours,
                           chargeback_probability=0, seed=next(seeds))
        out += only.labels(dataclasses.replace(txs, is_fraud=np.isin(kind, group)))
    out.sort(key=lambda label: label["ts"])
    return out


def _handbook(cards: int, days: int, seed: int, start: str) -> ScenarioData:
    """The Handbook simulator through the same door: cards are its customers, with two terminals per card."""
    sim = HandbookSimulator(n_customers=cards, n_terminals=2 * cards, n_days=days, start=start, seed=seed)
    txs = sim.transactions()
    names = ("", "handbook-amount", "handbook-terminal", "handbook-customer")
    scenario = txs.scenario.tolist()
    return ScenarioData(
        name="handbook", events=[a.as_event() for a in sim.iter_authorizations()], labels=LabelDelays(seed=seed).labels(txs),
        is_fraud=txs.is_fraud.tolist(), typology=[names[s] for s in scenario], kind=[names[s] for s in scenario],
        start_ms=sim.start_ms,
    )
