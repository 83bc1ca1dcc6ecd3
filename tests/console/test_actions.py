"""Where the console's actions learn what the pipeline knows: its own view, the scores topic only for what the view
does not hold. No broker: the settings point at a closed port, so a topic read would fail."""

from __future__ import annotations

import threading

import pytest

from fraudstream.config import Settings
from fraudstream.console.actions import Actions
from fraudstream.console.view import PipelineView
from fraudstream.contracts import encode
from fraudstream.operators import OperatorError

T = 1_700_000_000_000


def _actions() -> tuple[Actions, PipelineView]:
    settings = Settings.load(env={}).with_overrides(broker="kafka://127.0.0.1:1")
    view = PipelineView()
    view.apply("scores", b"c1", encode({"tx_id": "t1", "card_id": "c1", "ts": T, "amount": 10, "score": 0.2,
                                        "decision": {"action": "none"}}), partition=0)
    return Actions(settings, None, view, threading.Lock()), view


def test_a_card_the_view_knows_is_checked_against_the_view_without_reading_the_topic() -> None:
    actions, _ = _actions()
    known = actions.knowledge(actions.settings, "c1", "t1")
    assert known.card_ts == [T] and known.tx_card == "c1" and known.stamp(T + 86_400_000) == T


def test_what_the_view_does_not_know_is_looked_up_in_the_scores_topic() -> None:
    actions, _ = _actions()
    with pytest.raises(OperatorError, match="127.0.0.1:1"):  # it tried the topic: the broker is unreachable here
        actions.knowledge(actions.settings, "c-forgotten", None)


def test_a_refusal_in_the_console_does_not_tell_the_analyst_to_give_force() -> None:
    """The console has no --force option: its refusal says where the override is, not to give an option it lacks."""
    from fraudstream.console.actions import CONSOLE_OVERRIDE
    from fraudstream.knowledge import PipelineKnowledge, unknown_to_pipeline

    problem = unknown_to_pipeline(PipelineKnowledge("card-1", override=CONSOLE_OVERRIDE), "fraud.scores")
    assert problem is not None and "give --force" not in problem and "command line's --force" in problem
    assert "or give --force to publish anyway" in (unknown_to_pipeline(PipelineKnowledge("card-1"), "fraud.scores") or "")
