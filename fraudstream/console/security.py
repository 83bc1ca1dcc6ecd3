"""Who may use the console: users and their hashed passwords, sessions, and the CSRF token of each session.

Passwords are hashed with scrypt from the standard library (``hashlib.scrypt``), a salt of 16 random bytes each;
the users file holds one ``name:hash`` a line and nothing else (``fraudstream console add-user NAME`` writes it).

>>> h = hash_password("correct horse", n=2**10)
>>> h.startswith("scrypt$1024$8$1$"), verify_password("correct horse", h), verify_password("wrong", h)
(True, True, False)
>>> sessions = Sessions()
>>> s = sessions.create("alice")
>>> sessions.get(s.id).user, s.csrf_ok(s.csrf_token), s.csrf_ok(""), s.csrf_ok(None)
('alice', True, False, False)
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import os
import re
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["hash_password", "verify_password", "Users", "Session", "Sessions", "is_loopback", "USER_NAME", "MIN_PASSWORD"]

#: A user name: what the audit log records, so nothing that could pass for another field.
USER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")
MIN_PASSWORD = 10
#: scrypt cost: 2**14 is the figure the scrypt paper gives for interactive logins (16 MiB, tens of ms).
_N, _R, _P = 2**14, 8, 1


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def hash_password(password: str, n: int = _N, r: int = _R, p: int = _P, salt: bytes | None = None) -> str:
    """``scrypt$N$r$p$salt$hash`` (salt and hash in base64)."""
    salt = os.urandom(16) if salt is None else salt
    digest = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=256 * n * r + 2**20, dklen=32)
    return f"scrypt${n}${r}${p}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    """Whether ``password`` matches ``stored`` (a :func:`hash_password` result); False for anything malformed."""
    try:
        kind, n, r, p, salt, digest = stored.split("$")
        if kind != "scrypt":
            return False
        expected = base64.b64decode(digest, validate=True)
        actual = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt, validate=True), n=int(n), r=int(r), p=int(p),
                                maxmem=256 * int(n) * int(r) + 2**20, dklen=len(expected))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


class Users:
    """The users file: ``name:scrypt$...`` lines. Read again when it changes, so a user added is let in at once.

    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "users"
    >>> users = Users(path)
    >>> users.add("alice", "a long passphrase", n=2**10)
    >>> users.check("alice", "a long passphrase"), users.check("alice", "nope"), users.check("bob", "a long passphrase")
    (True, False, False)
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._mtime: float | None = None
        self._hashes: dict[str, str] = {}

    def _load(self) -> dict[str, str]:
        try:
            mtime = self.path.stat().st_mtime
        except FileNotFoundError:
            self._hashes, self._mtime = {}, None
            return self._hashes
        if mtime != self._mtime:
            hashes = {}
            for line in self.path.read_text().splitlines():
                name, sep, stored = line.strip().partition(":")
                if sep and USER_NAME.fullmatch(name):
                    hashes[name] = stored
            self._hashes, self._mtime = hashes, mtime
        return self._hashes

    def __len__(self) -> int:
        return len(self._load())

    def check(self, name: str, password: str) -> bool:
        stored = self._load().get(name)
        if stored is None:
            hash_password(password, n=2**10)  # about as long either way: no hint which names exist
            return False
        return verify_password(password, stored)

    def add(self, name: str, password: str, n: int = _N) -> None:
        """Add ``name`` or change its password. ValueError says what is wrong with either."""
        if not USER_NAME.fullmatch(name):
            raise ValueError(f"user name {name!r}: 1 to 64 of letters, digits and _ . @ -, starting with a letter or digit")
        if len(password) < MIN_PASSWORD:
            raise ValueError(f"the password must be at least {MIN_PASSWORD} characters long")
        hashes = dict(self._load())
        hashes[name] = hash_password(password, n=n)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text("".join(f"{u}:{h}\n" for u, h in sorted(hashes.items())))
        os.chmod(tmp, 0o600)  # hashes only, yet nobody else's business
        tmp.replace(self.path)
        self._mtime = None


@dataclass
class Session:
    """A browser's session: who, and the token each of its POSTs must carry."""

    id: str
    user: str
    csrf_token: str
    created: float = field(default_factory=time.monotonic)
    flash: list[tuple[str, str]] = field(default_factory=list)  # (kind, message) to show on the next page

    def csrf_ok(self, token: str | None) -> bool:
        return bool(token) and hmac.compare_digest(token.encode(), self.csrf_token.encode())  # type: ignore[union-attr]


class Sessions:
    """Sessions in memory (a restart logs everyone out), each ending ``max_age_s`` after it began."""

    def __init__(self, max_age_s: float = 12 * 3600, max_sessions: int = 10_000) -> None:
        self.max_age_s = max_age_s
        self.max_sessions = max_sessions
        self._sessions: dict[str, Session] = {}

    def create(self, user: str) -> Session:
        self._expire()
        session = Session(secrets.token_urlsafe(32), user, secrets.token_urlsafe(32))
        self._sessions[session.id] = session
        return session

    def get(self, session_id: str | None) -> Session | None:
        session = self._sessions.get(session_id or "")
        if session is not None and time.monotonic() - session.created > self.max_age_s:
            del self._sessions[session.id]
            return None
        return session

    def end(self, session_id: str) -> None:
        self._sessions.pop(session_id, None)

    def _expire(self) -> None:
        now = time.monotonic()
        for sid in [sid for sid, s in self._sessions.items() if now - s.created > self.max_age_s]:
            del self._sessions[sid]
        while len(self._sessions) >= self.max_sessions:  # the oldest go first
            del self._sessions[next(iter(self._sessions))]


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps the console on this machine.

    >>> is_loopback("127.0.0.1"), is_loopback("localhost"), is_loopback("::1"), is_loopback("0.0.0.0"), is_loopback("10.1.2.3")
    (True, True, True, False, False)
    """
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
