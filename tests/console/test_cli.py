"""``fraudstream console`` and ``console add-user`` on the command line."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from fraudstream.cli import main
from fraudstream.console.security import Users


def test_bound_beyond_loopback_without_users_it_refuses_to_start(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["console", "--host", "0.0.0.0", "--users", str(tmp_path / "users"), "--broker", "kafka://127.0.0.1:1"])
    err = capsys.readouterr().err
    assert code == 2 and "requires a login" in err and "console add-user" in err


def test_add_user_hashes_the_password_and_refuses_a_short_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    users = tmp_path / "users"
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert main(["console", "add-user", "alice", "--password-stdin", "--users", str(users)]) == 2
    assert "at least 10 characters" in capsys.readouterr().err
    monkeypatch.setattr("sys.stdin", io.StringIO("a long passphrase\n"))
    assert main(["console", "add-user", "alice", "--password-stdin", "--users", str(users)]) == 0
    assert "a long passphrase" not in users.read_text() and Users(users).check("alice", "a long passphrase")
    assert main(["console", "add-user", "--users", str(users)]) == 2
    assert "needs a user name" in capsys.readouterr().err
