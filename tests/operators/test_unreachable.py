"""An unreachable broker: one clear line, not librdkafka's connection log (over a hundred lines before)."""

from __future__ import annotations

import pytest

from fraudstream.broker import free_port
from fraudstream.cli import main


@pytest.mark.parametrize("argv", [["rules", "list"], ["topics", "create"], ["alerts"],
                                  ["simulate", "--customers", "5", "--terminals", "5", "--days", "1"]])
def test_an_unreachable_broker_is_one_clear_message(argv, capfd):
    url = f"kafka://127.0.0.1:{free_port()}"  # nobody listens there
    code = main([*argv, "--broker", url])  # capfd: librdkafka writes to file descriptor 2 itself
    assert code in (1, 2)
    lines = capfd.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"fraudstream {argv[0]}: cannot reach the brokers at {url[len('kafka://'):]}"), lines[0]
    assert "Connection refused" in lines[0]
