"""An alert's reasons in an analyst's words: which of the model's contributions to say, and how.

The model says which features raised the score (:meth:`~fraudstream.core.model.online.OnlineModel.explain`:
how much the score drops when a feature takes its usual value). Not each of them is a reason an analyst can
read, so a contribution is said only when

- its value lies on the side of its usual that raises the risk (``Feature.riskier``), and not at the usual:
  "2 different merchants in 24 hours (usual: 3.89)" may raise a model's score, yet reads as no reason;
- the card has the past it compares with (``Feature.card_history``): a z-score from three authorizations says
  nothing, nor "30× this card's usual daily pace" on its first day; the card needs `MIN_CARD_HISTORY`
  authorizations before this one, or before the last 24 hours for its daily pace;
- no stronger reason says the same thing already (``Feature.says``): "7.2 standard deviations above this
  card's 30-day mean" and "1.7× this card's 30-day mean" are one reason, said in its plainest way
  (``Feature.plain``: the ratio, whenever it is a reason itself) at the place of the strongest;

and counted nouns agree with their number: "1 transaction", "2 transactions"; a value beyond what an analyst can
read (``Feature.said_up_to``) is said as "over" it.

>>> from fraudstream.core.model.online import Contribution
>>> feats = {"card_count_1h": 1.0, "card_count_24h": 1.0, "card_count_30d": 1.0, "card_distinct_merchants_24h": 2.0}
>>> say([Contribution("card_distinct_merchants_24h", 2.0, 0.2), Contribution("card_count_1h", 1.0, 0.1)], feats,
...     usual={"card_distinct_merchants_24h": 3.89, "card_count_1h": 0.2}.get)
['1 transaction in the last hour (usual: 0.2)']
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from fraudstream.core.features.catalogue import CATALOGUE, NOUNS, Feature
from fraudstream.core.model.online import Contribution

__all__ = ["say", "usual_value", "MIN_CARD_HISTORY", "TOP"]

#: Authorizations of a card in its 30 days before a reason may compare with its past: before this one (its mean,
#: the places it went), or before the last 24 hours (its daily pace).
MIN_CARD_HISTORY = 5
#: Reasons from the model an alert gives at most.
TOP = 3
#: Closer to the usual than this share of it: the value is the usual, and no reason.
_SAME = 0.05

_FEATURES = {f.name: f for f in CATALOGUE}
#: The plain members of each `says` group, said in the place of a stronger member when they are reasons themselves.
_PLAIN = {group: tuple(f for f in CATALOGUE if f.plain and f.says == group) for group in {f.says for f in CATALOGUE if f.plain and f.says}}
#: The card windows whose usual is the card's own (its 30 days, scaled to the window) once it has a past; its
#: 30 days themselves compare with the population's.
_CARD_SCALE = {"1h": 1 / 720, "24h": 1 / 30, "7d": 7 / 30}


def card_history(feats: Mapping[str, float], kind: str = "authorizations") -> float:
    """The card's authorizations in its 30 days before this one (``kind`` "authorizations") or before the last 24
    hours ("days"). The window counts include this one."""
    before = feats.get("card_count_24h", 0.0) if kind == "days" else 1.0
    return feats.get("card_count_30d", 0.0) - before


def usual_value(feature: str, feats: Mapping[str, float], population: Callable[[str], float | None]) -> tuple[float | None, bool]:
    """The usual value of ``feature``, and whether it is the card's own: for a shorter window of the card, from
    its 30 days where the card has a past; else the population's (``population``: the model's baseline, None
    when it has none).

    >>> usual_value("card_count_24h", {"card_count_30d": 60.0, "card_count_24h": 1.0}, {}.get)
    (2.0, True)
    >>> usual_value("card_count_24h", {"card_count_30d": 3.0, "card_count_24h": 3.0}, {"card_count_24h": 2.5}.get)
    (2.5, False)
    """
    if card_history(feats, "days") >= MIN_CARD_HISTORY:  # a day's share of its 30 days means something
        for suffix, share in _CARD_SCALE.items():
            if feature == f"card_count_{suffix}":
                return feats.get("card_count_30d", 0.0) * share, True
            if feature == f"card_amount_sum_{suffix}":
                return feats.get("card_amount_sum_30d", 0.0) * share, True
    if (card_history(feats) >= MIN_CARD_HISTORY and feature.startswith("card_amount_mean_")
            and feature != "card_amount_mean_30d" and "card_amount_mean_30d" in feats):
        return feats["card_amount_mean_30d"], True
    return population(feature), False


def _is_reason(f: Feature, value: float, usual: float | None, feats: Mapping[str, float]) -> bool:
    if f.card_history and card_history(feats, f.card_history) < MIN_CARD_HISTORY:
        return False
    if usual is None:  # nothing to compare with (a model that learned nothing): the model's word for it
        return True
    if abs(value - usual) <= _SAME * abs(usual):
        return False
    return value > usual if f.riskier == "higher" else value < usual


class _Words(dict[str, Any]):
    """A phrase's fields, and its counted nouns in the number of ``count``."""

    def __init__(self, count: float, **fields: Any) -> None:
        super().__init__(fields)
        self.one = round(count) == 1

    def __missing__(self, noun: str) -> str:
        if noun not in NOUNS:
            raise KeyError(noun)
        return NOUNS[noun] if self.one else noun


class _Over:
    """A value beyond what an analyst can read, in any format: "over 100"."""

    def __init__(self, bound: float) -> None:
        self.bound = bound

    def __format__(self, spec: str) -> str:
        return f"over {self.bound:,g}"


def _format_usual(feature: str, usual: float | None, card_own: bool) -> str:
    if usual is None:
        return ""
    if card_own:
        return f"{usual:.1f}" if feature.startswith("card_count_") else f"{usual:,.0f}"
    return f"{usual:,.3g}"


def say(contributions: Iterable[Contribution], feats: Mapping[str, float], usual: Callable[[str], float | None],
        currency: str = "", top: int = TOP) -> list[str]:
    """The ``top`` strongest ``contributions`` (strongest first) that make a reason, each in its feature's phrase.
    ``usual`` gives the population's usual value of a feature (the model's baseline)."""
    contributions = list(contributions)
    values = {c.feature: c.value for c in contributions}
    out: list[str] = []
    said: set[str] = set()
    for c in contributions:
        f = _FEATURES.get(c.feature)
        if f is None:  # not in the catalogue (a rule's field, say): as it is
            out.append(f"{c.feature} = {c.value:.3g}")
        elif (f.says or f.name) not in said:
            # The group's plain way first, whether or not the model named it (its cold-start terms may not).
            for member, value in [*((p, values.get(p.name, feats.get(p.name))) for p in _PLAIN.get(f.says, ())), (f, c.value)]:
                if value is None:
                    continue
                typical, card_own = usual_value(member.name, feats, usual)
                if _is_reason(member, value, typical, feats):
                    said.add(f.says or f.name)
                    out.append(_phrase(member, value, typical, card_own, currency))
                    break
        if len(out) == top:
            break
    return out


def _phrase(f: Feature, value: float, usual: float | None, card_own: bool, currency: str) -> str:
    text = _format_usual(f.name, usual, card_own)
    phrase = f.phrase if usual is not None else f.phrase.replace(" (usual: {usual})", "")  # not "usual: unknown"
    shown = _Over(f.said_up_to) if value > f.said_up_to else value
    return phrase.format_map(_Words(value, value=shown, usual=text, currency=currency))
