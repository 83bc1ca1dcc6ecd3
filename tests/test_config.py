from pathlib import Path

import pytest

from fraudstream.config import ConfigError, Settings


def test_defaults_file_then_environment(tmp_path: Path) -> None:
    cfg = tmp_path / "fraudstream.toml"
    cfg.write_text('alert_budget_per_day = 40\npartitions = 6\nbroker = "kafka://a:9092"\n')
    s = Settings.load(env={"FRAUDSTREAM_CONFIG": str(cfg), "FRAUDSTREAM_PARTITIONS": "12"})
    assert (s.alert_budget_per_day, s.partitions, s.broker) == (40, 12, "kafka://a:9092")
    assert Settings.load(env={}).partitions == 3


def test_bad_values_name_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="FRAUDSTREAM_PARTITIONS must be int"):
        Settings.load(env={"FRAUDSTREAM_PARTITIONS": "many"})
    cfg = tmp_path / "bad.toml"
    cfg.write_text("partitons = 3\n")
    with pytest.raises(ConfigError, match="unknown keys .*partitons"):
        Settings.load(env={"FRAUDSTREAM_CONFIG": str(cfg)})
    with pytest.raises(ConfigError, match="cannot read config file"):
        Settings.load(env={"FRAUDSTREAM_CONFIG": str(tmp_path / "missing.toml")})
    with pytest.raises(ConfigError, match="kafka://host:port"):
        _ = Settings.load(env={"FRAUDSTREAM_BROKER": "localhost:9092"}).bootstrap_servers


def test_sasl_and_ssl_reach_the_client_config() -> None:
    s = Settings.load(env={
        "FRAUDSTREAM_BROKER": "kafka://b1:9093,b2:9093", "FRAUDSTREAM_SECURITY_PROTOCOL": "SASL_SSL",
        "FRAUDSTREAM_SASL_MECHANISM": "SCRAM-SHA-512", "FRAUDSTREAM_SASL_USERNAME": "fs", "FRAUDSTREAM_SASL_PASSWORD": "pw",
        "FRAUDSTREAM_SSL_CAFILE": "/etc/ca.pem",
    })
    assert s.kafka_client_config() == {
        "bootstrap.servers": "b1:9093,b2:9093", "security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "fs", "sasl.password": "pw", "ssl.ca.location": "/etc/ca.pem",
    }


def test_every_setting_round_trips_through_the_environment() -> None:
    s = Settings.load(env={}).with_overrides(partitions=7, grace_ms=1234, model="forest")
    assert Settings.load(env=s.to_env()) == s


def test_every_setting_is_documented() -> None:
    for env, name, _default, doc in Settings.documentation():
        assert env == "FRAUDSTREAM_" + name.upper() or env.startswith("FRAUDSTREAM_"), name
        assert doc, f"{name} has no documentation"
    from fraudstream.config import markdown_table

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert markdown_table() in readme, "README's configuration table is stale: paste `python -m fraudstream.config`"


def test_workers_on_one_host_do_not_collide_on_the_metrics_port() -> None:
    import socket

    from fraudstream.stream.worker import start_metrics_server

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        taken = s.getsockname()[1]
        s.listen()
        settings = Settings.load(env={}).with_overrides(metrics_port=taken, metrics_host="127.0.0.1")
        port = start_metrics_server(settings)
        assert port != taken and taken < port <= taken + 16
