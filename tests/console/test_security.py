"""Passwords, users, sessions and CSRF tokens, and the middleware that enforces them, without a broker."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from fraudstream.config import Settings
from fraudstream.console.actions import Actions
from fraudstream.console.app import Console, make_app
from fraudstream.console.security import Sessions, Users, hash_password, is_loopback, verify_password
from fraudstream.console.view import PipelineView


def test_passwords_are_salted_scrypt_and_checked_in_constant_time() -> None:
    a, b = hash_password("a long passphrase", n=2**10), hash_password("a long passphrase", n=2**10)
    assert a != b, "a salt of its own for each"
    assert verify_password("a long passphrase", a) and not verify_password("a long passphrase!", a)
    assert not verify_password("x", "md5$abc") and not verify_password("x", "scrypt$bad")
    assert "a long passphrase" not in a


def test_the_users_file_refuses_bad_names_and_short_passwords(tmp_path: Path) -> None:
    users = Users(tmp_path / "users")
    with pytest.raises(ValueError, match="at least 10"):
        users.add("alice", "short", n=2**10)
    with pytest.raises(ValueError, match="user name"):
        users.add("alice:admin", "a long passphrase", n=2**10)
    users.add("alice", "a long passphrase", n=2**10)
    assert (tmp_path / "users").stat().st_mode & 0o077 == 0, "nobody else reads it"
    assert Users(tmp_path / "users").check("alice", "a long passphrase")


def test_sessions_expire_and_csrf_tokens_belong_to_their_session() -> None:
    sessions = Sessions(max_age_s=0.0)
    s, other = sessions.create("alice"), Sessions().create("bob")
    assert not s.csrf_ok(other.csrf_token) and s.csrf_ok(s.csrf_token)
    assert sessions.get(s.id) is None, "expired"
    assert is_loopback("127.0.0.2") and not is_loopback("example.org")


def _console(login: bool, users: Users | None) -> Console:
    settings = Settings.load(env={}).with_overrides(broker="kafka://127.0.0.1:1")  # nothing is sent in these tests
    return Console(settings, PipelineView(), threading.Lock(), Actions(settings, None), login, users, [])


async def _client(console: Console) -> TestClient:
    client = TestClient(TestServer(make_app(console)))
    await client.start_server()
    return client


def test_bound_elsewhere_every_page_needs_a_login_and_every_post_its_token(tmp_path: Path) -> None:
    users = Users(tmp_path / "users")
    users.add("alice", "a long passphrase", n=2**10)

    async def scenario() -> None:
        client = await _client(_console(True, users))
        try:
            r = await client.get("/rules", allow_redirects=False)
            assert r.status == 303 and r.headers["Location"] == "/login?next=/rules"
            assert (await client.get("/api/queue")).status == 401
            page = await (await client.get("/login")).text()
            token = page.split('name="csrf_token" value="')[1].split('"')[0]
            r = await client.post("/login", data={"user": "alice", "password": "a long passphrase"}, allow_redirects=False)
            assert r.status == 403, "the login form needs its token too"
            r = await client.post("/login", data={"user": "alice", "password": "wrong password", "csrf_token": token})
            assert r.status == 401 and "wrong password" in await r.text()
            r = await client.post("/login", data={"user": "alice", "password": "a long passphrase", "csrf_token": token,
                                                  "next": "https://evil.example/"}, allow_redirects=False)
            assert r.status == 303 and r.headers["Location"] == "/", "never sent to another site"
            page = await (await client.get("/rules")).text()
            assert "alice" in page
            assert (await client.post("/rules/change", data={"rule_id": "R-1", "mode": "off"})).status == 403
            fresh = page.split('name="csrf-token" content="')[1].split('"')[0]
            assert fresh != token, "a new session, and token, at login"
            r = await client.post("/rules/change", data={"rule_id": "R 1", "mode": "off", "csrf_token": fresh}, allow_redirects=False)
            assert r.status == 303
            page = await (await client.get("/rules")).text()
            assert "is not a rule id" in page, "the validation message is shown"
            r = await client.get("/card?card=%20")
            assert r.status == 400 and "Card id is empty" in await r.text()
            assert r.headers["X-Frame-Options"] == "DENY" and "default-src 'self'" in r.headers["Content-Security-Policy"]
        finally:
            await client.close()

    asyncio.run(scenario())


def test_on_loopback_no_login_but_still_a_token_per_session() -> None:
    async def scenario() -> None:
        client = await _client(_console(False, None))
        try:
            r = await client.get("/")
            assert r.status == 200 and "(local)" in await r.text()
            assert (await client.post("/alerts/label", data={"card_id": "c", "tx_id": "t", "verdict": "fraud"})).status == 403
            assert (await client.get("/static/console.js")).status == 200
        finally:
            await client.close()

    asyncio.run(scenario())
