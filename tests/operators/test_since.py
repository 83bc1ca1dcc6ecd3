"""``--since``: a time without a zone is read in the deployment's zone (FRAUDSTREAM_TZ_OFFSET_H), and said so."""

from __future__ import annotations

import datetime as dt

from fraudstream.operators import parse_since, since_zone

NOW = int(dt.datetime(2026, 12, 1, tzinfo=dt.UTC).timestamp() * 1000)
UTC_8AM = int(dt.datetime(2024, 3, 10, 8, tzinfo=dt.UTC).timestamp() * 1000)


def test_a_time_without_a_zone_is_in_the_deployments_zone():
    assert parse_since("2024-03-10T17:00:00", NOW, offset_h=9) == UTC_8AM
    assert parse_since("2024-03-10 17:00", NOW, offset_h=9) == UTC_8AM
    assert parse_since("2024-03-11", NOW, offset_h=9) == UTC_8AM + 7 * 3_600_000  # local midnight is 15:00 UTC the day before
    assert parse_since("2024-03-10T03:00:00", NOW, offset_h=-5) == UTC_8AM


def test_a_zone_given_wins_over_the_deployments():
    for text in ("2024-03-10T08:00:00Z", "2024-03-10T17:00:00+09:00", str(UTC_8AM)):
        assert parse_since(text, NOW, offset_h=-3) == UTC_8AM


def test_the_zone_used_is_said():
    assert since_zone("2024-03-10T17:00:00", 9) == "UTC+09:00 (FRAUDSTREAM_TZ_OFFSET_H; no zone given)"
    assert since_zone("2024-03-10", 0) == "UTC (FRAUDSTREAM_TZ_OFFSET_H; no zone given)"
    assert since_zone("2024-03-10", -5) == "UTC-05:00 (FRAUDSTREAM_TZ_OFFSET_H; no zone given)"
    assert since_zone("2024-03-10T17:00:00+09:00", 0) is None
    assert since_zone("2024-03-10T08:00:00Z", 9) is None
    assert since_zone(str(UTC_8AM), 9) is None
