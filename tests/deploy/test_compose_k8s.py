"""deploy/docker-compose.yml, deploy/k8s/ and deploy/Dockerfile, checked against the project without Docker.

Docker and a cluster are not available where the tests run, so the files are parsed (PyYAML, from the dev
extra: the real YAML semantics, anchors and merge keys included, as compose and kubectl read them) and every
link to the project is checked: the commands parse with fraudstream's own CLI, ``topics create`` creates every
contract of topics/ with replication 3 on the brokers listed, every FRAUDSTREAM_* variable is a real setting,
ports agree end to end (setting, container, Service, PodMonitor, annotation, Prometheus target; Kafka
listeners, advertised addresses, quorum voters and the bootstrap list), Prometheus loads the repository's
rules, Grafana mounts the repository's provisioning and dashboards, state lives on the volume the settings
point at. Renaming a setting, a port, a topic command or a directory fails here.
"""

from __future__ import annotations

import json
import re
import shlex
import tomllib
import types
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
from deploy_support import DASHBOARDS_DIR, GRAFANA_DIR, PROM_DIR, ROOT, rule_files, run_promtool

try:
    import yaml
except ImportError as exc:  # pragma: no cover - the dev extra has it
    raise ImportError("PyYAML is in the dev extra of pyproject.toml: pip install -e '.[dev]'") from exc

from fraudstream.cli import build_parser, cmd_topics, cmd_worker
from fraudstream.config import ENV_PREFIX, Settings
from fraudstream.kafka import topics as topics_mod

DEPLOY = ROOT / "deploy"
COMPOSE_FILE = DEPLOY / "docker-compose.yml"
K8S_DIR = DEPLOY / "k8s"
DOCKERFILE = DEPLOY / "Dockerfile"
CAPACITY_DOC = ROOT / "docs" / "capacity.md"
SECRET_TEMPLATE = "secret-template.yaml"

#: Every variable fraudstream reads: the documented settings, and the TOML file's name.
SETTING_VARS = {env for env, _name, _default, _doc in Settings.documentation()} | {ENV_PREFIX + "CONFIG"}
VAR_RE = re.compile(r"\b" + ENV_PREFIX + r"[A-Z0-9_]+\b")
#: The Prometheus job the rules and dashboards select on.
JOB = "fraudstream"


# =========================================================================== Dockerfile
def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        full = pending + stripped
        pending = ""
        word, _, rest = full.partition(" ")
        out.append((word.upper(), rest.strip()))
    assert not pending, "Dockerfile ends with a continuation line"
    return out


class Image:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.text = path.read_text(encoding="utf-8")
        self.instructions = dockerfile_instructions(self.text)

    def all(self, word: str) -> list[str]:
        return [args for w, args in self.instructions if w == word]

    def last(self, word: str) -> str:
        found = self.all(word)
        assert found, f"{self.path.name}: no {word}"
        return found[-1]

    def exec_form(self, word: str) -> list[str]:
        args = self.last(word)
        assert args.startswith("["), f"{word} must use the exec form (JSON array), so the worker gets SIGTERM: {args}"
        value = json.loads(args)
        assert isinstance(value, list) and all(isinstance(v, str) for v in value)
        return value

    @property
    def entrypoint(self) -> list[str]:
        return self.exec_form("ENTRYPOINT")

    @property
    def cmd(self) -> list[str]:
        return self.exec_form("CMD")

    @property
    def env(self) -> dict[str, str]:
        env: dict[str, str] = {}
        for args in self.all("ENV"):
            for token in shlex.split(args):
                key, sep, value = token.partition("=")
                assert sep, f"ENV {args!r}: use the KEY=value form"
                env[key] = value
        return env

    @property
    def volumes(self) -> list[str]:
        out: list[str] = []
        for args in self.all("VOLUME"):
            out += json.loads(args) if args.startswith("[") else args.split()
        return out

    @property
    def user(self) -> str:
        return self.last("USER")


@pytest.fixture(scope="module")
def image() -> Image:
    return Image(DOCKERFILE)


def pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


# =========================================================================== YAML
def load_compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))


def k8s_files() -> list[Path]:
    return sorted(K8S_DIR.glob("*.yaml"))


def k8s_documents() -> list[tuple[Path, dict[str, Any]]]:
    out = []
    for path in k8s_files():
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if doc is not None:
                out.append((path, doc))
    return out


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_compose()


@pytest.fixture(scope="module")
def k8s() -> list[dict[str, Any]]:
    return [doc for path, doc in k8s_documents() if path.name != "kustomization.yaml"]


