"""The faust wiring around the stages (fraudstream/stream/app.py), built without a broker."""

from __future__ import annotations

import asyncio

from prometheus_client import CollectorRegistry

from fraudstream.config import Settings
from fraudstream.metrics import Metrics


def test_an_assignment_makes_intake_announce_every_card_partition_again(tmp_path) -> None:
    from fraudstream.stream.app import FraudApp

    s = Settings.load(env={}).with_overrides(state_dir=str(tmp_path), partitions=3)
    # Port 1: nobody listens. Building the app connects nothing (faust connects when started).
    app = FraudApp(s, "127.0.0.1:1", Metrics(CollectorRegistry()))
    app.rule_follower.consumer.close()
    app.intake.announced.update({0: 1_700_000_000_000, 1: None})  # a mark and an idle card partition, said already
    # Each merchant stage forgot what it was told at the revocation before it (`MerchantStage.forget`).
    asyncio.run(app.app.on_partitions_assigned.send(set()))
    assert app.intake.announced == {}, "both are said again: the mark with the next batch, idle at the next tick"
