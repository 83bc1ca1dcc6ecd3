"""`fraudstream --help` and each subcommand's: every subcommand and option explains itself."""

from __future__ import annotations

import argparse

import pytest

from fraudstream.cli import build_parser, main


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    out: dict[str, argparse.ArgumentParser] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out[name] = sub
                out.update({f"{name} {k}": v for k, v in _subparsers(sub).items()})
    return out


SUBCOMMANDS = _subparsers(build_parser())


@pytest.mark.parametrize("name", sorted(SUBCOMMANDS))
def test_every_subcommand_has_a_description_and_every_option_help(name):
    sub = SUBCOMMANDS[name]
    assert sub.description, f"`fraudstream {name} --help` has no description"
    for action in sub._actions:
        if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
            continue
        assert action.help and action.help != argparse.SUPPRESS, f"{name}: {action.option_strings or action.dest} has no help"


@pytest.mark.parametrize("name", sorted(SUBCOMMANDS))
def test_options_with_a_default_show_it(name):
    sub = SUBCOMMANDS[name]
    text = sub.format_help()
    for action in sub._actions:
        if not action.option_strings or action.default is None or action.default is False or action.nargs == 0 \
                or action.default == argparse.SUPPRESS:
            continue
        assert f"(default: {action.default})" in " ".join(text.split()) or "default" in (action.help or ""), (
            f"{name}: {action.option_strings[0]} does not show its default {action.default!r}")


def test_simulation_sizes_show_their_defaults():
    text = " ".join(SUBCOMMANDS["run"].format_help().split())
    for option, default in (("--customers", 5000), ("--days", 60), ("--rate", 3600.0), ("--investigate", 100)):
        assert option in text and f"(default: {default})" in text, option
    assert "(default: 1)" not in " ".join(SUBCOMMANDS["alerts"].format_help().split())


def test_label_sources_are_listed_in_help():
    text = " ".join(SUBCOMMANDS["label"].format_help().split())
    assert "{analyst,chargeback,customer_report" in text.replace(", ", ",") or "analyst, chargeback" in text
    assert "maturity" not in text  # the worker's own source


@pytest.mark.parametrize("argv", [["--broker", "kafka://h:1", "alerts"], ["alerts", "--broker", "kafka://h:1"]])
def test_broker_before_or_after_the_subcommand(argv):
    assert build_parser().parse_args(argv).broker == "kafka://h:1"


def test_broker_after_the_subcommand_wins_and_absent_is_none():
    assert build_parser().parse_args(["--broker", "kafka://a:1", "alerts", "--broker", "kafka://b:2"]).broker == "kafka://b:2"
    assert build_parser().parse_args(["alerts"]).broker is None


def test_run_start_is_kept_and_defaults_to_days_before_today():
    import datetime as dt

    from fraudstream.cli import resolve_run_start

    args = build_parser().parse_args(["run", "--start", "2018-04-01"])
    assert resolve_run_start(args) == "2018-04-01"
    args = build_parser().parse_args(["run", "--days", "30"])
    assert resolve_run_start(args) == (dt.date.today() - dt.timedelta(days=30)).isoformat()


@pytest.mark.parametrize("start", ["2018-02-30", "yesterday", "2999-01-01"])
def test_run_start_that_is_not_a_usable_day_is_refused(start, capsys):
    assert main(["run", "--start", start]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fraudstream run: --start") and start in err


def test_embedded_broker_error_names_the_running_broker(broker, monkeypatch, capsys):
    """A broker is running (the fixture's, as `fraudstream run`'s would be): the error says where, not to start one."""
    monkeypatch.setenv("FRAUDSTREAM_BROKER", "embedded")
    monkeypatch.delenv("FRAUDSTREAM_CONFIG", raising=False)
    assert main(["rules", "list"]) == 2
    err = capsys.readouterr().err
    assert broker.url in err and "use `fraudstream run`" not in err


def test_embedded_broker_error_without_a_running_broker():
    from fraudstream.cli import embedded_message

    text = embedded_message([])
    assert "No embedded broker is running" in text and "fraudstream run" in text
    several = embedded_message(["kafka://127.0.0.1:1", "kafka://127.0.0.1:2"])
    assert "kafka://127.0.0.1:1, kafka://127.0.0.1:2" in several
