"""The tables the score stage and the card events share: those of the partition where a card's alerts are decided."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["CardTables"]


@dataclass(slots=True)
class CardTables:
    """The card-partition tables (``fraudstream.stream.tables.TableMapping`` in the worker): standings, the
    card-transaction index, snapshots, early labels, the partitions' thresholds, and snapshots awaiting maturity."""

    standings: Any
    index: Any
    snapshots: Any
    early_labels: Any
    thresholds: Any
    maturity: Any

    def set_partition(self, partition: int) -> None:
        """Per-event writes (snapshots, indexes) go to the changelog partition of the event."""
        self.snapshots.partition = partition
        self.index.partition = partition
        self.early_labels.partition = partition

    def route_card(self, card_id: str, partition: int) -> None:
        """The card's standing and index go to ``partition``'s changelog, wherever they are written in the batch."""
        self.standings.route(card_id, partition)
        self.index.route(card_id, partition)
