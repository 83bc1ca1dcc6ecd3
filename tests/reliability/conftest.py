"""Fixtures of the reliability tests."""

from __future__ import annotations

from typing import Any

import pytest

from fraudstream.config import Settings

from .scenario import TopicTap


@pytest.fixture
def taps() -> Any:
    """``taps(settings, topic)``: a :class:`TopicTap`, closed at the end of the test whatever happens."""
    opened: list[TopicTap] = []

    def tap(settings: Settings, topic: str) -> TopicTap:
        opened.append(TopicTap(settings, topic))
        return opened[-1]

    yield tap
    for t in opened:
        t.close()
