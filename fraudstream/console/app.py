"""The console's web application (aiohttp): routes, the session and CSRF middleware, and ``run_console``.

Every page reads the :class:`~fraudstream.console.view.PipelineView` under its lock; every action goes through
:class:`~fraudstream.console.actions.Actions` in a thread (they wait for the brokers), then redirects with a message
(post/redirect/get), except the last step of a fraud report, which shows its number.
"""

from __future__ import annotations

import asyncio
import getpass
import logging
import signal
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from aiohttp import web

from fraudstream.config import Settings
from fraudstream.console import pages, validation
from fraudstream.console.actions import Actions, Outcome
from fraudstream.console.sampler import History, merge
from fraudstream.console.security import Session, Sessions, Users, is_loopback
from fraudstream.console.validation import InvalidInput
from fraudstream.console.view import PipelineView

__all__ = ["Console", "make_app", "run_console", "COOKIE"]

log = logging.getLogger(__name__)

COOKIE = "fraudstream_session"
_PUBLIC = ("/login", "/static/", "/healthz")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Console:
    """Everything the handlers share."""

    settings: Settings
    view: PipelineView
    lock: threading.Lock
    actions: Actions
    login_required: bool
    users: Users | None
    metrics_urls: list[str]
    history: History = field(default_factory=History)
    sessions: Sessions = field(default_factory=Sessions)
    feed_problem: Callable[[], str | None] = lambda: None
    local_user: str = field(default_factory=lambda: f"{getpass.getuser()} (local)")


_KEY: web.AppKey[Console] = web.AppKey("console", Console)
_SESSION: web.RequestKey[Session] = web.RequestKey("session", Session)


def _console(request: web.Request) -> Console:
    return request.app[_KEY]


def _session(request: web.Request) -> Session:
    return request[_SESSION]


def _remote(request: web.Request) -> str:
    return request.remote or "-"


# --- middleware ---------------------------------------------------------------------------------------


