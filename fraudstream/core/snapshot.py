"""An authorization as it was scored, kept until its label arrives or it matures.

The model learns from the features as they were when the authorization was scored, never from features recomputed
later (that would learn from the future), so each scored authorization is kept by ``tx_id``: its features, score,
decision and, once known, its label. The backtest keeps these records as they are, in a dict; the worker keeps
them as bytes in a changelogged table, through :class:`EncodedSnapshots`. The bytes are the one codec's JSON with
short keys (a worker keeps millions of them), the same as earlier releases wrote, so a rolling upgrade reads them.

>>> from fraudstream.contracts import Authorization
>>> from fraudstream.core.decision import Decision
>>> snap = Snapshot(Authorization("t1", "c1", "m1", 50.0, 1_700_000_000_000), {"amount": 50.0}, 0.7, "logistic-3",
...                 Decision("alert", 0.5, "a-t1"), ["amount 50"], ("R1",), False)
>>> table = EncodedSnapshots({})
>>> table["t1"] = snap
>>> table["t1"] == snap
True
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

from fraudstream.contracts import Authorization, decode, encode
from fraudstream.core.decision import Decision
from fraudstream.core.features.catalogue import FEATURE_NAMES

__all__ = ["Snapshot", "EncodedSnapshots"]

#: The features' vector, in the catalogue's order, when each is present (encoded as the list it replaces).
_VECTOR = itemgetter(*FEATURE_NAMES)


@dataclass(slots=True)
class Snapshot:
    auth: Authorization
    #: The features as scored (stored as a vector in the catalogue's order: ``FEATURE_NAMES``).
    features: dict[str, float]
    score: float
    model_version: str
    decision: Decision
    reasons: list[str]
    #: Every rule that matched, shadow ones included: a rule's precision is counted when the label comes.
    rule_hits: tuple[str, ...]
    late: bool
    #: The label once known: True fraud, False legitimate, None not yet.
    label: bool | None = None
    #: Learned as legitimate for now, as earlier releases flagged it (rewriting the snapshot when its feedback delay
    #: passed). Now derived from the maturity queue (``MaturityQueue.learned``): read, set only on their snapshots.
    provisional: bool = False
    #: The worker's number of the partition's decision it records, set when it is scored (crash replay:
    #: ``fraudstream.stream.stages.score``); kept through later writes.
    decision_number: int | None = None

    def to_bytes(self) -> bytes:
        try:
            vector: Any = _VECTOR(self.features)  # every feature present (a scorer's): a tuple, one C call
        except KeyError:
            vector = [self.features.get(n) for n in FEATURE_NAMES]  # null where one is missing
        return encode(
            {"a": self.auth.as_dict(), "x": vector, "s": self.score, "v": self.model_version,
             "d": self.decision.as_dict(), "r": self.reasons, "h": list(self.rule_hits), "late": self.late,
             "l": self.label, "p": self.provisional, **({} if self.decision_number is None else {"n": self.decision_number})},
            keep=True,
        )

    @classmethod
    def from_bytes(cls, raw: bytes) -> Snapshot:
        return cls.from_dict(decode(raw))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Snapshot:
        dec = d["d"]
        decision = Decision(dec["action"], dec["threshold"], dec["alert_id"], tuple(dec["rules"]))
        features = {n: v for n, v in zip(FEATURE_NAMES, d["x"], strict=False) if v is not None}
        return cls(Authorization(**d["a"]), features, d["s"], d["v"], decision, d["r"], tuple(d["h"]), d["late"], d["l"],
                   bool(d.get("p", False)), d.get("n"))  # "p": absent from snapshots written before provisional learning


class EncodedSnapshots(MutableMapping[str, Snapshot]):
    """Snapshots over a mapping of bytes (the worker's changelogged table): encoded when stored, decoded when read."""

    def __init__(self, durable: MutableMapping[str, bytes]) -> None:
        self.durable = durable

    def __getitem__(self, tx_id: str) -> Snapshot:
        return Snapshot.from_bytes(self.durable[tx_id])

    def get(self, tx_id: str, default: Any = None) -> Any:  # one lookup, not `in` then `[]`
        raw = self.durable.get(tx_id)
        return default if raw is None else Snapshot.from_bytes(raw)

    def __setitem__(self, tx_id: str, snap: Snapshot) -> None:
        self.durable[tx_id] = snap.to_bytes()

    def __delitem__(self, tx_id: str) -> None:
        del self.durable[tx_id]

    def __iter__(self) -> Iterator[str]:
        return iter(self.durable)

    def __len__(self) -> int:
        return len(self.durable)
