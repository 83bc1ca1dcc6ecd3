"""Which time an operator's action carries: the wall clock, or the pipeline's event time when it is behind."""

from __future__ import annotations

from fraudstream.knowledge import PipelineKnowledge

WALL = 1_800_000_000_000
DAY = 86_400_000


def test_a_live_pipeline_or_nothing_scored_gives_the_wall_clock():
    assert PipelineKnowledge("card-1").stamp(WALL) == WALL  # nothing scored yet
    ahead = PipelineKnowledge("card-1", card_ts=[WALL + 5], card_partition=0, newest={0: WALL + 5})
    assert ahead.stamp(WALL) == WALL  # a producer's clock ahead of ours: never stamped in the future


def test_a_pipeline_behind_gives_the_newest_time_of_the_cards_partition():
    view = PipelineKnowledge("card-1", card_ts=[WALL - 60 * DAY], card_partition=1, newest={0: WALL - 59 * DAY, 1: WALL - 60 * DAY})
    assert view.stamp(WALL) == view.event_time == WALL - 60 * DAY
    unknown = PipelineKnowledge("card-9", newest={0: WALL - 59 * DAY, 1: WALL - 60 * DAY})
    assert unknown.stamp(WALL) == WALL - 59 * DAY  # a card never scored (--force): the pipeline's newest anywhere
