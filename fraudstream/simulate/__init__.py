"""Simulated card traffic to measure fraudstream against.

- :class:`HandbookSimulator`: the Fraud Detection Handbook's transaction simulator, with its truth.
- :class:`LabelDelays`: customer reports and chargebacks, as late as they really are.
- :class:`Investigator`: the analyst team answering k cards of alerts a day.
- :func:`make_scenario`: named fraud-typology scenarios (card testing, merchant breach, skimming, account takeover,
  drift, mixed, and the Handbook) over one realistic issuer population, each with its own label delays.
- :func:`write_jsonl` and :func:`produce`: to files, or to Kafka.
"""

from fraudstream.simulate.handbook import HandbookSimulator, SimulatedAuthorization, SimulatedTransactions, to_epoch_ms
from fraudstream.simulate.labels import Investigator, LabelDelays
from fraudstream.simulate.run import ProduceCounts, Traffic, produce, time_offset_ms, write_jsonl
from fraudstream.simulate.scenarios import SCENARIOS, ScenarioData, make_scenario

__all__ = [
    "HandbookSimulator",
    "Investigator",
    "LabelDelays",
    "ProduceCounts",
    "SCENARIOS",
    "ScenarioData",
    "SimulatedAuthorization",
    "SimulatedTransactions",
    "Traffic",
    "make_scenario",
    "produce",
    "time_offset_ms",
    "to_epoch_ms",
    "write_jsonl",
]
