"""What the pipeline knows of a card (and a transaction) when an operator acts on it, and the check of the action.

Plain Python, no Kafka. A :class:`PipelineKnowledge` comes from one of two sources: the command line reads the
scores topic once (:func:`fraudstream.operators.read_pipeline_knowledge`); the console asks its own bounded view
of that topic (:meth:`fraudstream.console.view.PipelineView.knowledge`), kept up to date as it runs, so a button
does not read the whole topic. Either way :func:`unknown_to_pipeline` decides, with the same rules: a card or
transaction nobody has scored is a typo, a transaction of another card a mix-up.

>>> k = PipelineKnowledge("card-1", "tx-9", scored=40, card_ts=[1_700_000_000_000], card_partition=0, tx_card="card-2")
>>> unknown_to_pipeline(k, "fraud.scores")
'transaction tx-9 belongs to card card-2, not to --card card-1; check both ids, or give --force to publish anyway'
>>> unknown_to_pipeline(PipelineKnowledge("card-1", card_ts=[1_700_000_000_000]), "fraud.scores") is None
True
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["PipelineKnowledge", "unknown_to_pipeline", "RETENTION_HINT", "FORCE"]

RETENTION_HINT = "fraud.scores keeps recent authorizations only (7 days by default): check the id"
#: How an operator overrides the check, named at the end of a refusal: the command line's way by default.
FORCE = "give --force to publish anyway"


@dataclass
class PipelineKnowledge:
    """What the pipeline has scored about one card (and one transaction).

    The operator tools check their input against it and stamp what they publish with its event time.
    ``complete`` is False when the source keeps only the card's latest authorizations (the console's view).
    """

    card_id: str
    tx_id: str | None = None
    scored: int = 0  # score records read
    card_ts: list[int] = field(default_factory=list)  # the card's scored authorizations
    card_partition: int | None = None
    tx_card: str | None = None  # the card the transaction was scored on
    newest: dict[int, int] = field(default_factory=dict)  # partition -> newest event time scored there
    complete: bool = True
    override: str = FORCE  # the console has no --force: it says what to do instead

    @property
    def event_time(self) -> int | None:
        """The pipeline's event time where the card is processed: its partition's newest scored authorization
        (any partition's, for a card never seen); None before anything was scored."""
        if self.card_partition is not None and self.card_partition in self.newest:
            return self.newest[self.card_partition]
        return max(self.newest.values(), default=None)

    def stamp(self, wall_ms: int) -> int:
        """The time to stamp an operator's action with: the wall clock, or the pipeline's event time when it is
        behind (a replay, ``make run``). Stamped with the wall clock, a report would block only authorizations
        after it, which a replay reaches weeks later; with event time it blocks the card's next one. In a live
        deployment the two differ by the pipeline's lag, and the action applies to what is scored after it."""
        now = self.event_time
        return wall_ms if now is None or now >= wall_ms else now


def unknown_to_pipeline(knowledge: PipelineKnowledge, source: str) -> str | None:
    """What is wrong with acting on the card (and transaction), or None: a transaction of another card, a
    transaction or a card nobody has scored. ``source`` names what was read (``fraud.scores``)."""
    k = knowledge
    seen = f"in the {k.scored} scored authorizations of {source}"
    if k.tx_id is not None and k.tx_card is not None and k.tx_card != k.card_id:
        return (f"transaction {k.tx_id} belongs to card {k.tx_card}, not to --card {k.card_id}; "
                f"check both ids, or {k.override}")
    if k.tx_id is not None and k.tx_card is None:
        return f"there is no scored transaction {k.tx_id} {seen}; {RETENTION_HINT}, or {k.override}"
    if not k.card_ts:
        return f"there is no scored authorization of card {k.card_id} {seen}; {RETENTION_HINT}, or {k.override}"
    return None
