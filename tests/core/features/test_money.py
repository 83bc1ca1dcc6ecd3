"""Amounts in one currency: the rate table, conversion, unknown currencies, the base currency setting, and the scorer."""

from __future__ import annotations

import pytest

from fraudstream.config import ConfigError, Settings
from fraudstream.contracts import Authorization
from fraudstream.core.decision import Decision
from fraudstream.core.features import money
from fraudstream.core.features.money import CURRENCIES, MAX_UNKNOWN_CODES, UNITS_PER_EUR, Money, to_base
from fraudstream.core.model.online import Contribution
from fraudstream.core.scorer import FraudScorer

T0 = 1_700_438_400_000
HOUR = 3_600_000

#: Currencies a Japanese issuer's cards meet most, besides the ones of the simulator (checked below).
COMMON = {"JPY", "USD", "EUR", "GBP", "CNY", "KRW", "TWD", "HKD", "SGD", "THB", "AUD", "CAD", "CHF"}


def test_the_table_covers_the_common_currencies_with_sane_rates() -> None:
    assert COMMON <= CURRENCIES
    for code, units in UNITS_PER_EUR.items():
        assert len(code) == 3 and code.isupper() and code.isalpha(), code
        assert 0.1 < units < 100_000, code
    yen = Money("JPY").rates
    assert yen["JPY"] == 1.0
    # Orders of magnitude a reader can check: yen per unit.
    assert 140 < yen["USD"] < 170 and 150 < yen["EUR"] < 190 and 0.08 < yen["KRW"] < 0.13 and 17 < yen["HKD"] < 22


def test_the_simulators_currencies_are_in_the_table_at_close_rates() -> None:
    from fraudstream.simulate.scenarios import YEN_PER_UNIT

    yen = Money("JPY").rates
    for code, per_unit in YEN_PER_UNIT.items():
        assert code in yen, code
        assert yen[code] == pytest.approx(per_unit, rel=0.12), code  # approximate rates, a year or two apart


def test_conversion() -> None:
    usd = UNITS_PER_EUR["JPY"] / UNITS_PER_EUR["USD"]
    assert to_base(100.0, "USD") == pytest.approx(100 * usd)
    assert 14_000 < to_base(100.0, "USD") < 17_000
    assert to_base(1_234.0, "JPY") == 1_234.0
    assert to_base(10.0, "EUR", base="EUR") == 10.0
    assert to_base(100.0, "USD", base="EUR") == pytest.approx(100 / UNITS_PER_EUR["USD"])


def test_a_base_currency_change_keeps_every_ratio() -> None:
    amounts = [(12.5, "USD"), (3_000.0, "JPY"), (40_000.0, "KRW"), (9.99, "GBP"), (120.0, "THB")]
    for base in ("JPY", "USD", "EUR", "KRW"):
        m = Money(base)
        assert m.base == base and m.rates[base] == 1.0 and m.to_base(7.0, base) == 7.0
        in_base = [m.to_base(a, c) for a, c in amounts]
        in_yen = [Money("JPY").to_base(a, c) for a, c in amounts]
        for x, y in zip(in_base, in_yen, strict=True):
            assert x / in_base[0] == pytest.approx(y / in_yen[0])  # ratios do not depend on the base
    # A round trip through another base.
    assert Money("USD").to_base(Money("JPY").to_base(100.0, "USD"), "JPY") == pytest.approx(100.0)
    assert Money("USD").rates["JPY"] * Money("JPY").rates["USD"] == pytest.approx(1.0)


def test_an_unknown_currency_is_passed_through_and_counted() -> None:
    m = Money("JPY")
    assert m.to_base(50.0, "XTS") == 50.0
    assert m.to_base(60.0, "XTS") == 60.0
    assert m.to_base(7.0, "XXX", count=False) == 7.0  # not counted
    assert m.unknown == {"XTS": 2} and m.unknown_total == 2
    assert m.to_base(100.0, "USD") > 100.0 and m.unknown_total == 2  # known ones are not counted
    # Bounded: past MAX_UNKNOWN_CODES distinct codes, the rest are counted together.
    for i in range(MAX_UNKNOWN_CODES + 5):
        m.to_base(1.0, f"Q{chr(65 + i // 26)}{chr(65 + i % 26)}")
    assert len(m.unknown) == MAX_UNKNOWN_CODES + 1 and m.unknown["other"] == 6
    assert m.unknown_total == 2 + MAX_UNKNOWN_CODES + 5


def test_an_unknown_base_is_refused() -> None:
    with pytest.raises(ValueError, match="no exchange rate for the base currency 'XTS'"):
        Money("XTS")


def test_the_setting_is_validated_at_load() -> None:
    assert Settings.load(env={}).base_currency == "JPY"
    assert Settings.load(env={"FRAUDSTREAM_BASE_CURRENCY": "USD"}).base_currency == "USD"
    with pytest.raises(ConfigError, match="FRAUDSTREAM_BASE_CURRENCY must be a currency of the exchange-rate table.*'ABC'"):
        Settings.load(env={"FRAUDSTREAM_BASE_CURRENCY": "ABC"})
    with pytest.raises(ConfigError, match="FRAUDSTREAM_BASE_CURRENCY"):
        Settings.load(env={}).with_overrides(base_currency="usd")


def test_the_scorer_converts_to_the_settings_base_and_counts_unknowns_once() -> None:
    for base in ("JPY", "USD"):
        scorer = FraudScorer(Settings.load(env={}).with_overrides(base_currency=base))
        assert scorer.money.base == base
        s = scorer.process(Authorization("t1", "c1", "m1", 100.0, T0, currency="USD"))
        assert s.features["amount"] == pytest.approx(100.0 * money.Money(base).rates["USD"])
        assert s.auth.amount == 100.0 and s.auth.currency == "USD"  # the record keeps the original
        s = scorer.process(Authorization("t2", "c1", "m1", 80.0, T0 + HOUR, currency="XTS"))
        assert s.features["amount"] == 80.0 and s.features["merchant_amount_mean_1d"] == pytest.approx(
            (80.0 + 100.0 * money.Money(base).rates["USD"]) / 2)
        assert scorer.money.unknown == {"XTS": 1}  # the card and merchant stages, one count


def test_reasons_say_the_currency_of_the_amounts_they_print() -> None:
    scorer = FraudScorer(Settings.load(env={}))
    s = scorer.process(Authorization("t1", "c1", "m1", 100.0, T0, currency="USD"))
    shown = [Contribution("amount", s.features["amount"], 0.3), Contribution("card_amount_sum_24h", 15_202.0, 0.2),
             Contribution("merchant_amount_mean_7d", 15_202.0, 0.1)]
    scorer.model.explain = lambda feats, top=3: shown  # type: ignore[method-assign]
    reasons = scorer.reasons(s.features, 0.9, Decision("alert", 0.5))
    assert reasons[0] == f"amount {s.features['amount']:,.0f} JPY" and reasons[0].startswith("amount 15,")
    assert reasons[1] == "15,202 JPY spent in the last 24 hours"  # no usual yet: the model has learned nothing
    assert reasons[2] == "merchant's mean amount 15,202 JPY in 7 days"
    usd = FraudScorer(Settings.load(env={"FRAUDSTREAM_BASE_CURRENCY": "USD"}))
    usd.model.explain = lambda feats, top=3: [Contribution("amount", 100.0, 0.3)]  # type: ignore[method-assign]
    assert usd.reasons({"amount": 100.0}, 0.9, Decision("alert", 0.5))[0] == "amount 100 USD"
