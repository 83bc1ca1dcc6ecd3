"""One frozen settings object for the whole of fraudstream.

Every field is read from an environment variable named beside it, or from a
TOML file named by ``FRAUDSTREAM_CONFIG`` (keys are the field names). The
environment wins over the file, and the file wins over the defaults.

>>> s = Settings.load(env={"FRAUDSTREAM_ALERT_BUDGET_PER_DAY": "50"})
>>> s.alert_budget_per_day
50
>>> s.with_overrides(partitions=8).partitions
8
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from fraudstream.core.features.money import CURRENCIES

__all__ = ["Settings", "ConfigError", "ENV_PREFIX", "PROCESSING_GUARANTEES"]

ENV_PREFIX = "FRAUDSTREAM_"
#: The values of ``FRAUDSTREAM_PROCESSING_GUARANTEE``, the default first.
PROCESSING_GUARANTEES = ("at_least_once", "exactly_once")
#: The batch pacing of runs on the embedded broker (``Settings.with_embedded_broker``): it keeps every record batch
#: and its fetches cost in proportion to them (docs/capacity.md, the soak at 200/s, paced). Apache Kafka needs none.
EMBEDDED_BATCH_FILL = 100
#: The shortest fetch wait of a worker on the embedded broker (``Settings.with_embedded_broker``). Its fetch locates
#: the offset asked in time proportional to the batches the partition holds (about 0.7 ms of CPU per 1,000), and a
#: fetch whose wait is over first comes back empty, data or not: at 10 ms a partition past about 15,000 batches (a
#: `make soak` at 200/s after 24 minutes, the broker busy) is fetched again and again for nothing, and the broker
#: went from half a core to a full one within three minutes (docs/capacity.md, The soak at 200/s).
EMBEDDED_FETCH_WAIT_MS = 100


class ConfigError(ValueError):
    """A setting has a value fraudstream cannot use; the message names it."""


def _env(name: str, doc: str, default: Any) -> Any:
    return field(default=default, metadata={"env": ENV_PREFIX + name, "doc": doc})


@dataclass(frozen=True)
class Settings:
    # --- connection -------------------------------------------------------
    broker: str = _env(
        "BROKER",
        "`embedded` starts the bundled Tansu broker; `kafka://host:port[,host:port]` uses a cluster.",
        "embedded",
    )
    embedded_port: int = _env("EMBEDDED_PORT", "Port of the embedded broker; 0 picks a free one.", 0)
    security_protocol: str = _env(
        "SECURITY_PROTOCOL", "PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL.", "PLAINTEXT"
    )
    sasl_mechanism: str = _env("SASL_MECHANISM", "PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.", "")
    sasl_username: str = _env("SASL_USERNAME", "SASL user name.", "")
    sasl_password: str = _env("SASL_PASSWORD", "SASL password (never logged).", "")
    ssl_cafile: str = _env("SSL_CAFILE", "CA bundle that signed the brokers' certificates.", "")
    ssl_certfile: str = _env("SSL_CERTFILE", "Client certificate for mutual TLS.", "")
    ssl_keyfile: str = _env("SSL_KEYFILE", "Client private key for mutual TLS.", "")

    # --- topics (defaults match topics/*.json) -----------------------------
    topic_authorizations: str = _env("TOPIC_AUTHORIZATIONS", "Card authorizations in.", "fraud.authorizations")
    topic_labels: str = _env("TOPIC_LABELS", "Confirmed outcomes in.", "fraud.labels")
    topic_scores: str = _env("TOPIC_SCORES", "Every authorization, enriched and scored.", "fraud.scores")
    topic_alerts: str = _env("TOPIC_ALERTS", "The review topic.", "fraud.alerts")
    topic_dead_letter: str = _env("TOPIC_DEAD_LETTER", "Messages that could not be processed.", "fraud.dead-letter")
    topic_rules: str = _env("TOPIC_RULES", "Countermeasure rules (compacted).", "fraud.rules")
    topic_card_reissues: str = _env("TOPIC_CARD_REISSUES", "Cards reissued after fraud.", "fraud.card-reissues")
    topic_merchant_partials: str = _env(
        "TOPIC_MERCHANT_PARTIALS", "Internal: each card partition's merchant events, which every worker's merchant features "
        "add up.", "fraud.merchant-partials"
    )
    topic_card_events: str = _env(
        "TOPIC_CARD_EVENTS", "Internal: labels and reissues re-keyed to the partition of the card's state.", "fraud.card-events"
    )
    topic_training: str = _env("TOPIC_TRAINING", "Internal: ordered training examples.", "fraud.training-examples")
    topic_models: str = _env("TOPIC_MODELS", "Internal: model checkpoints (compacted).", "fraud.models")
    topic_audit: str = _env("TOPIC_AUDIT", "Who labelled, reported, reissued or changed a rule from the console, and when.", "fraud.audit")
    partitions: int = _env("PARTITIONS", "Partitions of the keyed topics when fraudstream creates them.", 3)
    source_linger_ms: int = _env(
        "SOURCE_LINGER_MS",
        "How long the traffic sources that come with fraudstream (the simulator and its investigator, `make soak`) "
        "wait to fill a produce batch: fewer, fuller batches (the embedded broker's fetches cost in proportion to the "
        "batches a partition holds), for up to this much latency. Commands that send and wait (labels, rules, the "
        "console) send at once.",
        300,
    )
    replication_factor: int = _env("REPLICATION_FACTOR", "Replication of created topics (3 in production).", 1)

    # --- worker -----------------------------------------------------------
    app_id: str = _env("APP_ID", "Consumer group and changelog prefix of the workers.", "fraudstream")
    store: str = _env("STORE", "Table store: `rocksdb://` in production, `memory://` for tests.", "memory://")
    state_dir: str = _env("STATE_DIR", "Where tables, checkpoints and logs live.", "var/state")
    rocksdb_memory_mb: int = _env(
        "ROCKSDB_MEMORY_MB",
        "Memory of all of a worker's RocksDB databases (one per table and partition it owns), whatever it owns: one "
        "block cache that holds the index and filter blocks and, charged to it, the memtables (at most half). "
        "At least 8. faust's defaults allow gigabytes per table partition.",
        128,
    )
    live_states_max: int = _env(
        "LIVE_STATES_MAX",
        "Card, merchant and standing states a worker keeps as Python objects, each kind (about 4 KB per card); "
        "the others stay in the tables and load when used.",
        50_000,
    )
    session_timeout_s: float = _env(
        "SESSION_TIMEOUT_S", "Consumer session timeout; short when embedded (a join waits half of it).", 6.0
    )
    processing_guarantee: str = _env(
        "PROCESSING_GUARANTEE",
        "`at_least_once`: a crash redelivers, and outputs may repeat (keyed, so readers deduplicate); `exactly_once`: "
        "each batch's outputs, table changelog records and input offsets commit in one Kafka transaction, so a "
        "`read_committed` reader sees each once (README: Exactly once; costs throughput and latency).",
        "at_least_once",
    )
    batch_size: int = _env("BATCH_SIZE", "Authorizations scored per batch.", 1000)
    batch_window_s: float = _env("BATCH_WINDOW_S", "Longest wait to fill a batch.", 0.02)
    batch_fill: int = _env(
        "BATCH_FILL",
        "While traffic is slow, a worker spaces its batches of authorizations this many apart (at most "
        "`FRAUDSTREAM_BATCH_WINDOW_MAX_S`; `fraudstream/stream/pacing.py`): fewer, fuller produce batches, which the "
        "embedded broker needs (its fetches cost in proportion to the batches a partition holds), for up to "
        "`FRAUDSTREAM_BATCH_WINDOW_MAX_S` more latency. 0 (the default): "
        "none, the window alone (lowest latency; Apache Kafka needs no pacing), except where fraudstream starts the "
        "embedded broker (`make run`, `make soak`): 100 there.",
        0,
    )
    batch_window_max_s: float = _env(
        "BATCH_WINDOW_MAX_S",
        "Longest a worker's batches of authorizations are spaced apart while traffic is slow (see `FRAUDSTREAM_BATCH_FILL`): at 200 "
        "authorizations/s, batches of 100 every 0.5 s; above that rate less, with its square (41 ms at 700/s), and "
        "from 1,000/s on `FRAUDSTREAM_BATCH_WINDOW_S` alone.",
        0.5,
    )
    fetch_wait_ms: int = _env(
        "FETCH_WAIT_MS",
        "Longest a worker's fetch waits for data while data flows (faust's is 1500, and the embedded broker answers "
        "an empty fetch only then: every batch waited that long). At least 100 where fraudstream starts "
        "the embedded broker (`make run`, `make soak`): its fetch comes back empty, data or not, once finding the "
        "offset asked takes longer than the wait, which grows with the batches a partition holds.",
        10,
    )
    fetch_wait_idle_ms: int = _env(
        "FETCH_WAIT_IDLE_MS", "The fetch wait doubles after each empty fetch up to this: few fetches while idle.", 100
    )
    metrics_host: str = _env("METRICS_HOST", "Address the /metrics endpoint binds to.", "127.0.0.1")
    metrics_port: int = _env("METRICS_PORT", "Port of /metrics; 0 picks a free one, printed at start.", 9464)
    console_host: str = _env("CONSOLE_HOST", "Address the web console binds to; anything but loopback requires a login.", "127.0.0.1")
    console_port: int = _env("CONSOLE_PORT", "Port of the web console; 0 picks a free one, printed at start.", 8464)
    console_users: str = _env("CONSOLE_USERS", "The console's users file (`fraudstream console add-user NAME` writes it).", "var/console-users")

    # --- features ---------------------------------------------------------
    grace_ms: int = _env("GRACE_MS", "Out-of-order tolerance: later events still land in their windows.", 300_000)
    source_idle_s: float = _env("SOURCE_IDLE_S", "A card partition caught up and with nothing new for this long (wall "
                                "clock) stops holding back the others' merchant features.", 0.5)
    timezone_offset_h: int = _env("TZ_OFFSET_H", "Offset of local time from UTC for night/weekend flags.", 0)
    base_currency: str = _env(
        "BASE_CURRENCY",
        "ISO 4217 code of the currency features compare amounts in (the cards' billing currency); each amount is "
        "converted from its own currency by the approximate rates in fraudstream/core/features/money.py. Change it "
        "only with fresh state: stored windows and the learned model hold amounts in the old one.",
        "JPY",
    )

    # --- learning ---------------------------------------------------------
    model: str = _env("MODEL", "River pipeline of the model, by name in the model factory.", "logistic")
    maturity_days: float = _env(
        "MATURITY_DAYS", "No fraud label after this long means legitimate; longer than the slowest chargebacks.", 61.0
    )
    feedback_delay_days: float = _env(
        "FEEDBACK_DELAY_DAYS",
        "An authorization with no fraud label this long after it is learned as legitimate, provisionally; a later "
        "fraud label (a chargeback) corrects it. At most the maturity period.",
        2.0,
    )
    label_streams: str = _env(
        "LABEL_STREAMS", "`separate`: one model for analyst feedback, one for delayed labels, averaged; `pooled`: one model.", "separate"
    )
    card_report_weight: float = _env(
        "CARD_REPORT_WEIGHT",
        "Learning weight of the transactions after the first one that a card-level report labels (0 = learn only the first).",
        0.2,
    )
    legit_sample_rate: float = _env(
        "LEGIT_SAMPLE_RATE", "Share of legitimate examples learned, chosen by a hash of tx_id (fraud is always learned).", 0.02
    )
    checkpoint_interval_s: float = _env("CHECKPOINT_INTERVAL_S", "Seconds between model checkpoints.", 30.0)

    # --- decisions --------------------------------------------------------
    alert_budget_per_day: int = _env("ALERT_BUDGET_PER_DAY", "Cards the review team checks a day (k).", 100)
    threshold_floor: float = _env("THRESHOLD_FLOOR", "Never alert below this score (quiet days).", 0.2)
    threshold_ceiling: float = _env("THRESHOLD_CEILING", "Always alert at or above this score (fraud waves).", 0.98)
    cooldown_ms: int = _env("COOLDOWN_MS", "One open alert per card for this long.", 3_600_000)

    # --- helpers ----------------------------------------------------------
    def __post_init__(self) -> None:
        if self.batch_fill < 0:
            raise ConfigError(f"{ENV_PREFIX}BATCH_FILL must be 0 (no pacing) or more, got {self.batch_fill}")
        if self.batch_window_max_s < self.batch_window_s:
            raise ConfigError(f"{ENV_PREFIX}BATCH_WINDOW_MAX_S ({self.batch_window_max_s}) must be at least "
                              f"{ENV_PREFIX}BATCH_WINDOW_S ({self.batch_window_s})")
        if self.processing_guarantee not in PROCESSING_GUARANTEES:
            raise ConfigError(f"{ENV_PREFIX}PROCESSING_GUARANTEE must be one of {', '.join(PROCESSING_GUARANTEES)}, "
                              f"got {self.processing_guarantee!r}")
        if self.base_currency not in CURRENCIES:
            env = ENV_PREFIX + "BASE_CURRENCY"
            raise ConfigError(f"{env} must be a currency of the exchange-rate table in fraudstream/core/features/money.py "
                              f"({', '.join(sorted(CURRENCIES))}), got {self.base_currency!r}")

    @classmethod
    def load(cls, env: Mapping[str, str] | None = None, file: str | Path | None = None) -> Settings:
        """Defaults, then the TOML file, then the environment."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        path = file or env.get(ENV_PREFIX + "CONFIG")
        if path:
            try:
                with open(path, "rb") as fh:
                    values.update(tomllib.load(fh))
            except (OSError, tomllib.TOMLDecodeError) as exc:
                raise ConfigError(f"cannot read config file {path}: {exc}") from exc
            unknown = set(values) - {f.name for f in fields(cls)}
            if unknown:
                raise ConfigError(f"unknown keys in {path}: {', '.join(sorted(unknown))}")
        for f in fields(cls):
            raw = env.get(f.metadata["env"])
            if raw is not None:
                values[f.name] = raw
        return cls(**{k: _coerce(cls, k, v) for k, v in values.items()})

    def with_overrides(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **{k: _coerce(type(self), k, v) for k, v in changes.items()})

    def with_embedded_broker(self, url: str) -> Settings:
        """These settings on the embedded broker fraudstream started at ``url``, with its batch pacing
        (:data:`EMBEDDED_BATCH_FILL`) unless ``FRAUDSTREAM_BATCH_FILL`` sets one, and fetches that wait at least
        :data:`EMBEDDED_FETCH_WAIT_MS`.

        >>> s = Settings.load(env={}).with_embedded_broker("kafka://127.0.0.1:9092")
        >>> s.broker, s.batch_fill, s.fetch_wait_ms
        ('kafka://127.0.0.1:9092', 100, 100)
        """
        return self.with_overrides(broker=url, batch_fill=self.batch_fill or EMBEDDED_BATCH_FILL,
                                   fetch_wait_ms=max(self.fetch_wait_ms, EMBEDDED_FETCH_WAIT_MS),
                                   fetch_wait_idle_ms=max(self.fetch_wait_idle_ms, EMBEDDED_FETCH_WAIT_MS))

    @property
    def exactly_once(self) -> bool:
        """Outputs, state and input offsets commit in one transaction (``FRAUDSTREAM_PROCESSING_GUARANTEE``)."""
        return self.processing_guarantee == "exactly_once"

    @property
    def embedded(self) -> bool:
        return self.broker == "embedded"

    @property
    def bootstrap_servers(self) -> str:
        """`host:port,...` for clients; only valid once the broker is known."""
        if self.embedded:
            raise ConfigError("the embedded broker has no address until it starts")
        if not self.broker.startswith("kafka://"):
            raise ConfigError(f"FRAUDSTREAM_BROKER must be `embedded` or kafka://host:port, not {self.broker!r}")
        return self.broker[len("kafka://") :].rstrip("/")

    def kafka_client_config(self) -> dict[str, str]:
        """librdkafka settings shared by every confluent-kafka client."""
        conf = {"bootstrap.servers": self.bootstrap_servers, "security.protocol": self.security_protocol}
        if self.sasl_mechanism:
            conf.update(
                {
                    "sasl.mechanism": self.sasl_mechanism,
                    "sasl.username": self.sasl_username,
                    "sasl.password": self.sasl_password,
                }
            )
        for key, value in (
            ("ssl.ca.location", self.ssl_cafile),
            ("ssl.certificate.location", self.ssl_certfile),
            ("ssl.key.location", self.ssl_keyfile),
        ):
            if value:
                conf[key] = value
        return conf

    def to_env(self) -> dict[str, str]:
        """These settings as environment variables, for a child process."""
        return {f.metadata["env"]: str(getattr(self, f.name)) for f in fields(self)}

    def producer_config(self, **extra: Any) -> dict[str, Any]:
        """The one way to configure a producer.

        Keys are partitioned with murmur2 like the Java client and KafkaJS, so
        labels keyed by card from any client land on the partition that holds
        the card's state. No compression: consumers on any client can read it
        (brokers or topics can still compress).
        """
        return {**self.kafka_client_config(), "partitioner": "murmur2_random", "linger.ms": 5, **extra}

    @classmethod
    def documentation(cls) -> list[tuple[str, str, Any, str]]:
        """(env var, field, default, meaning) for the README's table."""
        return [(f.metadata["env"], f.name, f.default, f.metadata["doc"]) for f in fields(cls)]


def markdown_table() -> str:
    """The README's configuration table: ``python -m fraudstream.config``."""
    rows = ["| variable | default | meaning |", "| --- | --- | --- |"]
    rows += [f"| `{env}` | `{default}` | {doc} |" for env, _name, default, doc in Settings.documentation()]
    return "\n".join(rows)


def _coerce(cls: type[Settings], name: str, value: Any) -> Any:
    kinds: dict[str, type] = {f.name: type(f.default) for f in fields(cls)}
    if name not in kinds:
        raise ConfigError(f"unknown setting {name!r}")
    kind = kinds[name]
    if isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
        return value
    try:
        if kind is bool:
            return str(value).lower() in {"1", "true", "yes", "on"}
        return kind(value)
    except (TypeError, ValueError):
        env = {f.name: f.metadata["env"] for f in fields(cls)}[name]
        raise ConfigError(f"{env} must be {kind.__name__}, got {value!r}") from None


if __name__ == "__main__":  # pragma: no cover
    print(markdown_table())