@web.middleware
async def security_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A session for every browser; a login where one is required; a valid CSRF token on every POST."""
    console = _console(request)
    session = console.sessions.get(request.cookies.get(COOKIE))
    fresh = session is None
    if session is None:
        session = console.sessions.create("" if console.login_required else console.local_user)
    request[_SESSION] = session
    public = request.path.startswith(_PUBLIC)
    if not public and not session.user:
        if request.path.startswith("/api/"):
            response: web.StreamResponse = web.json_response({"error": "log in first"}, status=401)
        else:
            response = _see_other(f"/login?next={quote(request.path_qs)}")
    elif request.method == "POST" and not session.csrf_ok(await _posted_token(request)):
        body = pages.message_page("Refused", "This form did not carry the console's security token (CSRF), so nothing was "
                                  "done. Reload the page and try again.", request.headers.get("Referer", "/"))
        response = _html(request, "Refused", body, status=403)
    else:
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            response = exc
    if fresh:
        response.set_cookie(COOKIE, session.id, httponly=True, samesite="Strict", path="/",
                            secure=request.secure)
    response.headers.setdefault("Content-Security-Policy", "default-src 'self'; style-src 'self' 'unsafe-inline'; "
                                "img-src 'self' data:; frame-ancestors 'none'; form-action 'self'")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    return response


async def _posted_token(request: web.Request) -> str | None:
    header = request.headers.get("X-CSRF-Token")
    if header:
        return header
    form = await request.post()
    value = form.get("csrf_token")
    return value if isinstance(value, str) else None


def _html(request: web.Request, title: str, body: str, status: int = 200, scripts: tuple[str, ...] = ("console.js",)) -> web.Response:
    console, session = _console(request), _session(request)
    flash, session.flash = session.flash, []
    text = pages.layout(title, body, path=request.path, user=session.user or None, csrf=session.csrf_token, flash=flash,
                        problem=console.feed_problem(), scripts=scripts)
    return web.Response(text=text, content_type="text/html", status=status)


def _see_other(to: str) -> web.Response:
    return web.Response(status=303, headers={"Location": to})


def _redirect(request: web.Request, to: str, outcome: Outcome | None = None, error: str | None = None) -> web.Response:
    session = _session(request)
    if outcome is not None:
        session.flash.append(("ok" if outcome.ok else "error", outcome.message))
    if error:
        session.flash.append(("error", error))
    return _see_other(_local_path(to))


def _local_path(to: str) -> str:
    """Only a path of this site: a ``back`` or ``next`` field never sends the browser elsewhere."""
    parts = urlsplit(to)
    if parts.scheme or parts.netloc or not to.startswith("/") or to.startswith("//"):
        return "/"
    return to


async def _in_thread(fn: Callable[..., Outcome], *args: Any) -> Outcome:
    return await asyncio.get_running_loop().run_in_executor(None, fn, *args)


def _field(form: Any, name: str) -> str | None:
    value = form.get(name)
    return value if isinstance(value, str) else None


# --- pages -----------------------------------------------------------------------------------------------


async def queue(request: web.Request) -> web.Response:
    console = _console(request)
    with console.lock:
        body = pages.queue_page(console.view, _session(request).csrf_token)
    return _html(request, "Review queue", body)


async def api_queue(request: web.Request) -> web.Response:
    console = _console(request)
    with console.lock:
        fragment, n = pages.queue_fragment(console.view, _session(request).csrf_token)
    return web.json_response({"html": fragment, "open": n, "problem": console.feed_problem()})


async def label_alert(request: web.Request) -> web.StreamResponse:
    console, form = _console(request), await request.post()
    try:
        card_id = validation.card_id(_field(form, "card_id"))
        tx_id = validation.tx_id(_field(form, "tx_id"))
        is_fraud = validation.verdict(_field(form, "verdict"))
    except InvalidInput as exc:
        return _redirect(request, "/", error=str(exc))
    outcome = await _in_thread(console.actions.label, _session(request).user, _remote(request), card_id, tx_id, is_fraud)
    return _redirect(request, "/", outcome)


async def reissue(request: web.Request) -> web.StreamResponse:
    console, form = _console(request), await request.post()
    back = _field(form, "back") or "/"
    try:
        card_id = validation.card_id(_field(form, "card_id"))
    except InvalidInput as exc:
        return _redirect(request, back, error=str(exc))
    outcome = await _in_thread(console.actions.reissue, _session(request).user, _remote(request), card_id)
    return _redirect(request, back, outcome)


async def card(request: web.Request) -> web.Response:
    console = _console(request)
    raw = request.query.get("card")
    error = None
    card_id = None
    if raw is not None:
        try:
            card_id = validation.card_id(raw)
        except InvalidInput as exc:
            error, card_id = str(exc), raw
    with console.lock:
        body = pages.card_page(console.view, card_id, _session(request).csrf_token, error)
    return _html(request, "Card lookup", body, status=400 if error else 200)


def _card_tx(console: Console, card_id: str) -> list[str]:
    view_card = console.view.card(card_id)
    return [a.tx_id for a in view_card.authorizations] if view_card else []


async def report(request: web.Request) -> web.Response:
    console = _console(request)
    raw = request.query.get("card")
    csrf = _session(request).csrf_token
    with console.lock:
        if raw is None:
            return _html(request, "Fraud report", pages.report_pages("identify", console.view, csrf))
        try:
            card_id = validation.card_id(raw)
        except InvalidInput as exc:
            return _html(request, "Fraud report", pages.report_pages("identify", console.view, csrf, raw, error=str(exc)), 400)
        if not _card_tx(console, card_id):
            error = f"No recent authorization of card {card_id} is known: check the card id with the customer."
            return _html(request, "Fraud report", pages.report_pages("identify", console.view, csrf, card_id, error=error), 404)
        return _html(request, "Fraud report", pages.report_pages("select", console.view, csrf, card_id))


async def _report_input(request: web.Request) -> tuple[str, list[str]] | web.Response:
    console, form = _console(request), await request.post()
    csrf = _session(request).csrf_token
    card_id = _field(form, "card_id") or ""
    ticked = [v for v in form.getall("tx_id", []) if isinstance(v, str)]
    with console.lock:
        try:
            card_id = validation.card_id(card_id)
            known = _card_tx(console, card_id)
            if not known:
                raise InvalidInput(f"No recent authorization of card {card_id} is known: check the card id with the customer.")
            ticked = validation.tx_ids(ticked, known)
        except InvalidInput as exc:
            step = "select" if console.view.card(card_id) else "identify"
            body = pages.report_pages(step, console.view, csrf, card_id, ticked, error=str(exc))
            return _html(request, "Fraud report", body, status=400)
    return card_id, ticked


async def report_review(request: web.Request) -> web.Response:
    console = _console(request)
    checked = await _report_input(request)
    if isinstance(checked, web.Response):
        return checked
    card_id, ticked = checked
    with console.lock:
        body = pages.report_pages("confirm", console.view, _session(request).csrf_token, card_id, ticked)
    return _html(request, "Fraud report", body)


async def report_confirm(request: web.Request) -> web.Response:
    console = _console(request)
    checked = await _report_input(request)
    if isinstance(checked, web.Response):
        return checked
    card_id, ticked = checked
    csrf = _session(request).csrf_token
    with console.lock:
        view_card = console.view.card(card_id)
        since = min(a.ts for a in view_card.authorizations if a.tx_id in ticked) if view_card else 0
    outcome = await _in_thread(console.actions.report, _session(request).user, _remote(request), card_id, since, ticked)
    with console.lock:
        if not outcome.ok:
            body = pages.report_pages("confirm", console.view, csrf, card_id, ticked, error=outcome.message)
            return _html(request, "Fraud report", body, status=400)
        body = pages.report_pages("done", console.view, csrf, card_id, ticked, reference=outcome.reference, message=outcome.message)
    return _html(request, "Fraud report", body)


async def rules(request: web.Request) -> web.Response:
    console = _console(request)
    with console.lock:
        body = pages.rules_page(console.view, _session(request).csrf_token)
    return _html(request, "Countermeasures", body)


async def _rule_change(request: web.Request) -> tuple[Any, str] | web.StreamResponse:
    console, form = _console(request), await request.post()
    try:
        rule_id = validation.rule_id(_field(form, "rule_id"))
        mode = validation.rule_mode(_field(form, "mode"))
    except InvalidInput as exc:
        return _redirect(request, "/rules", error=str(exc))
    with console.lock:
        rule = console.view.rules.get(rule_id)
    if rule is None:
        return _redirect(request, "/rules", error=f"There is no rule {rule_id} in force to change.")
    if rule.mode == mode:
        return _redirect(request, "/rules", error=f"Rule {rule_id} is {mode} already; nothing changed.")
    return rule, mode


async def rule_change(request: web.Request) -> web.StreamResponse:
    checked = await _rule_change(request)
    if isinstance(checked, web.StreamResponse):
        return checked
    rule, mode = checked
    return _html(request, "Countermeasures", pages.rule_confirm_page(rule, mode, _session(request).csrf_token))


async def rule_change_confirm(request: web.Request) -> web.StreamResponse:
    checked = await _rule_change(request)
    if isinstance(checked, web.StreamResponse):
        return checked
    rule, mode = checked
    outcome = await _in_thread(_console(request).actions.set_rule_mode, _session(request).user, _remote(request), rule, mode)
    return _redirect(request, "/rules", outcome)


async def overview(request: web.Request) -> web.Response:
    console = _console(request)
    with console.lock:
        summary = pages.feed_summary(console.view)
    return _html(request, "Live overview", pages.overview_page(console.metrics_urls, summary))


async def api_overview(request: web.Request) -> web.Response:
    console = _console(request)
    with console.lock:
        fraud, labelled = console.view.alert_precision()
        open_alerts = len(console.view.open_alerts(limit=100_000))
        summary = pages.feed_summary(console.view)
    return web.json_response({"samples": [s.as_dict() for s in console.history.samples], "error": console.history.error,
                              "open_alerts": open_alerts, "labelled_alerts": labelled, "confirmed_alerts": fraud,
                              "feed": summary})


async def audit(request: web.Request) -> web.Response:
    console = _console(request)
    with console.lock:
        records = list(console.view.audit)
    return _html(request, "Audit log", pages.audit_page(records))


async def login(request: web.Request) -> web.StreamResponse:
    console, session = _console(request), _session(request)
    next_path = _local_path(request.query.get("next", "/"))
    if request.method == "GET":
        return _html(request, "Log in", pages.login_page(session.csrf_token, next_path=next_path))
    form = await request.post()
    user, password = _field(form, "user") or "", _field(form, "password") or ""
    next_path = _local_path(_field(form, "next") or "/")
    if console.users is None or not user or not password or not console.users.check(user, password):
        await asyncio.sleep(0.5)  # slows guessing
        return _html(request, "Log in", pages.login_page(session.csrf_token, "Unknown user or wrong password.", next_path), 401)
    console.sessions.end(session.id)  # a new session id at login: one planted before it is worth nothing
    fresh = console.sessions.create(user)
    response = _see_other(next_path)
    response.set_cookie(COOKIE, fresh.id, httponly=True, samesite="Strict", path="/", secure=request.secure)
    log.info("console login: %s from %s", user, _remote(request))
    return response


async def logout(request: web.Request) -> web.StreamResponse:
    _console(request).sessions.end(_session(request).id)
    response = _see_other("/login")
    response.del_cookie(COOKIE, path="/")
    return response


async def healthz(request: web.Request) -> web.Response:
    problem = _console(request).feed_problem()
    return web.json_response({"ok": problem is None, "problem": problem}, status=200 if problem is None else 503)


def make_app(console: Console) -> web.Application:
    app = web.Application(middlewares=[security_middleware], client_max_size=64 * 1024)
    app[_KEY] = console
    app.add_routes([
        web.get("/", queue), web.get("/api/queue", api_queue), web.post("/alerts/label", label_alert),
        web.post("/cards/reissue", reissue), web.get("/card", card),
        web.get("/report", report), web.post("/report/review", report_review), web.post("/report/confirm", report_confirm),
        web.get("/rules", rules), web.post("/rules/change", rule_change), web.post("/rules/change/confirm", rule_change_confirm),
        web.get("/overview", overview), web.get("/api/overview", api_overview), web.get("/audit", audit),
        web.get("/login", login), web.post("/login", login), web.post("/logout", logout), web.get("/healthz", healthz),
        web.static("/static", Path(str(resources.files("fraudstream.console").joinpath("static"))), append_version=False),
    ])
    return app


# --- running it ----------------------------------------------------------------------------------------


async def _sample_forever(console: Console, every_s: float) -> None:
    from fraudstream.launcher import scrape

    loop = asyncio.get_running_loop()
    while True:
        scrapes, errors = [], []
        for url in console.metrics_urls:
            try:
                scrapes.append(await loop.run_in_executor(None, scrape, url))
            except (OSError, ValueError) as exc:
                errors.append(f"{url}: {exc}")
        if scrapes:
            console.history.add(merge(scrapes), time.time(), workers_up=len(scrapes))
        console.history.error = f"cannot read the metrics of {'; '.join(errors)}" if errors else None
        await asyncio.sleep(every_s)


async def serve(console: Console, host: str, port: int, stop: asyncio.Event, sample_every_s: float = 2.0) -> None:
    runner = web.AppRunner(make_app(console), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    server = getattr(site, "_server", None)
    bound = server.sockets[0].getsockname()[1] if server is not None and server.sockets else port
    shown = f"[{host}]" if ":" in host else host
    print(f"console on http://{shown}:{bound}/" + ("  (login required)" if console.login_required else ""), flush=True)
    sampler = asyncio.create_task(_sample_forever(console, sample_every_s))
    try:
        await stop.wait()
    finally:
        sampler.cancel()
        await runner.cleanup()


def run_console(settings: Settings, host: str, port: int, users_path: Path, metrics_urls: list[str], audit_file: Path | None) -> int:
    """``fraudstream console``: until SIGTERM or Ctrl-C. Returns the exit code."""
    from fraudstream.cli import UsageError
    from fraudstream.console.feed import TopicFeed

    login_required = not is_loopback(host)
    users = Users(users_path)
    if login_required and not len(users):
        raise UsageError(f"the console binds {host}, reachable from other machines, so it requires a login, and {users_path} has "
                         "no users: add one with `fraudstream console add-user NAME`, or bind 127.0.0.1")
    lock = threading.Lock()
    view = PipelineView()
    feed = TopicFeed(settings, view, lock)
    console = Console(settings, view, lock, Actions(settings, audit_file, view, lock), login_required, users if login_required else None,
                      metrics_urls, feed_problem=lambda: feed.error)
    feed.start()

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await serve(console, host, port, stop)

    try:
        asyncio.run(main())
    finally:
        feed.stop()
        feed.join(5)
    return 0
