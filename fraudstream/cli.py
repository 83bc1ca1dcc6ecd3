"""The ``fraudstream`` command. Every subcommand validates its input and says what is wrong."""

from __future__ import annotations

import argparse
import datetime as dt
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fraudstream.broker import BrokerError
from fraudstream.config import ConfigError, Settings
from fraudstream.contracts import LABEL_SOURCES

__all__ = ["main"]


class UsageError(Exception):
    """Bad input from the command line: printed without a traceback."""


def _settings(args: argparse.Namespace) -> Settings:
    s = Settings.load()
    if getattr(args, "broker", None):
        s = s.with_overrides(broker=args.broker)
    return s


def _need_cluster(s: Settings) -> Settings:
    if s.embedded:
        from fraudstream.broker import running_brokers

        raise UsageError(embedded_message(running_brokers()))
    return s


def _reachable(s: Settings) -> Settings:
    """A broker that answers, or one clear error (BrokerUnreachable) instead of librdkafka's connection log."""
    from confluent_kafka.admin import AdminClient

    from fraudstream.kafka.reach import ClientErrors, cluster_metadata

    _need_cluster(s)
    errors = ClientErrors()
    cluster_metadata(AdminClient({**s.kafka_client_config(), **errors.config()}), errors, s.bootstrap_servers)
    return s


def embedded_message(running: list[str]) -> str:
    """What to do when FRAUDSTREAM_BROKER is `embedded` and a command needs a broker's address.

    >>> print(embedded_message(["kafka://127.0.0.1:9092"]).splitlines()[1])
      An embedded broker is running at kafka://127.0.0.1:9092 (started by `fraudstream run` or `fraudstream broker`):
    """
    head = "FRAUDSTREAM_BROKER is `embedded`, and this command needs the address of a running broker."
    if len(running) == 1:
        return (f"{head}\n  An embedded broker is running at {running[0]} (started by `fraudstream run` or "
                f"`fraudstream broker`):\n  export FRAUDSTREAM_BROKER={running[0]}   or give --broker {running[0]}")
    if running:
        return (f"{head}\n  Embedded brokers are running at {', '.join(running)}; name the one your pipeline uses "
                "(`fraudstream run` prints it):\n  export FRAUDSTREAM_BROKER=kafka://127.0.0.1:PORT   or give --broker")
    return (f"{head}\n  No embedded broker is running on this host. Start the whole pipeline with `fraudstream run` "
            "(or `make run`),\n  or a broker alone with `fraudstream broker`, then export the FRAUDSTREAM_BROKER it prints.")


