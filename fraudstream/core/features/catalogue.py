"""The feature catalogue: every feature's name, window and why it helps.

The order here is the order of the feature vector in snapshots; append new
features at the end so stored snapshots stay readable.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from fraudstream.core.features.mcc import MCC_GROUPS

__all__ = ["Feature", "CATALOGUE", "FEATURE_NAMES", "CARD_WINDOWS", "MERCHANT_WINDOWS", "NOUNS"]

#: Nouns a reason's phrase counts, in braces ("{value:.0f} {transactions}"): singular when the value shows as 1.
NOUNS = {"transactions": "transaction", "merchants": "merchant", "countries": "country", "channels": "channel",
         "authorizations": "authorization", "withdrawals": "withdrawal"}


@dataclass(frozen=True)
class Feature:
    name: str
    definition: str
    window: str
    why: str
    #: How an operator reads it in an alert reason; {value}, {usual}, {currency} (the base currency) and the
    #: counted nouns of `NOUNS` are filled in (fraudstream.core.reasons).
    phrase: str = ""
    #: Which way of its usual value raises the risk: "higher" (most features) or "lower". A value on the other
    #: side may still raise a model's score, but is no reason an analyst can read.
    riskier: str = "higher"
    #: The past of the card it compares with, without which it is no reason: "authorizations" (its mean, its
    #: spread, the places it went: fraudstream.core.reasons.MIN_CARD_HISTORY earlier authorizations in 30 days) or
    #: "days" (its daily pace: as many before the last 24 hours). Empty: none.
    card_history: str = ""
    #: What it tells an analyst; features telling the same (a z-score and a ratio against the same mean, one rate
    #: over several windows) give one reason, the strongest. Empty: its own.
    says: str = ""
    #: The plainest way of its `says` group: said in the place of the group's strongest member whenever it is a
    #: reason itself ("amount is 431.8× this card's 30-day mean" rather than "4308.2 standard deviations above it").
    plain: bool = False
    #: Above this, the value is said as "over" it: a z-score of 4308 against near-equal amounts is right, and reads
    #: as a defect to an analyst.
    said_up_to: float = math.inf


#: (suffix, buckets, bucket width ms, ring) of the card windows.
CARD_WINDOWS = (("1h", 12, 300_000, "minute"), ("24h", 24, 3_600_000, "hour"), ("7d", 7, 86_400_000, "day"), ("30d", 30, 86_400_000, "day"))
MERCHANT_WINDOWS = (("1d", 24, 3_600_000, "hour"), ("7d", 7, 86_400_000, "day"), ("30d", 30, 86_400_000, "day"))

_WINDOW_TEXT = {
    "1h": "last hour (12 five-minute buckets)",
    "24h": "last 24 hours (24 one-hour buckets)",
    "1d": "last 24 hours (24 one-hour buckets)",
    "7d": "last 7 days (7 one-day buckets)",
    "30d": "last 30 days (30 one-day buckets)",
}


def _card_window_features() -> list[Feature]:
    out = []
    for w, *_ in CARD_WINDOWS:
        span = _WINDOW_TEXT[w]
        out += [
            Feature(f"card_count_{w}", "authorizations on this card, this one included", span,
                    "velocity: stolen cards are used fast", f"{{value:.0f}} {{transactions}} in the {span.split(' (')[0]} (usual: {{usual}})",
                    says="card pace today" if w == "24h" else ""),
            Feature(f"card_amount_sum_{w}", "sum of amounts on this card, this one included", span,
                    "cash-out attacks drain a card", f"{{value:,.0f}} {{currency}} spent in the {span.split(' (')[0]} (usual: {{usual}})",
                    says="card spending today" if w == "24h" else ""),
            Feature(f"card_amount_mean_{w}", "mean amount on this card", span, "the card's normal ticket size",
                    f"mean amount {{value:,.0f}} {{currency}} in the {span.split(' (')[0]} (usual: {{usual}})", says="card mean amount"),
            Feature(f"card_amount_std_{w}", "standard deviation of amounts on this card", span,
                    "erratic amounts after a compromise", f"amount spread {{value:,.0f}} {{currency}} in the {span.split(' (')[0]} (usual: {{usual}})",
                    says="card amount spread"),
        ]
    return out


def _mcc_group_features() -> list[Feature]:
    out = []
    for group in MCC_GROUPS:
        words = group.removeprefix("mcc_").replace("_", " ")
        out.append(Feature(group, f"1 if the merchant's category (MCC) is in the {words} group of ISO 18245", "this event",
                           "fraud turns stolen value into cash and resaleable goods; the model learns each group's risk",
                           f"merchant category: {words}"))
    return out


CATALOGUE: tuple[Feature, ...] = (
    Feature("amount", "the authorization's amount in the base currency (`FRAUDSTREAM_BASE_CURRENCY`), converted from its own",
            "this event", "large amounts carry the loss", "amount {value:,.0f} {currency}"),
    *_card_window_features(),
    Feature("card_seconds_since_prev", "seconds since the card's previous authorization (capped at 30 days)", "card history",
            "bursts of use minutes apart", "{value:,.0f} s after the previous transaction (usual: {usual})", riskier="lower"),
    Feature("card_amount_ratio_30d", "amount / the card's mean over the previous 30 days (1 with no history)", "30 days",
            "stolen cards buy bigger", "amount is {value:.1f}× this card's 30-day mean", card_history="authorizations", says="amount against the card's mean",
            plain=True),
    Feature("card_amount_zscore_30d", "(amount − 30-day mean) / 30-day std, std floored at 10% of the mean", "30 days",
            "unusual for this card, not for cards in general", "amount is {value:.1f} standard deviations above this card's 30-day mean",
            card_history="authorizations", says="amount against the card's mean", said_up_to=100.0),
    Feature("card_distinct_merchants_24h", "distinct merchants on this card, this one included (of the 16 most recent)", "24 hours",
            "testing a stolen card at many shops", "{value:.0f} different {merchants} in 24 hours (usual: {usual})"),
    Feature("card_distinct_countries_24h", "distinct countries on this card, this one included", "24 hours",
            "a card in two countries at once", "{value:.0f} different {countries} in 24 hours"),
    Feature("card_first_at_merchant", "1 if the card has not used this merchant in 30 days", "30 days",
            "fraud goes to new places", "first transaction of this card at this merchant", card_history="authorizations"),
    Feature("card_cnp_share_24h", "share of card-not-present (ecom, moto) authorizations", "24 hours",
            "stolen card numbers are used online", "{value:.0%} card-not-present in 24 hours (usual: {usual})"),
    Feature("is_night", "1 if local time is 00:00–06:59", "this event", "fraud keeps odd hours", "at night"),
    Feature("is_weekend", "1 on Saturday or Sunday, local time", "this event", "weekly rhythm", "on a weekend"),
    Feature("merchant_count_1d", "authorizations at this merchant, this one included", _WINDOW_TEXT["1d"], "merchant volume, for context",
            "{value:.0f} {transactions} at this merchant in 24 hours (usual: {usual})", says="merchant volume"),
    Feature("merchant_amount_mean_1d", "mean amount at this merchant", _WINDOW_TEXT["1d"], "what this merchant usually charges",
            "merchant's mean amount {value:,.0f} {currency} in 24 hours", says="merchant ticket size"),
    Feature("merchant_count_7d", "authorizations at this merchant", _WINDOW_TEXT["7d"], "merchant volume",
            "{value:.0f} {transactions} at this merchant in 7 days", says="merchant volume"),
    Feature("merchant_amount_mean_7d", "mean amount at this merchant", _WINDOW_TEXT["7d"], "merchant ticket size",
            "merchant's mean amount {value:,.0f} {currency} in 7 days", says="merchant ticket size"),
    Feature("merchant_count_30d", "authorizations at this merchant", _WINDOW_TEXT["30d"], "merchant volume",
            "{value:.0f} {transactions} at this merchant in 30 days", says="merchant volume"),
    Feature("merchant_amount_mean_30d", "mean amount at this merchant", _WINDOW_TEXT["30d"], "merchant ticket size",
            "merchant's mean amount {value:,.0f} {currency} in 30 days", says="merchant ticket size"),
    Feature("merchant_fraud_rate_1d", "confirmed frauds / authorizations at this merchant, counting labels known so far",
            _WINDOW_TEXT["1d"], "a compromised terminal (Handbook terminal risk, live)", "{value:.1%} confirmed fraud at this merchant in 24 hours",
            says="merchant fraud"),
    Feature("merchant_fraud_rate_7d", "confirmed frauds / authorizations at this merchant, counting labels known so far",
            _WINDOW_TEXT["7d"], "a compromised terminal", "{value:.1%} confirmed fraud at this merchant in 7 days", says="merchant fraud"),
    Feature("merchant_fraud_rate_30d", "confirmed frauds / authorizations at this merchant, counting labels known so far",
            _WINDOW_TEXT["30d"], "a compromised terminal", "{value:.1%} confirmed fraud at this merchant in 30 days", says="merchant fraud"),
    Feature("merchant_cpp_share", "share of the 64 cards most recently seen here (30 days) later confirmed compromised",
            "30 days", "common point of purchase: skimmers and breaches", "{value:.0%} of recent cards here were later compromised"),
    # Appended 2026-12 (snapshots keep the order above).
    Feature("is_card_not_present", "1 for an ecom or moto authorization", "this event",
            "stolen card numbers are used where no card is shown", "card not present"),
    Feature("is_atm", "1 for an ATM withdrawal", "this event", "counterfeit (skimmed) cards are cashed out at ATMs",
            "ATM withdrawal"),
    Feature("card_first_country", "1 if the card has not been used in this country in 30 days (not on its first use)",
            "30 days", "account takeover and counterfeit cards show up abroad", "first use of this card in this country in 30 days",
            card_history="authorizations"),
    Feature("card_first_channel", "1 if the card has not used this channel (pos, ecom, atm, moto) in 30 days", "30 days",
            "a taken-over card moves online, a skimmed one to ATMs", "first use of this channel on this card in 30 days",
            card_history="authorizations"),
    Feature("card_distinct_channels_24h", "channels used by this card, this one included", "24 hours",
            "a card used in person and online within hours", "used through {value:.0f} {channels} in 24 hours"),
    Feature("card_small_count_24h", "authorizations under a tenth of the card's 30-day mean amount, this one included",
            "24 hours", "card testing: small probes before the cash-out", "{value:.0f} probe-sized {authorizations} in 24 hours",
            card_history="authorizations"),
    Feature("card_atm_count_24h", "ATM withdrawals on this card, this one included", "24 hours",
            "skimmed cards are emptied at several ATMs in a row", "{value:.0f} ATM {withdrawals} in 24 hours"),
    Feature("card_count_vs_30d", "30 × authorizations in 24 hours / authorizations in 30 days: 1 on a usual day, 30 at most",
            "24 hours against 30 days", "a burst against the card's own pace", "{value:.1f}× this card's usual daily pace",
            card_history="days", says="card pace today"),
    Feature("card_spend_vs_30d", "30 × amount in 24 hours / amount in 30 days: 1 on a usual day, 30 at most",
            "24 hours against 30 days", "a cash-out against the card's own spending", "{value:.1f}× this card's usual daily spending",
            card_history="days", says="card spending today"),
    Feature("merchant_amount_ratio_30d", "amount / this merchant's mean over the previous 30 days (1 with no history)",
            "30 days", "unusual for the shop, not only for the card", "amount is {value:.1f}× this merchant's usual amount"),
    Feature("merchant_count_vs_30d", "30 × authorizations at this merchant in 24 hours / in 30 days", "24 hours against 30 days",
            "card testing floods one merchant with authorizations", "{value:.1f}× this merchant's usual daily volume",
            says="merchant volume"),
    *_mcc_group_features(),
    # Appended 2026-12-07.
    Feature("merchant_fraud_recency", "0.5 ^ (days since the newest authorization here later confirmed fraud / 7); 0 with none",
            "30 days", "a terminal still compromised keeps getting fresh frauds; one whose compromise ended, only old ones",
            "fresh confirmed fraud at this merchant (recency {value:.2f}: 1 today, 0.5 a week ago)", says="merchant fraud"),
)

FEATURE_NAMES: tuple[str, ...] = tuple(f.name for f in CATALOGUE)
