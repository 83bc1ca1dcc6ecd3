"""The codec's shortcuts agree with the long way: an authorization that passes every check at once
(`_valid_authorization`) is the one the checks one at a time accept, and anything else is left to them."""

from __future__ import annotations

import time
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from fraudstream.contracts import MAX_AMOUNT, MAX_FUTURE_MS, MIN_TS_MS, Authorization, _checked_authorization, _valid_authorization

NOW_MS = int(time.time() * 1000)
VALID = {"tx_id": "t1", "card_id": "c1", "merchant_id": "m1", "amount": 12.5, "ts": NOW_MS - 1000, "currency": "EUR",
         "mcc": "5411", "country": "JP", "channel": "ecom"}
# Values each check is at the edge of: types orjson decodes to, lengths, characters, ranges.
ALMOST = [None, True, False, 0, 1, -1, 2**63 - 1, 0.0, 5.0, -5.0, float("inf"), float("nan"), MAX_AMOUNT, MAX_AMOUNT * 1.0001,
          MIN_TS_MS, MIN_TS_MS - 1, NOW_MS + MAX_FUTURE_MS - 60_000, NOW_MS + MAX_FUTURE_MS + 60_000, "", "c1", "x" * 128,
          "x" * 129, "a\nb", "é", "EUR", "eur", "EU", "ÉUR", "5411", "541a", "٣٣٣٣", "JP", "jp", "pos", "ecom", "POS", [], {}]


@settings(max_examples=400, deadline=None)
@given(changes=st.dictionaries(st.sampled_from(sorted(VALID)), st.sampled_from(ALMOST), max_size=3),
       removed=st.sets(st.sampled_from(sorted(VALID)), max_size=2),
       key=st.sampled_from([b"c1", b"c2", b"", None]), check_key=st.booleans())
def test_an_authorization_valid_at_once_is_the_one_the_checks_accept(changes: dict[str, Any], removed: set[str],
                                                                       key: bytes | None, check_key: bool) -> None:
    obj = {k: v for k, v in {**VALID, **changes}.items() if k not in removed}
    checked = _checked_authorization(obj, key, check_key)
    assert _valid_authorization(obj, key, check_key) == (checked if isinstance(checked, Authorization) else None)