# --- broker, topics -----------------------------------------------------------
def cmd_broker(args: argparse.Namespace) -> int:
    from fraudstream.broker import EmbeddedBroker
    from fraudstream.kafka.topics import create_topics

    s = _settings(args)
    broker = EmbeddedBroker(port=args.port if args.port is not None else s.embedded_port).start()
    print(f"embedded broker listening on {broker.bootstrap_servers}", flush=True)
    print(f"  export FRAUDSTREAM_BROKER={broker.url}", flush=True)
    # Workers started apart from the broker cannot tell it is the embedded one, which slows as its partitions fill
    # with small batches: they pace their batches and wait longer in a fetch (as `fraudstream run` has them do) only
    # if told so.
    on_it = s.with_embedded_broker(broker.url)
    print(f"  export FRAUDSTREAM_BATCH_FILL={on_it.batch_fill}   (workers: fewer, fuller batches on this broker)",
          flush=True)
    print(f"  export FRAUDSTREAM_FETCH_WAIT_MS={on_it.fetch_wait_ms}   (workers: fetches this broker can answer as it "
          "fills)", flush=True)
    if args.create_topics:
        create_topics(s, broker.bootstrap_servers)
        print("  topics created from topics/", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.is_set() and broker.process is not None and broker.process.poll() is None:
            stop.wait(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        broker.stop()
        print("embedded broker stopped", flush=True)
    return 0


def cmd_topics(args: argparse.Namespace) -> int:
    from fraudstream.kafka.topics import create_topics, load_specs

    s = _settings(args)
    if args.action == "list":
        for spec in load_specs():
            print(f"{spec.name_in(s):36} partitions={spec.partitions_in(s):<3} key={spec.key or '-':12} "
                  f"cleanup={spec.config['cleanup.policy']:8} {'(internal)' if spec.internal else ''}")
        return 0
    for name, status in sorted(create_topics(_need_cluster(s)).items()):
        print(f"{name:36} {status}")
    return 0


# --- worker ---------------------------------------------------------------------
def cmd_worker(args: argparse.Namespace) -> int:
    from fraudstream.stream.worker import run_worker

    s = _need_cluster(_settings(args))
    return run_worker(s, loglevel=args.loglevel)


# --- simulate -------------------------------------------------------------------
def _simulator(args: argparse.Namespace) -> Any:
    from fraudstream.simulate import HandbookSimulator

    if args.customers <= 0 or args.terminals <= 0 or args.days <= 0:
        raise UsageError("--customers, --terminals and --days must be positive")
    return HandbookSimulator(n_customers=args.customers, n_terminals=args.terminals, n_days=args.days,
                             start=args.start, seed=args.seed)


#: Sizes of the named scenarios when --days and --start are not given (the Handbook keeps its own: 183, 2018-04-01).
SCENARIO_DAYS, SCENARIO_START = 60, "2026-01-05"


def _scenario_help() -> str:
    from fraudstream.simulate.scenarios import SCENARIOS

    listed = "; ".join(f"{name}: {text}" for name, text in SCENARIOS.items())
    return (f"what to simulate (default handbook). {listed}. Scenarios other than handbook take --customers as cards "
            f"and default to --days {SCENARIO_DAYS} --start {SCENARIO_START}; --terminals is the Handbook's only")


def cmd_simulate(args: argparse.Namespace) -> int:
    if args.scenario != "handbook":
        return _simulate_scenario(args)
    from fraudstream.simulate import LabelDelays, produce, write_jsonl

    args.days = 183 if args.days is None else args.days
    args.start = "2018-04-01" if args.start is None else args.start
    sim = _simulator(args)
    delays = LabelDelays(seed=args.seed)
    if args.jsonl:
        os.makedirs(args.jsonl, exist_ok=True)
        n_events, n_labels = write_jsonl(os.path.join(args.jsonl, "events.jsonl"), os.path.join(args.jsonl, "labels.jsonl"),
                                         sim, delays)
        print(f"wrote {n_events} authorizations and {n_labels} labels to {args.jsonl}/")
        return 0
    s = _reachable(_settings(args))
    counts = produce(s, sim, delays, rate_factor=args.rate, investigator_k=args.investigate, max_events=args.max_events,
                     shift_to_now=args.shift_to_now)
    print(f"produced {counts.events} authorizations, {counts.labels} labels, {counts.dispositions} analyst dispositions")
    return 0 if not counts.delivery_errors else 1


def _simulate_scenario(args: argparse.Namespace) -> int:
    from fraudstream.simulate import make_scenario, produce

    days = SCENARIO_DAYS if args.days is None else args.days
    if args.customers <= 0 or days <= 0:
        raise UsageError("--customers and --days must be positive")
    data = make_scenario(args.scenario, cards=args.customers, days=days, seed=args.seed,
                         start=SCENARIO_START if args.start is None else args.start)
    fraud = sum(data.is_fraud)
    summary = f"{args.scenario}: {len(data.events)} authorizations ({fraud} fraudulent) and {len(data.labels)} labels"
    if args.jsonl:
        data.write_jsonl(args.jsonl)
        print(f"wrote {summary} to {args.jsonl}/ (events.jsonl, labels.jsonl, truth.jsonl)")
        return 0
    s = _reachable(_settings(args))
    counts = produce(s, data, rate_factor=args.rate, investigator_k=args.investigate, max_events=args.max_events,
                     shift_to_now=args.shift_to_now)
    print(f"{summary}; produced {counts.events} authorizations, {counts.labels} labels, "
          f"{counts.dispositions} analyst dispositions")
    return 0 if not counts.delivery_errors else 1


# --- run: the whole pipeline on simulated traffic ----------------------------------------
def cmd_run(args: argparse.Namespace) -> int:
    from fraudstream.launcher import run_pipeline

    if args.customers <= 0 or args.terminals <= 0 or args.days <= 0:
        raise UsageError("--customers, --terminals and --days must be positive")
    args.start = resolve_run_start(args)
    return run_pipeline(_settings(args), args)


# --- backtest --------------------------------------------------------------------
def cmd_backtest(args: argparse.Namespace) -> int:
    from fraudstream.backtest import run_backtest_cli

    return run_backtest_cli(_settings(args), args)


# --- model checkpoints ---------------------------------------------------------------
def cmd_model(args: argparse.Namespace) -> int:
    from confluent_kafka import KafkaException

    from fraudstream.stream.learning import Checkpoint, publish_checkpoint

    try:
        raw = Path(args.file).read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {args.file}: {exc.strerror}") from exc
    try:
        Checkpoint.unpack(raw)  # the file first: a wrong file is the user's to fix whether or not the brokers answer
    except Exception as exc:  # not a checkpoint: what a worker could not load either
        raise UsageError(f"{args.file} is not a model checkpoint (fraudstream backtest --save-model FILE writes one): {exc}") from exc
    s = _reachable(_settings(args))
    try:
        model, header = publish_checkpoint(s, raw)
    except (KafkaException, LookupError, TimeoutError) as exc:
        raise UsageError(str(exc)) from exc
    print(f"published model {model.version} from {args.file} to {s.topic_models}: generation {header.generation}, "
          f"training offset {header.offset} (the end of {s.topic_training} now)")
    if (model.name, model.streams) != (s.model, s.label_streams):
        print(f"note: the model is {model.name} with {model.streams} label streams; FRAUDSTREAM_MODEL and "
              f"FRAUDSTREAM_LABEL_STREAMS say {s.model}, {s.label_streams}. Workers use the checkpoint's.", file=sys.stderr)
    print("every worker starts from it; running workers switch to it within a second")
    return 0


# --- operator tools ----------------------------------------------------------------
def cmd_rules(args: argparse.Namespace) -> int:
    from fraudstream.operators import rules_command

    return rules_command(_need_cluster(_settings(args)), args)


def cmd_alerts(args: argparse.Namespace) -> int:
    from fraudstream.operators import tail_alerts

    return tail_alerts(_need_cluster(_settings(args)), args)


def cmd_label(args: argparse.Namespace) -> int:
    from fraudstream.operators import publish_label

    return publish_label(_need_cluster(_settings(args)), args)


def cmd_report_fraud(args: argparse.Namespace) -> int:
    from fraudstream.operators import report_fraud

    return report_fraud(_need_cluster(_settings(args)), args)


def cmd_reissue(args: argparse.Namespace) -> int:
    from fraudstream.operators import reissue_card

    return reissue_card(_need_cluster(_settings(args)), args)


# --- web console ---------------------------------------------------------------------
def cmd_console(args: argparse.Namespace) -> int:
    s = _settings(args)
    users_path = Path(args.users or s.console_users)
    if args.action == "add-user":
        return _console_add_user(users_path, args)
    if args.user:
        raise UsageError(f"`console` takes no user name (did you mean `console add-user {args.user}`?)")
    from fraudstream.console import run_console

    s = _need_cluster(s)
    host = args.host if args.host is not None else s.console_host
    port = args.port if args.port is not None else s.console_port
    urls = args.metrics or [f"http://{s.metrics_host}:{s.metrics_port}/metrics"]
    return int(run_console(s, host, port, users_path, urls, Path(args.audit_file) if args.audit_file else None))


def _console_add_user(users_path: Path, args: argparse.Namespace) -> int:
    import getpass

    from fraudstream.console.security import Users

    if not args.user:
        raise UsageError("console add-user needs a user name: fraudstream console add-user NAME")
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass(f"password for {args.user}: ")
        if getpass.getpass("again: ") != password:
            raise UsageError("the two passwords differ; nothing was written")
    try:
        Users(users_path).add(args.user, password)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    print(f"user {args.user} can log in to the console (users file {users_path})")
    return 0


def _sim_args(p: argparse.ArgumentParser, customers: int = 5000, terminals: int = 10000, days: int | None = 183,
              start: str | None = "2018-04-01", start_help: str = "first simulated day (YYYY-MM-DD, a UTC day)") -> None:
    p.add_argument("--customers", type=int, default=customers, help="cards simulated (one per customer)")
    p.add_argument("--terminals", type=int, default=terminals, help="merchant terminals simulated")
    p.add_argument("--days", type=int, default=days, help="days of traffic simulated")
    p.add_argument("--start", default=start, help=start_help)
    p.add_argument("--seed", type=int, default=0, help="random seed: the same seed gives the same traffic")


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default, except where there is none to show (None, a flag's False)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False or "default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


#: Label sources an operator may give (``maturity`` is the worker's own).
OPERATOR_SOURCES = tuple(sorted(LABEL_SOURCES - {"maturity"}))


def resolve_run_start(args: argparse.Namespace) -> str:
    """``run --start``: the day given (validated), or ``--days`` days before today so the traffic ends near now.

    >>> import datetime as dt
    >>> resolve_run_start(argparse.Namespace(start="2018-04-01", days=60))
    '2018-04-01'
    """
    if args.start is None:
        return (dt.date.today() - dt.timedelta(days=args.days)).isoformat()
    try:
        day = dt.date.fromisoformat(args.start)
    except ValueError:
        raise UsageError(f"--start {args.start!r} is not a day: give YYYY-MM-DD, e.g. 2018-04-01") from None
    if day > dt.date.today():
        raise UsageError(f"--start {args.start} is in the future; the simulated traffic must have happened already")
    if day.year < 2000:
        raise UsageError(f"--start {args.start} is before 2000; authorizations that old are refused as bad timestamps")
    return day.isoformat()


def build_parser() -> argparse.ArgumentParser:
    fmt = _HelpFormatter
    broker_help = "kafka://host:port[,host:port], overrides FRAUDSTREAM_BROKER (before or after the subcommand)"
    parser = argparse.ArgumentParser(prog="fraudstream", description="Streaming card-fraud monitoring.", formatter_class=fmt)
    parser.add_argument("--broker", default=None, help=broker_help)
    # The same option after the subcommand; SUPPRESS keeps a --broker given before it when it is absent after.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--broker", default=argparse.SUPPRESS, help=broker_help)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help: str, description: str | None = None) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help, description=description or help[0].upper() + help[1:] + ".",
                              formatter_class=fmt, parents=[common])

    p = command("broker", "run the embedded broker on 127.0.0.1",
                "Run the embedded Kafka-compatible broker (Tansu) on 127.0.0.1 until Ctrl-C; it prints the "
                "FRAUDSTREAM_BROKER value the other commands need.")
    p.add_argument("--port", type=int, default=None, help="port (default: FRAUDSTREAM_EMBEDDED_PORT, 0 = a free one)")
    p.add_argument("--create-topics", action="store_true", help="also create the topics of topics/")
    p.set_defaults(func=cmd_broker)

    p = command("topics", "create or list the topics of topics/")
    p.add_argument("action", choices=["create", "list"], help="create them on the broker, or list them with their settings")
    p.set_defaults(func=cmd_topics)

    p = command("worker", "run a worker (faust app)",
                "Run a worker: it scores authorizations, raises alerts, learns from labels and exports /metrics.")
    p.add_argument("--loglevel", default="info", choices=["debug", "info", "warn", "error"], help="log level")
    p.set_defaults(func=cmd_worker)

    p = command("simulate", "the Handbook simulator or a named fraud scenario, to Kafka or JSONL files")
    _sim_args(p, days=None, start=None, start_help="first simulated day (YYYY-MM-DD, a UTC day); default: 2018-04-01 for the "
              f"Handbook, {SCENARIO_START} for the scenarios")
    p.set_defaults(days=None, start=None)  # each scenario has its own; cmd_simulate fills them in
    p._option_string_actions["--days"].help = f"days of traffic simulated (default: 183 for the Handbook, {SCENARIO_DAYS} for the scenarios)"
    from fraudstream.simulate.scenarios import SCENARIOS

    p.add_argument("--scenario", default="handbook", choices=list(SCENARIOS), metavar="NAME", help=_scenario_help())
    p.add_argument("--jsonl", metavar="DIR", help="write DIR/events.jsonl and DIR/labels.jsonl (scenarios: and truth.jsonl) instead of Kafka")
    p.add_argument("--rate", type=float, default=None, help="real-time factor (3600 = a simulated hour a second); default: as fast as possible")
    p.add_argument("--investigate", type=int, default=None, metavar="K", help="answer alerts for K cards a day, as analysts (default: none)")
    p.add_argument("--max-events", type=int, default=None, help="stop after this many authorizations (default: all)")
    p.add_argument("--shift-to-now", action="store_true", help="move the first event to the wall clock")
    p.set_defaults(func=cmd_simulate)

    p = command("run", "broker, topics, worker and simulator together, with a live status line",
                "Start the embedded broker (unless FRAUDSTREAM_BROKER names one), create the topics, start a worker "
                "and simulate Handbook traffic into it, printing a status line until Ctrl-C or --duration.")
    _sim_args(p, customers=5000, terminals=10000, days=60, start=None,
              start_help="first simulated day (YYYY-MM-DD, a UTC day); default: --days days before today, so that the simulated "
                         "time ends near the wall clock")
    p.add_argument("--rate", type=float, default=3600.0, help="real-time factor of the simulated traffic (3600 = a simulated hour a second)")
    p.add_argument("--investigate", type=int, default=100, metavar="K", help="analysts answer alerts for K cards a day")
    p.add_argument("--duration", type=float, default=None, help="stop after this many seconds of traffic, counted from when the worker is ready (default: Ctrl-C)")
    p.add_argument("--status-every", type=float, default=3.0, help="seconds between status lines")
    p.set_defaults(func=cmd_run)

    p = command("backtest", "replay recorded authorizations and labels through the same core",
                "Replay recorded authorizations and labels (JSONL, e.g. from `simulate --jsonl`) through the same core "
                "as the workers, and print detection figures.")
    p.add_argument("events", help="events.jsonl")
    p.add_argument("labels", help="labels.jsonl")
    p.add_argument("--investigate", type=int, default=None, metavar="K", help="analysts answer alerts for K cards a day (default: none)")
    p.add_argument("--scores-out", metavar="FILE", help="write every scored authorization to FILE (JSONL)")
    p.add_argument("--k", type=int, default=100, help="k of card precision@k")
    p.add_argument("--save-model", metavar="FILE",
                   help="write the model as learned at the end of the replay, as a worker's checkpoint (see `model publish`)")
    p.set_defaults(func=cmd_backtest)

    p = command("model", "model checkpoints: publish one for every worker to start from")
    model_sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    pm = model_sub.add_parser(
        "publish", help="publish a checkpoint (backtest --save-model FILE) to the models topic", formatter_class=fmt,
        parents=[common],
        description="Publish a model checkpoint (written by `fraudstream backtest --save-model FILE`, or a worker's "
                    "STATE_DIR/APP_ID.model) to the models topic. It becomes a new generation of the model: workers "
                    "that start or restart begin from it, running workers switch to it within a second, and no older "
                    "worker's checkpoint replaces it. Its training offset is set to the current end of the training "
                    "examples topic, so workers learn on it only the examples that come after.")
    pm.add_argument("file", help="the checkpoint file")
    p.set_defaults(func=cmd_model)

    p = command("rules", "countermeasure rules: list, apply FILE, delete RULE_ID, stats",
                "Countermeasure rules on the rules topic: list those in force, apply a rule file (all or nothing; a "
                "condition that names an unknown field or compares text with a number is refused), delete one, or "
                "review each rule's hits, alerts and labelled precision per day.")
    p.add_argument("action", choices=["list", "apply", "stats", "delete"], help="what to do")
    p.add_argument("target", nargs="?", help="rule file (apply) or rule id (delete)")
    p.add_argument("--days", type=int, default=None,
                   help="stats: review this many days of event time, up to the newest scored authorization (default 7)")
    p.set_defaults(func=cmd_rules)

    p = command("alerts", "tail the review topic as a live table")
    p.add_argument("--min-score", type=float, default=None, help="show only alerts scored at least this (0 to 1; default: all)")
    p.add_argument("--card", help="show only this card's alerts")
    p.add_argument("--rule", help="show only alerts this rule id fired on")
    p.add_argument("--from-beginning", action="store_true", help="start with the oldest alert kept, not with new ones")
    p.add_argument("--limit", type=int, default=None, help="stop after this many alerts")
    p.add_argument("--timeout", type=float, default=None, help="stop after this many idle seconds")
    p.set_defaults(func=cmd_alerts)

    stamp = ("The label is stamped with the pipeline's event time: the wall clock, or the newest scored authorization's "
             "time when the pipeline is behind it (a replay or `make run`), so it applies to the card's next "
             "authorization either way.")
    check = "Refused, unless --force, when fraud.scores knows no such card or transaction, or the transaction is another card's."
    p = command("label", "publish an analyst disposition",
                f"Publish an analyst's disposition of one transaction (fraud or legitimate) to the labels topic. {check} {stamp}")
    p.add_argument("tx_id", help="the transaction id, as in the alert")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--fraud", action="store_true", help="the transaction is fraud")
    g.add_argument("--legit", action="store_true", help="the transaction is legitimate (a false alarm)")
    p.add_argument("--card", required=True, help="card_id of the transaction (the topic's key)")
    p.add_argument("--source", default="analyst", choices=OPERATOR_SOURCES, help="who decided")
    p.add_argument("--force", action="store_true", help="publish even if the pipeline has not seen the card or transaction")
    p.set_defaults(func=cmd_label)

    p = command("report-fraud", "a customer's fraud report: card compromised since TIME",
                "A customer's fraud report: the card's transactions since TIME are labelled fraud and the card is "
                f"blocked until reissued. Refused, unless --force, when fraud.scores knows no such card. {stamp}")
    p.add_argument("card", help="the card id")
    p.add_argument("--since", required=True,
                   help="when the fraud started: ISO time (2026-11-20T08:00:00Z, 2026-11-20T17:00:00+09:00, 2026-11-20) "
                        "or epoch ms; a time without a zone is in FRAUDSTREAM_TZ_OFFSET_H's zone (UTC by default)")
    p.add_argument("--force", action="store_true", help="publish even if the pipeline has not seen the card")
    p.set_defaults(func=cmd_report_fraud)

    p = command("reissue", "the card was replaced: stop blocking it",
                f"The card was replaced: the workers stop blocking it. Refused, unless --force, when fraud.scores knows "
                f"no such card. {stamp.replace('The label', 'The reissue')}")
    p.add_argument("card", help="the card id")
    p.add_argument("--force", action="store_true", help="publish even if the pipeline has not seen the card")
    p.set_defaults(func=cmd_reissue)

    p = command("console", "the web console: review queue, card lookup, fraud reports, countermeasures, live overview",
                "Serve the monitoring center's web console until Ctrl-C; `console add-user NAME` adds a user or changes "
                "a password. Bound to anything but loopback, it requires a login.")
    p.add_argument("action", nargs="?", choices=["serve", "add-user"], default="serve", help="serve (default) or add-user NAME")
    p.add_argument("user", nargs="?", help="add-user: the user name")
    p.add_argument("--host", default=None, help="address to bind (default FRAUDSTREAM_CONSOLE_HOST, 127.0.0.1); "
                   "anything but loopback requires a login")
    p.add_argument("--port", type=int, default=None, help="port (default FRAUDSTREAM_CONSOLE_PORT, 8464; 0 = a free one)")
    p.add_argument("--metrics", action="append", metavar="URL",
                   help="a worker's metrics URL, once per worker (default: FRAUDSTREAM_METRICS_HOST and _PORT's)")
    p.add_argument("--users", default=None, metavar="FILE", help="the users file (default FRAUDSTREAM_CONSOLE_USERS)")
    p.add_argument("--audit-file", default="var/log/console-audit.jsonl", metavar="FILE",
                   help="append each audit record here too, besides the audit topic (default %(default)s)")
    p.add_argument("--password-stdin", action="store_true", help="add-user: read the password from stdin")
    p.set_defaults(func=cmd_console)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (UsageError, ConfigError, BrokerError) as exc:
        print(f"fraudstream {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
