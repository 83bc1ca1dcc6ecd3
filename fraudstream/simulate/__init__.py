"""Simulated card traffic to measure fraudstream against.

- :class:`HandbookSimulator`: the Fraud Detection Handbook's transaction simulator, with its truth.
- :class:`LabelDelays`: customer reports and chargebacks, as late as they really are.
- :class:`Investigator`: the analyst team answering k cards of alerts a day.
- :func:`write_jsonl` and :func:`produce`: to files, or to Kafka.
"""

from fraudstream.simulate.handbook import HandbookSimulator, SimulatedAuthorization, SimulatedTransactions, to_epoch_ms
from fraudstream.simulate.labels import Investigator, LabelDelays
from fraudstream.simulate.run import ProduceCounts, produce, time_offset_ms, write_jsonl

__all__ = [
    "HandbookSimulator",
    "Investigator",
    "LabelDelays",
    "ProduceCounts",
    "SimulatedAuthorization",
    "SimulatedTransactions",
    "produce",
    "time_offset_ms",
    "to_epoch_ms",
    "write_jsonl",
]
