"""MCC groups: the standard's ranges, nothing for a missing or unknown code, bounded memory."""

from __future__ import annotations

from fraudstream.core.features import mcc as mcc_module
from fraudstream.core.features.mcc import MCC_GROUPS, mcc_features, mcc_group


def test_codes_fall_in_their_groups_and_others_in_none() -> None:
    assert mcc_group("3058") == "mcc_travel"  # an airline, in the 3000-3350 range
    assert mcc_group("6011") == "mcc_cash_like" and mcc_group("5816") == "mcc_digital_goods"
    assert mcc_group("5944") == "mcc_luxury" and mcc_group("5541") == "mcc_everyday"
    for unknown in (None, "", "abcd", "0742", "9999"):
        assert mcc_group(unknown) is None
        assert set(mcc_features(unknown).values()) == {0.0}


def test_every_authorization_has_every_group_feature_with_at_most_one_set() -> None:
    for code in ("5732", "5411", "7011", "1234", None):
        f = mcc_features(code)
        assert set(f) == set(MCC_GROUPS) and sum(f.values()) <= 1.0


def test_a_flood_of_made_up_codes_does_not_grow_memory() -> None:
    for i in range(12_000):
        mcc_features(f"x{i}")
    assert len(mcc_module._CACHE) <= 10_000