def one(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for d in docs if d.get("kind") == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''} in deploy/k8s, found {len(found)}"
    return found[0]


# =========================================================================== compose helpers
def env_of(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.partition("=")[::2] for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def our_image_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The services built from deploy/Dockerfile."""
    out = {}
    for name, svc in compose["services"].items():
        build = svc.get("build")
        if isinstance(build, dict) and (COMPOSE_FILE.parent / build.get("context", ".") / build.get("dockerfile", "Dockerfile")).resolve() == DOCKERFILE:
            out[name] = svc
    return out


def compose_argv(svc: dict[str, Any], image: Image) -> list[str]:
    """What the container runs: compose's entrypoint/command overriding the image's ENTRYPOINT/CMD."""
    def listify(v: Any) -> list[str]:
        return shlex.split(v) if isinstance(v, str) else [str(x) for x in v]
    entry = listify(svc["entrypoint"]) if "entrypoint" in svc else image.entrypoint
    if "command" in svc:
        cmd = listify(svc["command"])
    else:
        cmd = [] if "entrypoint" in svc else image.cmd
    return entry + cmd


def workers(compose: dict[str, Any], image: Image) -> dict[str, dict[str, Any]]:
    return {name: svc for name, svc in our_image_services(compose).items() if compose_argv(svc, image)[1:2] == ["worker"]}


def topics_services(compose: dict[str, Any], image: Image) -> dict[str, dict[str, Any]]:
    return {name: svc for name, svc in our_image_services(compose).items() if compose_argv(svc, image)[1:3] == ["topics", "create"]}


def kafka_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: svc for name, svc in compose["services"].items() if str(svc.get("image", "")).startswith("apache/kafka:")}


def mounts(svc: dict[str, Any]) -> list[tuple[str, str]]:
    """(source, target) of each volume: short syntax ``src:dst[:mode]`` or the long one."""
    out = []
    for v in svc.get("volumes") or []:
        if isinstance(v, dict):
            out.append((str(v.get("source", "")), str(v["target"])))
        else:
            parts = str(v).split(":")
            out.append((parts[0], parts[1]) if len(parts) > 1 else ("", parts[0]))
    return out


def is_bind(source: str) -> bool:
    return source.startswith((".", "/", "~"))


def host_path(svc: dict[str, Any], container_path: str) -> Path:
    """The repository path a bind mount puts at ``container_path`` (relative sources are relative to the compose file)."""
    best: tuple[int, Path] | None = None
    for source, target in mounts(svc):
        if not is_bind(source):
            continue
        t = PurePosixPath(target)
        p = PurePosixPath(container_path)
        if p == t or t in p.parents:
            candidate = (COMPOSE_FILE.parent / source / p.relative_to(t)).resolve()
            if best is None or len(t.parts) > best[0]:
                best = (len(t.parts), candidate)
    assert best is not None, f"nothing is mounted at {container_path}"
    return best[1]


def cli_parses(argv: list[str]) -> Any:
    assert argv and argv[0] == "fraudstream", f"not a fraudstream command: {argv}"
    try:
        return build_parser().parse_args(argv[1:])
    except SystemExit:
        pytest.fail(f"`{' '.join(argv)}` does not parse with fraudstream's CLI", pytrace=False)


def broker_endpoints(broker_url: str) -> list[tuple[str, int]]:
    assert broker_url.startswith("kafka://"), broker_url
    out = []
    for hostport in broker_url[len("kafka://"):].rstrip("/").split(","):
        host, _, port = hostport.strip().rpartition(":")
        out.append((host, int(port)))
    return out


def listeners(value: str) -> dict[str, tuple[str, int]]:
    """``NAME://host:port,...`` → {NAME: (host, port)}."""
    out = {}
    for item in value.split(","):
        name, _, rest = item.strip().partition("://")
        host, _, port = rest.rpartition(":")
        out[name] = (host, int(port))
    return out


# =========================================================================== k8s helpers
def pod_spec(doc: dict[str, Any]) -> dict[str, Any]:
    return doc["spec"]["template"]["spec"]


def container_env(docs: list[dict[str, Any]], container: dict[str, Any]) -> dict[str, str]:
    """The container's environment: envFrom (ConfigMaps, Secrets of the template) then env, as Kubernetes does."""
    env: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        if "configMapRef" in source:
            env.update({k: str(v) for k, v in one(docs, "ConfigMap", source["configMapRef"]["name"])["data"].items()})
        elif "secretRef" in source:
            secret = one(docs, "Secret", source["secretRef"]["name"])
            env.update({k: str(v) for k, v in (secret.get("stringData") or {}).items()})
    for item in container.get("env") or []:
        if "value" in item:
            env[item["name"]] = str(item["value"])
    return env


def k8s_argv(container: dict[str, Any], image: Image) -> list[str]:
    if "command" in container:
        return list(container["command"]) + list(container.get("args") or [])
    return image.entrypoint + list(container["args"] if "args" in container else image.cmd)


def named_port(container: dict[str, Any], port: int | str) -> int:
    if isinstance(port, int):
        return port
    if str(port).isdigit():
        return int(port)
    found = [p["containerPort"] for p in container.get("ports") or [] if p.get("name") == port]
    assert len(found) == 1, f"no container port named {port!r}"
    return int(found[0])


def volume_mount_for(spec: dict[str, Any], container: dict[str, Any], path: str) -> tuple[str, str]:
    """(volume name, mountPath) of the mount that holds ``path``."""
    for m in container.get("volumeMounts") or []:
        mp = PurePosixPath(m["mountPath"])
        p = PurePosixPath(path)
        if p == mp or mp in p.parents:
            return m["name"], m["mountPath"]
    pytest.fail(f"{path} is on no volume of container {container['name']}", pytrace=False)


def worker_statefulset(k8s: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    sts = one(k8s, "StatefulSet")
    (container,) = pod_spec(sts)["containers"]
    return sts, container


def topics_job(k8s: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    job = one(k8s, "Job")
    (container,) = pod_spec(job)["containers"]
    return job, container


def fraudstream_containers(k8s: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for doc in k8s:
        if doc["kind"] in ("StatefulSet", "Job", "Deployment", "DaemonSet", "CronJob"):
            for c in pod_spec(doc)["containers"] + (pod_spec(doc).get("initContainers") or []):
                if str(c["image"]).split(":")[0].rsplit("/", 1)[-1] == "fraudstream":
                    yield f"{doc['kind']}/{doc['metadata']['name']}/{c['name']}", c


# =========================================================================== what `topics create` would create
def topics_created(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Run the real ``create_topics`` with the container's environment against a recording admin client."""
    created: list[Any] = []

    class Done:
        def result(self, timeout: float | None = None) -> None:
            return None

    class RecordingAdmin:
        def __init__(self, conf: dict[str, str]) -> None:
            self.conf = conf

        def list_topics(self, topic: str | None = None, timeout: float = 0) -> Any:
            return types.SimpleNamespace(topics={}, brokers={1: "broker"})  # the cluster answers: topics are created

        def create_topics(self, new: list[Any], request_timeout: float = 0) -> dict[str, Done]:
            created.extend(new)
            return {t.topic: Done() for t in new}

    monkeypatch.setattr(topics_mod, "AdminClient", RecordingAdmin)
    settings = Settings.load(env=env)
    topics_mod.create_topics(settings)
    return created


def contract_names() -> set[str]:
    return {json.loads(p.read_text(encoding="utf-8"))["name"] for p in sorted((ROOT / "topics").glob("*.json"))}


def check_topics_creation(env: dict[str, str], monkeypatch: pytest.MonkeyPatch, where: str) -> None:
    settings = Settings.load(env=env)
    assert env.get(ENV_PREFIX + "REPLICATION_FACTOR") == "3", f"{where}: FRAUDSTREAM_REPLICATION_FACTOR must be 3"
    created = topics_created(env, monkeypatch)
    specs = topics_mod.load_specs()
    assert {s.name for s in specs} == contract_names(), "load_specs() must be every contract of topics/"
    assert sorted(t.topic for t in created) == sorted(s.name_in(settings) for s in specs), where
    assert all(t.replication_factor == 3 for t in created), where
    assert all(t.num_partitions == s.partitions_in(settings) for t, s in zip(sorted(created, key=lambda t: t.topic),
                                                                           sorted(specs, key=lambda s: s.name_in(settings)), strict=True))


# =========================================================================== the image
def test_dockerfile_base_extra_and_user(image: Image):
    assert image.last("FROM") == "python:3.11-slim"
    installs = [args for args in image.all("RUN") if "pip install" in args]
    assert installs, "the image must pip install the package"
    extras = set(re.findall(r"\[([a-z0-9_,-]+)\]", " ".join(installs))[0].split(","))
    assert extras == {"rocksdb"}, extras
    assert "rocksdb" in pyproject()["project"]["optional-dependencies"], "the image installs an extra pyproject.toml lacks"
    user = image.user.split(":")[0]
    assert user not in ("root", "0") and user.isdigit(), "run as a numeric non-root uid (runAsNonRoot can check it)"
    assert int(user) > 0


def test_dockerfile_carries_the_topic_contracts(image: Image):
    # `topics create` reads topics/ beside the package (TOPICS_DIR): the image must have it there.
    assert topics_mod.TOPICS_DIR == ROOT / "topics"
    copies = [args.split() for args in image.all("COPY")]
    sources = {src.rstrip("/") for parts in copies for src in parts[:-1] if not src.startswith("--")}
    assert {"fraudstream", "topics", "pyproject.toml"} <= sources, sources
    assert any("-e" in args.split() for args in image.all("RUN") if "pip install" in args), \
        "install editable, so TOPICS_DIR (relative to the package) is the copied topics/"


def test_dockerfile_entrypoint_runs_the_worker(image: Image):
    argv = image.entrypoint + image.cmd
    assert argv == ["fraudstream", "worker"], argv
    assert pyproject()["project"]["scripts"]["fraudstream"] == "fraudstream.cli:main"
    assert cli_parses(argv).func is cmd_worker


def test_dockerfile_state_volume_and_settings(image: Image):
    env = image.env
    assert set(k for k in env if k.startswith(ENV_PREFIX)) <= SETTING_VARS
    Settings.load(env=env)  # the values have the right types
    assert env[ENV_PREFIX + "STATE_DIR"] == "/var/lib/fraudstream"
    assert image.volumes == [env[ENV_PREFIX + "STATE_DIR"]]
    assert env[ENV_PREFIX + "STORE"] == "rocksdb://"
    assert env[ENV_PREFIX + "METRICS_HOST"] == "0.0.0.0"
    assert image.all("EXPOSE") == [env[ENV_PREFIX + "METRICS_PORT"]]


# =========================================================================== every command, every variable
def test_every_fraudstream_command_parses(compose, k8s, image: Image):
    commands = [compose_argv(svc, image) for svc in our_image_services(compose).values()]
    commands += [k8s_argv(c, image) for _where, c in fraudstream_containers(k8s)]
    assert len(commands) >= 4
    for argv in commands:
        cli_parses(argv)


def test_every_fraudstream_variable_is_a_setting(compose, k8s, image: Image):
    used: dict[str, set[str]] = {}
    for path in [COMPOSE_FILE, DOCKERFILE, PROM_DIR / "prometheus-compose.yml", *k8s_files()]:
        for var in VAR_RE.findall(path.read_text(encoding="utf-8")):
            used.setdefault(var, set()).add(path.name)
    # Also the keys the parsers see (a key written without the literal prefix would slip past the text scan).
    for name, svc in compose["services"].items():
        for var in env_of(svc):
            if var.startswith(ENV_PREFIX):
                used.setdefault(var, set()).add(f"compose:{name}")
    for doc in k8s:
        for key in list(doc.get("data") or {}) + list(doc.get("stringData") or {}):
            if doc["kind"] == "ConfigMap" or key.startswith(ENV_PREFIX):
                used.setdefault(key, set()).add(f"{doc['kind']}/{doc['metadata']['name']}")
    for where, c in fraudstream_containers(k8s):
        for item in c.get("env") or []:
            used.setdefault(item["name"], set()).add(where)
    unknown = {var: sorted(files) for var, files in used.items() if var not in SETTING_VARS}
    assert not unknown, f"not fraudstream settings (see `python -m fraudstream.config`): {unknown}"
    assert len(used) >= 10


def test_every_fraudstream_environment_loads(compose, k8s, image: Image):
    for svc in our_image_services(compose).values():
        Settings.load(env={**image.env, **env_of(svc)})  # raises ConfigError naming a value of the wrong type
    for _where, c in fraudstream_containers(k8s):
        Settings.load(env={**image.env, **container_env(k8s, c)})


# =========================================================================== compose: Kafka
def test_compose_three_kraft_brokers(compose):
    brokers = kafka_services(compose)
    assert len(brokers) == 3, sorted(brokers)
    declared = set((compose.get("volumes") or {}).keys())
    node_ids, cluster_ids, data_volumes, voters_seen = {}, set(), set(), set()
    for name, svc in brokers.items():
        env = env_of(svc)
        assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}, name
        assert svc.get("hostname", name) == name
        node_ids[name] = int(env["KAFKA_NODE_ID"])
        cluster_ids.add(env["CLUSTER_ID"])
        voters_seen.add(env["KAFKA_CONTROLLER_QUORUM_VOTERS"])
        # its own volume at its log dir
        (source,) = [src for src, target in mounts(svc) if target == env["KAFKA_LOG_DIRS"]]
        assert source in declared and not is_bind(source), f"{name}: a named volume at KAFKA_LOG_DIRS"
        data_volumes.add(source)
        assert int(env["KAFKA_DEFAULT_REPLICATION_FACTOR"]) == 3 and int(env["KAFKA_MIN_INSYNC_REPLICAS"]) == 2
        assert int(env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"]) == 3
    assert len(set(node_ids.values())) == 3, node_ids
    assert len(cluster_ids) == 1, "one CLUSTER_ID for the three"
    assert len(data_volumes) == 3, "each broker has its own volume"
    (voters,) = voters_seen
    controller_ports = set()
    for name, svc in brokers.items():
        env = env_of(svc)
        ls = listeners(env["KAFKA_LISTENERS"])
        (controller,) = env["KAFKA_CONTROLLER_LISTENER_NAMES"].split(",")
        controller_ports.add(ls[controller][1])
        protocol_map = dict(item.split(":") for item in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
        assert set(ls) <= set(protocol_map), name
        assert env["KAFKA_INTER_BROKER_LISTENER_NAME"] in ls and env["KAFKA_INTER_BROKER_LISTENER_NAME"] != controller
    (controller_port,) = controller_ports
    assert set(voters.split(",")) == {f"{node_ids[name]}@{name}:{controller_port}" for name in brokers}


def test_compose_bootstrap_list_is_the_advertised_listeners(compose, image: Image):
    brokers = kafka_services(compose)
    advertised = set()
    for name, svc in brokers.items():
        env = env_of(svc)
        ls = listeners(env["KAFKA_LISTENERS"])
        adv = listeners(env["KAFKA_ADVERTISED_LISTENERS"])
        client = env["KAFKA_INTER_BROKER_LISTENER_NAME"]
        host, port = adv[client]
        assert host == name, f"{name} advertises {host}: clients in the compose network resolve service names"
        assert port == ls[client][1], f"{name}: advertised port {port} is not the listener's {ls[client][1]}"
        assert f"localhost:{port}" in " ".join(svc["healthcheck"]["test"]), f"{name}: the healthcheck asks another port"
        advertised.add((host, port))
    for name, svc in our_image_services(compose).items():
        endpoints = broker_endpoints(env_of(svc)[ENV_PREFIX + "BROKER"])
        assert set(endpoints) == advertised and len(endpoints) == 3, f"{name}: {endpoints} vs brokers {advertised}"


# =========================================================================== compose: topics and workers
def test_compose_topics_service_creates_every_topic(compose, image: Image, monkeypatch):
    services = topics_services(compose, image)
    assert len(services) == 1, "one service runs `fraudstream topics create`"
    (name, svc), = services.items()
    args = cli_parses(compose_argv(svc, image))
    assert args.func is cmd_topics and args.action == "create"
    assert svc.get("restart", "no") == "no", "a one-shot service"
    for broker in kafka_services(compose):
        assert svc["depends_on"][broker]["condition"] == "service_healthy", f"{name} waits for {broker}"
    check_topics_creation({**image.env, **env_of(svc)}, monkeypatch, f"compose {name}")


def test_compose_workers(compose, image: Image):
    ws = workers(compose, image)
    assert len(ws) >= 3, sorted(ws)
    (topics_name,) = topics_services(compose, image)
    declared = set((compose.get("volumes") or {}).keys())
    state_volumes = set()
    for name, svc in ws.items():
        env = {**image.env, **env_of(svc)}
        assert env[ENV_PREFIX + "STORE"] == "rocksdb://", name
        assert env[ENV_PREFIX + "METRICS_HOST"] == "0.0.0.0", name
        assert float(env[ENV_PREFIX + "SESSION_TIMEOUT_S"]) >= 10, f"{name}: a session timeout for real Kafka"
        assert svc["depends_on"][topics_name]["condition"] == "service_completed_successfully", name
        state_dir = env[ENV_PREFIX + "STATE_DIR"]
        (source,) = [src for src, target in mounts(svc) if target == state_dir]
        assert source in declared and not is_bind(source), f"{name}: a named volume at FRAUDSTREAM_STATE_DIR"
        state_volumes.add(source)
    assert len(state_volumes) == len(ws), "each worker has its own state volume"


def test_compose_topics_and_workers_agree(compose, image: Image):
    # Changelogs are created by the workers with these: they must match the topics' partitions and replication.
    shared = [ENV_PREFIX + k for k in ("BROKER", "PARTITIONS", "REPLICATION_FACTOR", "APP_ID")]
    envs = {name: {**image.env, **env_of(svc)} for name, svc in our_image_services(compose).items()}
    for var in shared:
        values = {name: Settings.load(env=e).to_env()[var] for name, e in envs.items()}
        assert len(set(values.values())) == 1, f"{var} differs: {values}"


# =========================================================================== compose: Prometheus and Grafana
def prometheus_config_path(svc: dict[str, Any]) -> tuple[str, Path]:
    flags = [str(a) for a in svc.get("command") or []]
    (config,) = [f.split("=", 1)[1] for f in flags if f.startswith("--config.file=")]
    return config, host_path(svc, config)


def test_compose_prometheus_loads_the_repository_rules(compose):
    svc = compose["services"]["prometheus"]
    _inside, config_path = prometheus_config_path(svc)
    assert config_path.parent == PROM_DIR and config_path.is_file(), config_path
    cfg = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    loaded = sorted({p.resolve() for pattern in cfg["rule_files"] for p in config_path.parent.glob(pattern)})
    assert loaded == [p.resolve() for p in rule_files()] and loaded, loaded
    # The same intervals and job as prometheus.yml: the recording rules and dashboards assume them.
    base = yaml.safe_load((PROM_DIR / "prometheus.yml").read_text(encoding="utf-8"))
    assert cfg["global"] == base["global"]
    (job,) = [j for j in cfg["scrape_configs"] if j["job_name"] == JOB]
    (base_job,) = [j for j in base["scrape_configs"] if j["job_name"] == JOB]
    assert {k: v for k, v in job.items() if k != "static_configs"} == {k: v for k, v in base_job.items() if k != "static_configs"}


def test_compose_prometheus_config_is_valid():
    _, config_path = prometheus_config_path(load_compose()["services"]["prometheus"])
    proc = run_promtool("check", "config", config_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_compose_prometheus_scrapes_every_worker_on_its_metrics_port(compose, image: Image):
    _, config_path = prometheus_config_path(compose["services"]["prometheus"])
    cfg = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    (job,) = [j for j in cfg["scrape_configs"] if j["job_name"] == JOB]
    targets = {t for sc in job["static_configs"] for t in sc["targets"]}
    expected = set()
    for name, svc in workers(compose, image).items():
        port = int({**image.env, **env_of(svc)}[ENV_PREFIX + "METRICS_PORT"])
        assert str(port) in [str(p) for p in svc.get("expose") or []], f"{name} does not expose {port}"
        expected.add(f"{svc.get('hostname', name)}:{port}")
    assert targets == expected


def test_compose_grafana_mounts_the_repository_provisioning_and_dashboards(compose):
    svc = compose["services"]["grafana"]
    provisioning = host_path(svc, "/etc/grafana/provisioning")
    assert provisioning == (GRAFANA_DIR / "provisioning").resolve() and provisioning.is_dir()
    providers = [p for f in sorted((provisioning / "dashboards").glob("*.yml"))
                 for p in yaml.safe_load(f.read_text(encoding="utf-8"))["providers"]]
    assert providers
    for provider in providers:
        dashboards = host_path(svc, provider["options"]["path"])
        assert dashboards == DASHBOARDS_DIR.resolve(), f"the provider reads {provider['options']['path']}, which is not the dashboards"
        assert sorted(dashboards.glob("*.json")), "no dashboard in the mounted directory"
    for source, _target in mounts(svc):
        if is_bind(source):
            assert (COMPOSE_FILE.parent / source).exists(), f"grafana mounts {source}, which does not exist"


def test_compose_grafana_datasource_is_the_compose_prometheus(compose):
    svc = compose["services"]["grafana"]
    datasources = host_path(svc, "/etc/grafana/provisioning/datasources")
    (ds,) = [d for f in sorted(datasources.glob("*.yml")) for d in yaml.safe_load(f.read_text(encoding="utf-8"))["datasources"]
             if d["type"] == "prometheus"]
    m = re.fullmatch(r"http://([^:/]+):(\d+)/?", ds["url"])
    assert m, ds["url"]
    assert m.group(1) in compose["services"], f"the datasource points at {m.group(1)}, not a compose service"
    prom = compose["services"][m.group(1)]
    listen = [str(a).split("=", 1)[1] for a in prom.get("command") or [] if str(a).startswith("--web.listen-address=")]
    assert int(m.group(2)) == int((listen[0] if listen else "0.0.0.0:9090").rpartition(":")[2])


# =========================================================================== k8s
def test_k8s_files_explain_themselves():
    assert k8s_files(), "deploy/k8s is empty"
    for path in [*k8s_files(), COMPOSE_FILE, DOCKERFILE]:
        lines = path.read_text(encoding="utf-8").splitlines()
        header = []
        for line in lines:
            if not line.startswith("#"):
                break
            header.append(line)
        assert len(header) >= 3, f"{path.name}: start with a comment saying what it is and why"


def test_k8s_kustomization_lists_everything_but_the_secret_template():
    kustomization = yaml.safe_load((K8S_DIR / "kustomization.yaml").read_text(encoding="utf-8"))
    expected = sorted(p.name for p in k8s_files() if p.name not in ("kustomization.yaml", SECRET_TEMPLATE))
    assert sorted(kustomization["resources"]) == expected
    assert SECRET_TEMPLATE not in kustomization["resources"], "applying -k would overwrite the real secrets with placeholders"


def test_k8s_objects_live_in_the_namespace(k8s):
    ns = one(k8s, "Namespace")["metadata"]["name"]
    for doc in k8s:
        if doc["kind"] != "Namespace":
            assert doc["metadata"].get("namespace") == ns, f"{doc['kind']}/{doc['metadata']['name']}"


def test_k8s_secret_template_has_placeholders_only(k8s):
    docs = [doc for path, doc in k8s_documents() if path.name == SECRET_TEMPLATE]
    assert {d["kind"] for d in docs} == {"Secret"}
    sasl = one(docs, "Secret", "fraudstream-kafka-sasl")
    assert set(sasl["stringData"]) == {ENV_PREFIX + "SASL_USERNAME", ENV_PREFIX + "SASL_PASSWORD"}
    assert set(sasl["stringData"]) <= SETTING_VARS
    assert set(sasl["stringData"].values()) == {"CHANGE-ME"}, "never a real credential in git"
    for d in docs:
        assert all("CHANGE-ME" in str(v) for v in d["stringData"].values())


def test_k8s_topics_job_creates_every_topic(k8s, image: Image, monkeypatch):
    _job, c = topics_job(k8s)
    args = cli_parses(k8s_argv(c, image))
    assert args.func is cmd_topics and args.action == "create"
    env = {**image.env, **container_env(k8s, c)}
    check_topics_creation(env, monkeypatch, "k8s Job")
    endpoints = broker_endpoints(env[ENV_PREFIX + "BROKER"])
    assert len({host for host, _ in endpoints}) == 3, f"name the three brokers: {endpoints}"
    assert len({port for _, port in endpoints}) == 1


def test_k8s_job_and_workers_share_the_cluster_settings(k8s, image: Image):
    _job, job_c = topics_job(k8s)
    _sts, worker_c = worker_statefulset(k8s)
    job_env = Settings.load(env={**image.env, **container_env(k8s, job_c)}).to_env()
    worker_env = Settings.load(env={**image.env, **container_env(k8s, worker_c)}).to_env()
    for var in ("BROKER", "PARTITIONS", "REPLICATION_FACTOR", "APP_ID", "SECURITY_PROTOCOL", "SASL_MECHANISM", "SASL_USERNAME",
                "SSL_CAFILE"):
        assert job_env[ENV_PREFIX + var] == worker_env[ENV_PREFIX + var], var


def test_k8s_ca_file_is_mounted_from_the_ca_secret(k8s, image: Image):
    docs = [doc for path, doc in k8s_documents() if path.name == SECRET_TEMPLATE]
    for doc in (topics_job(k8s)[0], worker_statefulset(k8s)[0]):
        (c,) = pod_spec(doc)["containers"]
        cafile = container_env(k8s, c)[ENV_PREFIX + "SSL_CAFILE"]
        vol_name, mount_path = volume_mount_for(pod_spec(doc), c, cafile)
        (vol,) = [v for v in pod_spec(doc)["volumes"] if v["name"] == vol_name]
        secret = one(docs, "Secret", vol["secret"]["secretName"])
        assert str(PurePosixPath(cafile).relative_to(mount_path)) in secret["stringData"], cafile


def test_k8s_workers(k8s, image: Image):
    sts, c = worker_statefulset(k8s)
    argv = k8s_argv(c, image)
    assert cli_parses(argv).func is cmd_worker, argv
    env = {**image.env, **container_env(k8s, c)}
    assert env[ENV_PREFIX + "STORE"] == "rocksdb://"
    assert env[ENV_PREFIX + "METRICS_HOST"] == "0.0.0.0"
    assert float(env[ENV_PREFIX + "SESSION_TIMEOUT_S"]) >= 10
    # RocksDB state on the claim template's volume, at FRAUDSTREAM_STATE_DIR
    state_dir = env[ENV_PREFIX + "STATE_DIR"]
    claims = {t["metadata"]["name"] for t in sts["spec"]["volumeClaimTemplates"]}
    (mount,) = [m for m in c["volumeMounts"] if m["name"] in claims]
    assert mount["mountPath"] == state_dir
    assert not mount.get("readOnly")
    # the image's user can write it
    sc = pod_spec(sts)["securityContext"]
    uid = int(image.user.split(":")[0])
    assert sc["runAsNonRoot"] is True and sc["runAsUser"] == uid and sc["fsGroup"] == uid
    # resources: requests and limits for cpu and memory
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(c["resources"][kind]), kind
    assert sts["spec"]["replicas"] >= 2


def test_k8s_image_is_the_project_version(compose, k8s):
    version = pyproject()["project"]["version"]
    tags = {c["image"] for _w, c in fraudstream_containers(k8s)} | {svc["image"] for svc in our_image_services(compose).values()}
    assert tags == {f"fraudstream:{version}"}, tags


def test_k8s_metrics_port_end_to_end(k8s, image: Image):
    sts, c = worker_statefulset(k8s)
    port = int(container_env(k8s, c)[ENV_PREFIX + "METRICS_PORT"])
    assert named_port(c, "metrics") == port
    assert image.all("EXPOSE") == [str(port)]
    annotations = sts["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert int(annotations["prometheus.io/port"]) == port
    assert annotations.get("prometheus.io/path", "/metrics") == "/metrics"
    services = [d for d in k8s if d["kind"] == "Service"]
    assert len(services) == 2
    for svc in services:
        (p,) = svc["spec"]["ports"]
        assert p["port"] == port and named_port(c, p["targetPort"]) == port, svc["metadata"]["name"]
    pm = one(k8s, "PodMonitor")
    (endpoint,) = pm["spec"]["podMetricsEndpoints"]
    assert named_port(c, endpoint["port"]) == port
    assert endpoint.get("path", "/metrics") == "/metrics"
    for probe in ("readinessProbe", "livenessProbe"):
        assert named_port(c, c[probe]["httpGet"]["port"]) == port, probe


def test_k8s_selectors_and_labels(k8s):
    sts, _c = worker_statefulset(k8s)
    pod_labels = sts["spec"]["template"]["metadata"]["labels"]

    def selects(selector: dict[str, str]) -> bool:
        return bool(selector) and all(pod_labels.get(k) == v for k, v in selector.items())

    assert selects(sts["spec"]["selector"]["matchLabels"])
    headless = [s for s in k8s if s["kind"] == "Service" and s["spec"].get("clusterIP") == "None"]
    assert [s["metadata"]["name"] for s in headless] == [sts["spec"]["serviceName"]]
    for svc in (d for d in k8s if d["kind"] == "Service"):
        assert selects(svc["spec"]["selector"]), svc["metadata"]["name"]
    pm = one(k8s, "PodMonitor")
    assert pm["apiVersion"] == "monitoring.coreos.com/v1"
    assert selects(pm["spec"]["selector"]["matchLabels"])
    assert pod_labels[pm["spec"]["jobLabel"]] == JOB, "the rules and dashboards select job=\"fraudstream\""
    pdb = one(k8s, "PodDisruptionBudget")
    assert selects(pdb["spec"]["selector"]["matchLabels"])
    assert pdb["spec"].get("maxUnavailable") == 1 or pdb["spec"].get("minAvailable") == sts["spec"]["replicas"] - 1


def test_k8s_sizing_is_the_capacity_model(k8s):
    """The manifests' sizes are the ones docs/capacity.md derives; changing one means revisiting the other."""
    doc = CAPACITY_DOC.read_text(encoding="utf-8")
    sts, c = worker_statefulset(k8s)
    (claim,) = sts["spec"]["volumeClaimTemplates"]
    partitions = one(k8s, "ConfigMap", "fraudstream-kafka")["data"][ENV_PREFIX + "PARTITIONS"]
    for value in (f"replicas: {sts['spec']['replicas']}", f"{ENV_PREFIX}PARTITIONS={partitions}",
                  f"cpu request {c['resources']['requests']['cpu']}", f"cpu limit {c['resources']['limits']['cpu']}",
                  f"memory {c['resources']['limits']['memory']}", f"storage {claim['spec']['resources']['requests']['storage']}"):
        assert value in doc, f"docs/capacity.md does not state the manifests' {value!r}"
