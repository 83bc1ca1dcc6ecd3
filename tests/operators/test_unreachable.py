"""An unreachable broker: one clear line, not librdkafka's connection log."""

from __future__ import annotations

import subprocess
import sys

import pytest

from fraudstream.broker import free_port

from ..conftest import ROOT


@pytest.mark.parametrize("argv", [["rules", "list"], ["topics", "create"]])
def test_an_unreachable_broker_is_one_clear_message(argv):
    url = f"kafka://127.0.0.1:{free_port()}"  # nobody listens there
    done = subprocess.run([sys.executable, "-m", "fraudstream", *argv, "--broker", url], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode in (1, 2), done
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"fraudstream {argv[0]}: cannot reach the brokers at {url[len('kafka://'):]}"), lines[0]
    assert "Connection refused" in lines[0] or "connect" in lines[0].lower()
