import json

import jsonschema
import pytest
from confluent_kafka.admin import AdminClient, ConfigResource

from fraudstream.contracts import Rejection, decode_authorization, decode_label, encode
from fraudstream.kafka.topics import SETTING_FOR_TOPIC, TOPICS_DIR, create_topics, load_specs

from ..conftest import isolated_settings

pytestmark = pytest.mark.broker


def test_create_twice_is_harmless_and_configs_are_explicit(broker, tmp_path):
    s = isolated_settings(broker, tmp_path, partitions=4)
    first = create_topics(s)
    assert set(first.values()) == {"created"} and len(first) == len(load_specs())
    assert set(create_topics(s).values()) == {"exists"}
    admin = AdminClient({"bootstrap.servers": s.bootstrap_servers})
    md = admin.list_topics(timeout=10).topics
    for spec in load_specs():
        name = spec.name_in(s)
        assert len(md[name].partitions) == spec.partitions_in(s)
        configs = admin.describe_configs([ConfigResource("TOPIC", name)])
        got = {k: v.value for k, v in next(iter(configs.values())).result().items()}
        assert got["cleanup.policy"] == spec.config["cleanup.policy"]


def test_every_topic_file_is_complete_and_mapped_to_a_setting():
    for spec in load_specs():
        assert spec.name in SETTING_FOR_TOPIC, spec.name
        assert spec.config["cleanup.policy"] in ("delete", "compact")
        jsonschema.Draft202012Validator.check_schema(spec.value_schema)
    assert len(list(TOPICS_DIR.glob("*.json"))) == len(SETTING_FOR_TOPIC)


def _schema(name):
    return json.loads((TOPICS_DIR / f"{name}.json").read_text())["value_schema"]


GOOD = {"tx_id": "t1", "card_id": "c1", "merchant_id": "m1", "amount": 12.5, "ts": 1_700_000_000_000}
CASES = [
    GOOD,
    {**GOOD, "currency": "EUR", "mcc": "5411", "country": "JP", "channel": "ecom", "extra": {"ignored": True}},
    {**GOOD, "amount": 0},
    {**GOOD, "amount": -3},
    {**GOOD, "amount": "12"},
    {**GOOD, "ts": 12.5},
    {**GOOD, "ts": 5},
    {**GOOD, "mcc": "54"},
    {**GOOD, "country": "jp"},
    {**GOOD, "channel": "phone"},
    {k: v for k, v in GOOD.items() if k != "merchant_id"},
    {**GOOD, "card_id": ""},
]


@pytest.mark.parametrize("value", CASES)
def test_decoder_agrees_with_the_published_schema(value):
    schema_ok = jsonschema.Draft202012Validator(_schema("fraud.authorizations")).is_valid(value)
    key = str(value.get("card_id", "")).encode() or b"k"
    decoded = decode_authorization(encode(value), key)
    assert schema_ok == (not isinstance(decoded, Rejection)), decoded


def test_label_decoder_agrees_with_the_schema():
    schema = jsonschema.Draft202012Validator(_schema("fraud.labels"))
    base = {"card_id": "c1", "is_fraud": True, "ts": 1_700_000_000_000, "source": "analyst"}
    for value in ({**base, "tx_id": "t1"}, {**base, "since": 1_699_000_000_000}, base, {**base, "tx_id": "t1", "is_fraud": "yes"}):
        assert schema.is_valid(value) == (not isinstance(decode_label(encode(value), b"c1"), Rejection)), value
