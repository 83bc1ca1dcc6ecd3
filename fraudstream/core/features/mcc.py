"""The merchant category of an authorization, as a few broad groups the model can weigh.

Fraud concentrates where stolen value turns into cash or resaleable goods (electronics, jewellery, gift cards and
other stored value, digital goods, travel), and away from a household's everyday spending. An MCC (ISO 18245) is a
four-digit code with thousands of values, too many for the model to learn one weight each from a few hundred
frauds a month; its broad groups, by the standard's own ranges, are few enough. The model learns from the labels how
risky each group is (nothing here says so), the same for every merchant of the group, including a merchant it has
never seen. An authorization without an MCC, or with one outside every group, has all of them 0.

>>> mcc_features("5732")["mcc_electronics"], mcc_features("5411")["mcc_everyday"], sum(mcc_features(None).values())
(1.0, 1.0, 0.0)
"""

from __future__ import annotations

__all__ = ["MCC_GROUPS", "mcc_features", "mcc_group"]

#: group -> (first, last) code ranges, both included; the standard's ranges where it has them.
MCC_GROUPS: dict[str, tuple[tuple[int, int], ...]] = {
    # airlines 3000-3350, car rental 3351-3500, lodging 3501-3999, transport and travel agencies, hotels
    "mcc_travel": ((3000, 3999), (4011, 4011), (4111, 4131), (4411, 4411), (4511, 4511), (4722, 4723), (7011, 7011),
                   (7512, 7512)),
    "mcc_electronics": ((4812, 4812), (5045, 5045), (5065, 5065), (5722, 5722), (5732, 5734), (5946, 5946)),
    "mcc_luxury": ((5094, 5094), (5944, 5944), (5948, 5948), (5971, 5971)),
    "mcc_digital_goods": ((5815, 5818),),
    # money transfer, ATM and manual cash, quasi-cash, stored value, securities, betting
    "mcc_cash_like": ((4829, 4829), (6010, 6012), (6050, 6051), (6211, 6211), (6540, 6540), (7800, 7802), (7995, 7995)),
    "mcc_direct_marketing": ((5960, 5969),),
    # groceries, convenience and food stores, eating places, fuel, drug stores
    "mcc_everyday": ((5300, 5499), (5541, 5542), (5811, 5814), (5912, 5912)),
    "mcc_telecom_utilities": ((4814, 4816), (4899, 4900)),
}

_NONE = dict.fromkeys(MCC_GROUPS, 0.0)
_BY_GROUP = {group: {**_NONE, group: 1.0} for group in MCC_GROUPS}
_CACHE: dict[str | None, dict[str, float]] = {}
_GROUP_OF: dict[str | None, str | None] = {}
#: MCCs are a few hundred; a flood of made-up codes must not grow memory.
_CACHED = 10_000


def mcc_group(mcc: str | None) -> str | None:
    """The group of a four-digit MCC, or None."""
    try:
        return _GROUP_OF[mcc]  # every authorization asks
    except KeyError:
        pass
    group = None
    if mcc and mcc.isdigit():
        code = int(mcc)
        group = next((g for g, ranges in MCC_GROUPS.items() if any(lo <= code <= hi for lo, hi in ranges)), None)
    if len(_GROUP_OF) < _CACHED:
        _GROUP_OF[mcc] = group
    return group


def mcc_features(mcc: str | None) -> dict[str, float]:
    """One 0/1 feature per group (a shared dict: copy it before changing it)."""
    out = _CACHE.get(mcc)
    if out is None:
        group = mcc_group(mcc)
        out = _BY_GROUP[group] if group is not None else _NONE
        if len(_CACHE) < _CACHED:
            _CACHE[mcc] = out
    return out
