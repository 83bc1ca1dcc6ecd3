"""Amounts in one currency: approximate exchange rates to a base currency.

An authorization carries its amount in the merchant's currency (``Authorization.currency``). The card and merchant
features compare and add amounts, so they first convert each one to the base currency
(``FRAUDSTREAM_BASE_CURRENCY``, the card's billing currency: JPY for a Japanese issuer). Amounts are in major units,
as in an authorization (¥1,500, $12.50), in every currency.

Why approximate rates are enough: every amount feature is read as a ratio (this amount against the card's or the
merchant's mean, a share of the mean for a probe-sized amount, today's spending against the 30-day pace), a z-score,
or by a model that standardises it, on a logarithmic scale in effect. An exchange rate a few percent off moves a
ratio by those few percent: a purchase 10× the card's mean stays about 10×. What must not happen is adding $100 to
a yen history as ¥100, a factor of 150. So the table is one day's reference rates, refreshed when a currency has
moved by more than ~10% (the majors move that much in a year or so), not a live feed. The issuer's posted amount
uses the scheme's rate of the day; features do not need it.

Source: the ECB's euro foreign exchange reference rates of 2025-10-21 (units of each currency per euro, as the ECB
publishes them), plus TWD, VND, MOP and AED, which the ECB does not publish: approximate cross rates via the US
dollar on that day (TWD and VND rounded, MOP and AED from their pegs). Rates against any base follow from the table.

>>> round(to_base(100.0, "USD"))  # $100 in yen
15202
>>> to_base(1_500.0, "JPY")  # the base itself: as is
1500.0
>>> round(Money("USD").to_base(15_202.0, "JPY"), 2)  # another base
100.0

A currency missing from the table is used as is (as if it were the base) and counted, never an error:

>>> money = Money("JPY")
>>> money.to_base(50.0, "XTS"), money.unknown
(50.0, {'XTS': 1})
"""

from __future__ import annotations

__all__ = ["Money", "UNITS_PER_EUR", "RATES_DATE", "CURRENCIES", "DEFAULT_BASE", "DEFAULT", "to_base", "shared"]

#: The day of the rates below.
RATES_DATE = "2025-10-21"

#: Units of each currency per euro (ISO 4217 codes), approximate: see the module's docstring.
UNITS_PER_EUR: dict[str, float] = {
    "EUR": 1.0,
    # ECB reference rates, 2025-10-21
    "USD": 1.1607, "JPY": 176.45, "BGN": 1.9558, "CZK": 24.314, "DKK": 7.4691, "GBP": 0.86780, "HUF": 389.63,
    "PLN": 4.2393, "RON": 5.0838, "SEK": 10.9345, "CHF": 0.9230, "ISK": 141.60, "NOK": 11.6693, "TRY": 48.7114,
    "AUD": 1.7885, "BRL": 6.2526, "CAD": 1.6301, "CNY": 8.2626, "HKD": 9.0204, "IDR": 19272.67, "ILS": 3.8174,
    "INR": 102.1073, "KRW": 1660.38, "MXN": 21.4006, "MYR": 4.9086, "NZD": 2.0287, "PHP": 67.761, "SGD": 1.5061,
    "THB": 38.071, "ZAR": 20.1148,
    # Not published by the ECB: cross rates via the US dollar (about 30.7 TWD, 26,300 VND, 3.6725 AED per USD;
    # 1.03 MOP per HKD).
    "TWD": 35.6, "VND": 30_500.0, "AED": 4.2627, "MOP": 9.291,
}

CURRENCIES = frozenset(UNITS_PER_EUR)
DEFAULT_BASE = "JPY"
#: Distinct unknown currencies counted by name; any more are counted under "other".
MAX_UNKNOWN_CODES = 32


class Money:
    """Converts amounts to ``base``; counts the authorizations whose currency the table lacks.

    ``rates`` maps each currency to base units per unit. ``unknown`` maps each currency missing from the table to
    how many amounts were used as is (unconverted): a worker exports it, an operator adds the currency to
    :data:`UNITS_PER_EUR`. Raises ValueError for a base not in the table.
    """

    __slots__ = ("base", "rates", "unknown")

    def __init__(self, base: str = DEFAULT_BASE) -> None:
        if base not in UNITS_PER_EUR:
            raise ValueError(f"no exchange rate for the base currency {base!r}: known are {', '.join(sorted(CURRENCIES))}")
        self.base = base
        per_eur = UNITS_PER_EUR[base]
        self.rates: dict[str, float] = {code: per_eur / units for code, units in UNITS_PER_EUR.items()}
        self.rates[base] = 1.0  # exactly
        self.unknown: dict[str, int] = {}

    @property
    def unknown_total(self) -> int:
        """Amounts used unconverted, all currencies together."""
        return sum(self.unknown.values())

    def to_base(self, amount: float, currency: str, count: bool = True) -> float:
        """``amount`` in ``currency`` as base units; unchanged (and counted, unless ``count`` is false) for a
        currency not in the table."""
        if currency == self.base:
            return amount
        rate = self.rates.get(currency)
        if rate is not None:
            return amount * rate
        if count:
            key = currency if currency in self.unknown or len(self.unknown) < MAX_UNKNOWN_CODES else "other"
            self.unknown[key] = self.unknown.get(key, 0) + 1
        return amount


#: The converter of callers that pass none (the base currency's default): its ``unknown`` counts theirs.
DEFAULT = Money(DEFAULT_BASE)
_SHARED = {DEFAULT_BASE: DEFAULT}


def shared(base: str = DEFAULT_BASE) -> Money:
    """One converter per base for callers that keep none of their own."""
    money = _SHARED.get(base)
    if money is None:
        money = _SHARED[base] = Money(base)
    return money


def to_base(amount: float, currency: str, base: str = DEFAULT_BASE) -> float:
    """``amount`` in ``currency`` converted to ``base`` (see :class:`Money`; unknown currencies count in
    ``shared(base).unknown``)."""
    return shared(base).to_base(amount, currency)
