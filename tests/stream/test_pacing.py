"""Batch pacing (fraudstream.stream.pacing): fuller batches while traffic is slow, the window alone when it is fast."""

from __future__ import annotations

import pytest

from fraudstream.config import ConfigError, Settings
from fraudstream.stream.pacing import BatchPacing

WINDOW, FILL, LONGEST = 0.02, 100, 0.5  # slow up to 200/s


def steady_spacing(rate: float, work_s: float = 0.005, batches: int = 40, max_: int = 1000) -> tuple[float, int]:
    """An agent taking batches of traffic arriving at ``rate`` per second: the spacing of its batches and their
    size once settled. A batch holds what arrived since the previous one (at most ``max_``), takes ``work_s`` to
    process, then the agent pauses as told and waits a window for the next."""
    pacing = BatchPacing(WINDOW, FILL, LONGEST)
    taken, previous, size = 100.0, 100.0 - WINDOW, 0
    for _ in range(batches):
        size = min(max_, round(rate * (taken - previous)))
        now = taken + work_s
        pause = pacing.pause_after(size, taken, now)
        assert pause >= 0
        previous, taken = taken, now + pause + WINDOW
    return taken - previous, size


@pytest.mark.parametrize(("rate", "spacing"), [(20, 0.5), (200, 0.5), (400, 0.125), (700, 0.041), (5_000, 0.025)])
def test_batches_are_spaced_the_longest_while_slow_then_less_with_the_square_of_the_rate(rate: float,
                                                                                      spacing: float) -> None:
    # At 5,000/s the window and the work (25 ms) take longer than the spacing: no pause.
    got, size = steady_spacing(rate)
    assert got == pytest.approx(spacing, abs=0.003)
    assert size == pytest.approx(rate * spacing, rel=0.1)


def test_at_200_per_second_batches_hold_the_fill() -> None:
    _, size = steady_spacing(200)
    assert size == FILL


def test_a_burst_after_quiet_traffic_is_taken_without_pausing() -> None:
    pacing = BatchPacing(WINDOW, FILL, LONGEST)
    assert pacing.pause_after(2, taken_at=10.0, now=10.001) == 0.0  # nothing known yet
    assert pacing.pause_after(2, taken_at=10.5, now=10.501) == pytest.approx(0.479)  # 4/s: the longest spacing
    assert pacing.pause_after(1000, taken_at=11.0, now=11.05) == 0.0  # then a full batch: no pause after it


def test_traffic_starting_after_a_quiet_spell_is_not_taken_for_a_trickle() -> None:
    pacing = BatchPacing(WINDOW, FILL, LONGEST)
    pacing.pause_after(1, taken_at=0.0, now=0.0)
    # a minute later, 14 authorizations produced within 20 ms: 700/s, not 14 a minute
    assert pacing.pause_after(14, taken_at=60.0, now=60.001, produced_over_s=0.02) == pytest.approx(0.02, abs=0.001)
    # without their timestamps it would pause the longest, as for a trickle
    pacing = BatchPacing(WINDOW, FILL, LONGEST)
    pacing.pause_after(1, taken_at=0.0, now=0.0)
    assert pacing.pause_after(14, taken_at=60.0, now=60.001) == pytest.approx(LONGEST - WINDOW - 0.001)


def test_work_longer_than_the_spacing_leaves_no_pause() -> None:
    pacing = BatchPacing(WINDOW, FILL, LONGEST)
    pacing.pause_after(10, taken_at=1.0, now=1.01)
    assert pacing.pause_after(10, taken_at=1.1, now=1.6) == 0.0


def test_a_fill_of_one_is_the_window_alone() -> None:
    pacing = BatchPacing(WINDOW, 1, LONGEST)
    pacing.pause_after(1, taken_at=1.0, now=1.0)
    assert pacing.pause_after(1, taken_at=2.0, now=2.0) == 0.0  # one authorization a second: spaced 1 s apart already


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="fill"):
        BatchPacing(WINDOW, 0, LONGEST)
    with pytest.raises(ValueError, match="longest window"):
        BatchPacing(0.5, FILL, 0.25)
    with pytest.raises(ConfigError, match="BATCH_WINDOW_MAX_S"):
        Settings.load(env={"FRAUDSTREAM_BATCH_WINDOW_MAX_S": "0.01"})
    with pytest.raises(ConfigError, match="BATCH_FILL"):
        Settings.load(env={"FRAUDSTREAM_BATCH_FILL": "-1"})
