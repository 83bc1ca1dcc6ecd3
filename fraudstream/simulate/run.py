"""Put the simulation where the pipeline can read it: JSON-lines files, or Kafka topics.

Labels are interleaved with the authorizations by event time: a label goes out once the authorization stream has
passed its ``ts``, so a consumer never sees a label before it could have been known. So do the issuer's card
reissues (:mod:`fraudstream.simulate.reissues`), which follow every fraud label, the simulated analysts' too.

:func:`produce` sends the Handbook simulator (with a :class:`LabelDelays`) or any made :class:`Traffic`, such as a
scenario of :mod:`fraudstream.simulate.scenarios`, which carries its own labels.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from fraudstream.config import Settings
from fraudstream.contracts import decode, encode
from fraudstream.simulate.handbook import HandbookSimulator, to_epoch_ms
from fraudstream.simulate.labels import Investigator, LabelDelays
from fraudstream.simulate.reissues import REISSUE_AFTER_DAYS, Reissues

__all__ = ["ProduceCounts", "Traffic", "produce", "time_offset_ms", "write_jsonl"]

log = logging.getLogger(__name__)

#: Messages between two ``poll(0)`` calls, which serve delivery callbacks.
POLL_EVERY = 1000
STOP_CHECK_EVERY = 256


class Traffic(Protocol):
    """Made traffic with its truth: what :func:`produce` needs of anything but the Handbook simulator.

    ``events`` are ``fraud.authorizations`` records in ``ts`` order with ``tx_id``s that sort in that order too;
    ``labels`` are ``fraud.labels`` records by ``ts``; ``is_fraud`` is the truth per event (for the investigator);
    ``start_ms`` is day 0 (for ``start``).
    """

    events: list[dict[str, Any]]
    labels: list[dict[str, Any]]
    is_fraud: list[bool]
    start_ms: int


@dataclass(slots=True)
class ProduceCounts:
    """What :func:`produce` sent."""

    events: int = 0
    labels: int = 0
    reissues: int = 0
    dispositions: int = 0
    alerts_seen: int = 0
    delivery_errors: int = 0
    undelivered: int = 0
    offset_ms: int = 0


def write_jsonl(
    path_events: str | Path,
    path_labels: str | Path,
    simulator: HandbookSimulator,
    delays: LabelDelays,
) -> tuple[int, int]:
    """Write ``events.jsonl`` (authorizations, no truth) and ``labels.jsonl`` (by ``ts``); return both counts.

    >>> import tempfile, os
    >>> d = tempfile.mkdtemp()
    >>> sim = HandbookSimulator(n_customers=20, n_terminals=50, n_days=3)
    >>> n_events, n_labels = write_jsonl(os.path.join(d, "e.jsonl"), os.path.join(d, "l.jsonl"), sim, LabelDelays())
    >>> n_events == len(sim.transactions())
    True
    """
    n_events = _write_lines(path_events, (a.as_event() for a in simulator.iter_authorizations()))
    n_labels = _write_lines(path_labels, delays.labels(simulator))
    return n_events, n_labels


def _write_lines(path: str | Path, records: Iterable[dict[str, Any]]) -> int:
    n = 0
    buffer: list[bytes] = []
    with open(path, "wb") as fh:
        for record in records:
            buffer.append(encode(record))
            n += 1
            if len(buffer) >= 10_000:
                fh.write(b"\n".join(buffer) + b"\n")
                buffer.clear()
        if buffer:
            fh.write(b"\n".join(buffer) + b"\n")
    return n


def time_offset_ms(
    simulator: HandbookSimulator | Traffic, start: str | int | None = None, shift_to_now: bool = False, now_ms: int | None = None
) -> int:
    """The constant added to every ``ts``: to move day 0 to ``start``, or the first event to the wall clock."""
    if start is not None and shift_to_now:
        raise ValueError("give either start or shift_to_now, not both")
    if shift_to_now:
        first = _first_ts(simulator)
        if first is None:
            return 0
        now = int(time.time() * 1000) if now_ms is None else now_ms
        return now - first
    if start is not None:
        return to_epoch_ms(start) - simulator.start_ms
    return 0


def _first_ts(simulator: HandbookSimulator | Traffic) -> int | None:
    if isinstance(simulator, HandbookSimulator):
        txs = simulator.transactions()
        return int(txs.ts[0]) if len(txs) else None
    return simulator.events[0]["ts"] if simulator.events else None


@dataclass(slots=True)
class _Source:
    """What produce() sends, whatever made it: events in ts order, labels by ts, and the truth for the investigator."""

    events: Callable[[], Iterator[dict[str, Any]]]
    labels: list[dict[str, Any]]
    truth: Callable[[], tuple[Mapping[str, bool], Mapping[str, str]]]


def _source(simulator: HandbookSimulator | Traffic, delays: LabelDelays | None) -> _Source:
    if isinstance(simulator, HandbookSimulator):
        if delays is None:
            raise TypeError("the Handbook simulator needs LabelDelays for its labels")
        sim = simulator
        txs = sim.transactions()
        return _Source(lambda: (a.as_event() for a in sim.iter_authorizations()), delays.labels(sim),
                       lambda: (txs.fraud_lookup(), txs.card_lookup()))
    if delays is not None:
        raise ValueError("this traffic carries its own labels: give no LabelDelays")
    traffic = simulator

    def truth() -> tuple[Mapping[str, bool], Mapping[str, str]]:
        tx_ids = [e["tx_id"] for e in traffic.events]
        return dict(zip(tx_ids, traffic.is_fraud, strict=True)), {e["tx_id"]: e["card_id"] for e in traffic.events}

    # Copies: the offset is added to what is sent, never to the caller's records.
    return _Source(lambda: (dict(e) for e in traffic.events), list(traffic.labels), truth)


def produce(
    settings: Settings,
    simulator: HandbookSimulator | Traffic,
    delays: LabelDelays | None = None,
    rate_factor: float | None = None,
    investigator_k: int | None = None,
    max_events: int | None = None,
    stop: threading.Event | None = None,
    *,
    start: str | int | None = None,
    shift_to_now: bool = False,
    drain_labels: bool = True,
    investigator_delay_hours: tuple[float, float] = (1.0, 6.0),
    investigator_seed: int = 0,
    investigator_group: str | None = None,
    investigator_linger_s: float = 10.0,
    flush_timeout_s: float = 30.0,
    reissue_after_days: float | None = REISSUE_AFTER_DAYS,
) -> ProduceCounts:
    """Produce authorizations and labels (both keyed by card_id) to the topics named in ``settings``.

    ``simulator`` is the Handbook simulator, whose labels ``delays`` makes, or made :class:`Traffic` (a scenario),
    which brings its own labels (``delays`` None).

    ``rate_factor`` paces event time against the wall clock (3600: a simulated hour per second); ``None`` sends as
    fast as the broker takes it. ``start`` moves day 0 to another date; ``shift_to_now`` moves the first event to
    the wall clock. With ``shift_to_now`` and a ``rate_factor`` above 1, event time runs ahead of the wall clock by
    ``(rate_factor - 1) × elapsed``, and the pipeline rejects timestamps more than a day ahead; live runs therefore
    want a ``rate_factor`` of 1, or ``start`` set in the past.

    With ``investigator_k``, a background consumer reads the alerts topic and answers up to k cards a day with
    ``analyst`` labels. After the last event it keeps answering until ``stop`` is set or no alert came for
    ``investigator_linger_s`` seconds. ``drain_labels`` sends, after the last event, the labels that fall later
    (chargebacks up to 60 days on); it is skipped when ``stop`` ends the run.

    Every fraud label, the investigator's included, is followed by the card's reissue ``reissue_after_days`` later
    in event time (None: the cards are never reissued, and stay blocked), on ``topic_card_reissues``. The reissues
    still pending after the last event (and the investigator's last answers) go out with the drained labels.
    """
    from confluent_kafka import Producer

    conf = settings.kafka_client_config()
    source = _source(simulator, delays)
    counts = ProduceCounts(offset_ms=time_offset_ms(simulator, start, shift_to_now))
    offset = counts.offset_ms

    def delivered(err: Any, _msg: Any) -> None:
        if err is not None:
            counts.delivery_errors += 1

    producer = Producer(settings.producer_config(**{"queue.buffering.max.messages": 500_000, "on_delivery": delivered,
                                                    "linger.ms": settings.source_linger_ms}))
    send = _sender(producer)
    halt = threading.Event()
    reissues = Reissues(reissue_after_days)
    investigator_thread: _InvestigatorLoop | None = None
    if investigator_k is not None:
        is_fraud, card_of = source.truth()
        investigator = Investigator(
            is_fraud, card_of, cards_per_day=investigator_k, delay_hours=investigator_delay_hours, seed=investigator_seed
        )
        group = investigator_group or f"{settings.app_id}-sim-investigator"
        investigator_thread = _InvestigatorLoop(conf, group, settings, investigator, halt, reissues, offset)
        investigator_thread.start()

    labels = source.labels
    pace = _Pacer(rate_factor, stop)
    stopped = False
    last_tx_id: str | None = None
    last_ts: int | None = None
    li = 0
    try:
        for i, event in enumerate(source.events()):
            if max_events is not None and i >= max_events:
                break
            if stop is not None and i % STOP_CHECK_EVERY == 0 and stop.is_set():
                stopped = True
                break
            ts = event["ts"]
            # A label, or a reissue, is known once the event stream is past its ts.
            while True:
                reissue_ts = reissues.next_ts()
                if reissue_ts is not None and reissue_ts < ts and (li == len(labels) or reissue_ts <= labels[li]["ts"]):
                    _send_reissues(send, settings, reissues.due(reissue_ts + 1), offset, counts)
                elif li < len(labels) and labels[li]["ts"] < ts:
                    _send_label(send, settings, labels[li], offset, counts, reissues)
                    li += 1
                else:
                    break
            event["ts"] = ts + offset
            pace.wait(event["ts"], producer)
            producer_key = event["card_id"].encode()
            _produce(producer, settings.topic_authorizations, producer_key, encode(event))
            counts.events += 1
            last_tx_id, last_ts = event["tx_id"], ts
            if counts.events % POLL_EVERY == 0:
                producer.poll(0)
        if drain_labels and not stopped and last_ts is not None:
            for label in labels[li:]:
                if stop is not None and stop.is_set():
                    break
                # After a max_events cut, keep only labels about what was actually sent.
                if "tx_id" in label and label["tx_id"] > last_tx_id:
                    continue
                if "since" in label and label["since"] > last_ts:
                    continue
                _send_reissues(send, settings, reissues.due(label["ts"] + 1), offset, counts, pace, producer, stop)
                pace.wait(label["ts"] + offset, producer)
                _send_label(send, settings, label, offset, counts, reissues)
        if investigator_thread is not None:
            investigator_thread.linger(investigator_linger_s, stop)
        if drain_labels and not stopped and last_ts is not None:
            _send_reissues(send, settings, reissues.due(), offset, counts, pace, producer, stop)
    finally:
        halt.set()
        if investigator_thread is not None:
            investigator_thread.join()
            counts.dispositions = investigator_thread.dispositions
            counts.alerts_seen = investigator_thread.alerts_seen
            counts.delivery_errors += investigator_thread.delivery_errors
        counts.undelivered = producer.flush(flush_timeout_s)
    if investigator_thread is not None and investigator_thread.error is not None:
        raise RuntimeError("the investigator consumer failed") from investigator_thread.error
    log.info("produced %s", counts)
    return counts


def _send_label(send: Callable[[str, dict[str, Any], int], None], settings: Settings, label: dict[str, Any], offset: int,
                counts: ProduceCounts, reissues: Reissues) -> None:
    send(settings.topic_labels, label, offset)
    counts.labels += 1
    reissues.label(label)


def _send_reissues(send: Callable[[str, dict[str, Any], int], None], settings: Settings, due: list[dict[str, Any]],
                   offset: int, counts: ProduceCounts, pace: _Pacer | None = None, producer: Any = None,
                   stop: threading.Event | None = None) -> None:
    """``fraud.card-reissues`` records (``CardReissue``'s fields), in ``ts`` order; paced, when given a pacer."""
    for reissue in due:
        if stop is not None and stop.is_set():
            return
        if pace is not None:
            pace.wait(reissue["ts"] + offset, producer)
        send(settings.topic_card_reissues, reissue, offset)
        counts.reissues += 1


def _produce(producer: Any, topic: str, key: bytes, value: bytes) -> None:
    while True:
        try:
            producer.produce(topic, value, key)
            return
        except BufferError:
            # The local queue is full: let deliveries drain rather than drop the message.
            producer.poll(0.05)


def _sender(producer: Any) -> Callable[[str, dict[str, Any], int], None]:
    def send(topic: str, label: dict[str, Any], offset: int) -> None:
        if offset:
            label = dict(label, ts=label["ts"] + offset)
            if "since" in label:
                label["since"] += offset
        _produce(producer, topic, label["card_id"].encode(), encode(label))

    return send


class _Pacer:
    """Sleeps so that event time advances ``rate_factor`` times faster than the wall clock."""

    def __init__(self, rate_factor: float | None, stop: threading.Event | None) -> None:
        if rate_factor is not None and rate_factor <= 0:
            raise ValueError("rate_factor must be positive, or None for as fast as possible")
        self.rate_factor = rate_factor
        self.stop = stop
        self._origin: tuple[int, float] | None = None

    def wait(self, ts: int, producer: Any) -> None:
        if self.rate_factor is None:
            return
        if self._origin is None:
            self._origin = (ts, time.monotonic())
            return
        ts0, wall0 = self._origin
        ahead = (ts - ts0) / 1000 / self.rate_factor - (time.monotonic() - wall0)
        if ahead > 0.002:  # sleeping for less costs more than it paces
            producer.poll(0)
            if self.stop is not None:
                self.stop.wait(ahead)
            else:
                time.sleep(ahead)


class _InvestigatorLoop(threading.Thread):
    """Reads alerts and produces the investigator's dispositions to the labels topic."""

    def __init__(
        self, conf: dict[str, str], group: str, settings: Settings, investigator: Investigator, halt: threading.Event,
        reissues: Reissues, offset: int = 0,
    ) -> None:
        super().__init__(name="sim-investigator", daemon=True)
        self.conf = conf
        self.group = group
        self.settings = settings
        self.investigator = investigator
        self.halt = halt
        self.reissues = reissues  # a confirmed fraud is followed by the card's reissue, as a known label is
        self.offset = offset  # the alerts carry the sent ts; the reissues are scheduled in the simulator's time
        self.dispositions = 0
        self.alerts_seen = 0
        self.delivery_errors = 0
        self.error: BaseException | None = None
        self.last_alert = time.monotonic()
        self.assigned = threading.Event()

    def linger(self, idle_s: float, stop: threading.Event | None, join_timeout_s: float = 30.0) -> None:
        """Block until ``stop`` is set or, once the consumer has partitions, no alert has come for ``idle_s``."""
        halt = stop or self.halt
        # A group join takes seconds; idle time before it says nothing about the pipeline's alerts.
        deadline = time.monotonic() + join_timeout_s
        while self.is_alive() and not self.assigned.is_set() and not halt.is_set() and time.monotonic() < deadline:
            self.assigned.wait(0.1)
        since = time.monotonic()
        while self.is_alive() and not halt.is_set():
            idle = time.monotonic() - max(self.last_alert, since)
            if idle >= idle_s:
                return
            halt.wait(min(0.2, idle_s - idle))

    def run(self) -> None:
        from confluent_kafka import Consumer, Producer

        def delivered(err: Any, _msg: Any) -> None:
            if err is not None:
                self.delivery_errors += 1

        consumer = Consumer(
            {
                **self.conf,
                "group.id": self.group,
                "auto.offset.reset": "earliest",
                "session.timeout.ms": 6000,
            }
        )
        producer = Producer(self.settings.producer_config(**{"on_delivery": delivered, "linger.ms": self.settings.source_linger_ms}))
        try:
            consumer.subscribe([self.settings.topic_alerts], on_assign=lambda _c, _p: self.assigned.set())
            while not self.halt.is_set():
                for alert in _alerts(consumer.consume(500, timeout=0.2)):
                    self.alerts_seen += 1
                    self.last_alert = time.monotonic()
                    for label in self.investigator.observe_alert(alert):
                        _produce(producer, self.settings.topic_labels, label["card_id"].encode(), encode(label))
                        self.dispositions += 1
                        self.reissues.label(dict(label, ts=label["ts"] - self.offset))
                producer.poll(0)
        except BaseException as exc:  # surfaced by produce() after join
            self.error = exc
            log.exception("investigator consumer failed")
        finally:
            producer.flush(10)
            consumer.close()


def _alerts(messages: list[Any]) -> Iterator[dict[str, Any]]:
    for msg in messages:
        if msg.error() is not None:
            continue
        try:
            value = decode(msg.value())
        except (ValueError, TypeError):  # not ours to dead-letter; the investigator just cannot read it
            continue
        if isinstance(value, dict):
            yield value
