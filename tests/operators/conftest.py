"""The operators' commands, run through ``fraudstream.cli.main`` against the embedded broker."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest

from fraudstream.cli import main
from fraudstream.config import Settings

from ..conftest import settings_env


@dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture
def ops(topics: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The isolated settings, exported as FRAUDSTREAM_* so that the command line reads them."""
    monkeypatch.delenv("FRAUDSTREAM_CONFIG", raising=False)
    for name, value in settings_env(topics).items():
        if name.startswith("FRAUDSTREAM_"):
            monkeypatch.setenv(name, value)
    return topics


@pytest.fixture
def cli(ops: Settings, capsys: pytest.CaptureFixture[str]) -> Callable[..., Result]:
    """``cli("rules", "list")`` runs the command and returns its exit code, stdout and stderr."""

    def run(*argv: str) -> Result:
        capsys.readouterr()
        try:
            code = main(list(argv))
        except SystemExit as exc:  # argparse refusing the command line
            code = int(exc.code or 0)
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run
