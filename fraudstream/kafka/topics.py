"""Topic contracts from ``topics/*.json``, and provisioning them with the admin client."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from fraudstream.config import Settings
from fraudstream.kafka.reach import ClientErrors, cluster_metadata

__all__ = ["TopicSpec", "load_specs", "create_topics", "TOPICS_DIR", "SETTING_FOR_TOPIC"]

TOPICS_DIR = Path(__file__).resolve().parents[2] / "topics"

#: Which setting renames which default topic.
SETTING_FOR_TOPIC = {
    "fraud.authorizations": "topic_authorizations",
    "fraud.labels": "topic_labels",
    "fraud.scores": "topic_scores",
    "fraud.alerts": "topic_alerts",
    "fraud.dead-letter": "topic_dead_letter",
    "fraud.rules": "topic_rules",
    "fraud.card-reissues": "topic_card_reissues",
    "fraud.merchant-partials": "topic_merchant_partials",
    "fraud.card-events": "topic_card_events",
    "fraud.training-examples": "topic_training",
    "fraud.models": "topic_models",
    "fraud.audit": "topic_audit",
}


@dataclass(frozen=True)
class TopicSpec:
    name: str  # the default name, as in topics/
    partitions: int
    key: str | None
    config: dict[str, str]
    value_schema: dict[str, Any]
    description: str
    internal: bool

    def name_in(self, settings: Settings) -> str:
        return str(getattr(settings, SETTING_FOR_TOPIC[self.name]))

    def partitions_in(self, settings: Settings) -> int:
        # Keyed, multi-partition topics follow the configured count; single-partition
        # topics (ordered training examples, rules, models) stay single.
        return settings.partitions if self.partitions > 1 else 1


def load_specs(directory: Path | None = None) -> list[TopicSpec]:
    directory = directory or TOPICS_DIR
    specs = []
    for path in sorted(directory.glob("*.json")):
        d = json.loads(path.read_text())
        specs.append(TopicSpec(d["name"], d["partitions"], d["key"], d["config"], d["value_schema"], d["description"], d["internal"]))
    return specs


def create_topics(settings: Settings, bootstrap: str | None = None, timeout: float = 15.0) -> dict[str, str]:
    """Create every topic that does not exist; returns name → created / exists.

    Configs are always given explicitly: some brokers (the embedded one)
    report only the configs set at creation.
    """
    conf = settings.kafka_client_config() if bootstrap is None else {**_conf_without_bootstrap(settings), "bootstrap.servers": bootstrap}
    errors = ClientErrors()
    admin = AdminClient({**conf, **errors.config()})
    cluster_metadata(admin, errors, conf["bootstrap.servers"], within=timeout)  # unreachable: one clear error
    new = [
        NewTopic(spec.name_in(settings), spec.partitions_in(settings), settings.replication_factor, config=dict(spec.config))
        for spec in load_specs()
    ]
    result = {}
    for name, fut in admin.create_topics(new, request_timeout=timeout).items():
        try:
            fut.result(timeout)
            result[name] = "created"
        except KafkaException as exc:
            if exc.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS:
                result[name] = "exists"
            else:
                raise
    return result


def _conf_without_bootstrap(settings: Settings) -> dict[str, str]:
    s = settings if not settings.embedded else settings.with_overrides(broker="kafka://unused:0")
    conf = s.kafka_client_config()
    conf.pop("bootstrap.servers")
    return conf


