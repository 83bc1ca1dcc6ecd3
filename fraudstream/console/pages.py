"""HTML of the console's pages, from the view. Plain functions of plain data: every value is escaped here.

The layout is ``templates/layout.html``; scripts and styles are files of ``static/`` (no inline script, so the
Content-Security-Policy can forbid it).

>>> print(fmt_ts(1_700_000_000_000))
2023-11-14 22:13:20
>>> e('<script>"x"</script>')
'&lt;script&gt;&quot;x&quot;&lt;/script&gt;'
"""

from __future__ import annotations

import datetime as dt
import html
from collections.abc import Iterable, Sequence
from importlib import resources
from string import Template
from typing import Any

from fraudstream.console.view import AlertView, CardView, PipelineView, ScoredAuthorization
from fraudstream.core.rules import MODES, Rule

__all__ = ["e", "fmt_ts", "layout", "feed_summary", "queue_fragment", "card_page", "report_pages", "rules_page", "overview_page",
           "audit_page", "login_page", "message_page", "NAV"]

NAV = (("/", "Review queue"), ("/card", "Card lookup"), ("/report", "Fraud report"), ("/rules", "Countermeasures"),
       ("/overview", "Live overview"), ("/audit", "Audit log"))
_LAYOUT = Template(resources.files("fraudstream.console").joinpath("templates/layout.html").read_text())


def e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def fmt_ts(ts_ms: int | None) -> str:
    if ts_ms is None:
        return "-"
    try:
        return dt.datetime.fromtimestamp(ts_ms / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
    except (OverflowError, OSError, ValueError):
        return f"ts={ts_ms}"


def _amount(amount: float, currency: str) -> str:
    return f"{amount:,.0f} {e(currency)}".strip() if currency in ("JPY", "") else f"{amount:,.2f} {e(currency)}"


def _csrf(token: str) -> str:
    return f'<input type="hidden" name="csrf_token" value="{e(token)}">'


def _form(action: str, token: str, fields: dict[str, str], button: str, cls: str = "", confirm: str = "") -> str:
    hidden = "".join(f'<input type="hidden" name="{e(k)}" value="{e(v)}">' for k, v in fields.items())
    data = f' data-confirm="{e(confirm)}"' if confirm else ""
    return (f'<form method="post" action="{e(action)}" class="inline"{data}>{_csrf(token)}{hidden}'
            f'<button type="submit" class="{e(cls)}">{e(button)}</button></form>')


def _table(header: Sequence[str], rows: Iterable[Sequence[str]], cls: str = "") -> str:
    """Cells are HTML already (escape them first)."""
    head = "".join(f"<th>{e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="{e(cls)}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def layout(title: str, body: str, *, path: str, user: str | None, csrf: str, flash: Sequence[tuple[str, str]] = (),
           problem: str | None = None, scripts: Sequence[str] = ()) -> str:
    nav = "".join(f'<a href="{href}"{" class=current" if href == path else ""}>{e(name)}</a>' for href, name in NAV)
    who = ""
    if user:
        who = f'<span class="user">{e(user)}</span>'
        if not user.endswith("(local)"):
            who += _form("/logout", csrf, {}, "Log out", "link")
    notes = "".join(f'<p class="flash {e(kind)}" role="status">{e(text)}</p>' for kind, text in flash)
    if problem:
        notes += f'<p class="flash error" role="alert">{e(problem)}</p>'
    tags = "".join(f'<script src="/static/{e(s)}" defer></script>' for s in scripts)
    return _LAYOUT.substitute(title=e(title), nav=nav, user=who, flash=notes, body=body, scripts=tags, csrf=e(csrf))


def message_page(title: str, text: str, back: str = "/") -> str:
    return f'<h1>{e(title)}</h1><p class="message">{e(text)}</p><p><a href="{e(back)}">Back</a></p>'


# --- 1. review queue --------------------------------------------------------------------------------


def _authorizations(auths: Iterable[ScoredAuthorization], highlight: Sequence[str] = (), limit: int = 10) -> str:
    rows = []
    for a in sorted(auths, key=lambda a: a.ts, reverse=True)[:limit]:
        mark = ' <span class="badge">this alert</span>' if a.tx_id in highlight else ""
        rows.append([e(fmt_ts(a.ts)), e(a.tx_id) + mark, e(a.merchant_id), _amount(a.amount, a.currency),
                     f'<span class="score">{a.score:.3f}</span>', f'<span class="action {e(a.action)}">{e(a.action)}</span>',
                     e(", ".join(a.rule_hits) or "-")])
    if not rows:
        return '<p class="muted">No authorization of this card seen lately.</p>'
    return _table(["time (UTC)", "transaction", "merchant", "amount", "score", "decision", "rules hit"], rows, "auths")


def _rules_fired(names: Sequence[str], rules: dict[str, Rule]) -> str:
    if not names:
        return '<span class="muted">none: the model alone</span>'
    parts = []
    for rule_id in names:
        rule = rules.get(rule_id)
        text = f"{rule.description} ({rule.condition}, {rule.mode})" if rule else "no longer in force"
        parts.append(f'<li><code>{e(rule_id)}</code> {e(text)}</li>')
    return f'<ul class="rules">{"".join(parts)}</ul>'


def _alert_item(a: AlertView, card: CardView | None, rules: dict[str, Rule], csrf: str) -> str:
    label = {"alert_id": a.alert_id, "card_id": a.card_id, "tx_id": a.tx_id}
    buttons = (_form("/alerts/label", csrf, {**label, "verdict": "fraud"}, "Confirm fraud", "danger")
               + _form("/alerts/label", csrf, {**label, "verdict": "legit"}, "Legitimate", "ok")
               + _form("/cards/reissue", csrf, {"card_id": a.card_id, "back": "/"}, "Reissue card", "",
                       confirm=f"Reissue card {a.card_id}? It stops being blocked."))
    reasons = "".join(f"<li>{e(r)}</li>" for r in a.reasons) or "<li class=muted>no reasons given</li>"
    more = f" (+{len(a.tx_ids) - 1} later)" if len(a.tx_ids) > 1 else ""
    return f"""<article class="alert" data-alert-id="{e(a.alert_id)}" data-card-id="{e(a.card_id)}">
<header><span class="score big">{a.score:.3f}</span>
<span>{e(fmt_ts(a.updated_ts))} UTC</span>
<a href="/card?card={e(a.card_id)}">card {e(a.card_id)}</a>
<span>{_amount(a.amount, a.currency)} at {e(a.merchant_id)}</span>
<span class="muted">{e(a.alert_id)}{e(more)} · model {e(a.model_version)}</span></header>
<div class="cols"><div><h3>Why</h3><ul class="reasons">{reasons}</ul><h3>Rules that fired</h3>{_rules_fired(a.rules, rules)}</div>
<div><h3>The card's last authorizations</h3>{_authorizations(card.authorizations if card else (), a.tx_ids, 6)}</div></div>
<footer>{buttons}</footer></article>"""


def queue_fragment(view: PipelineView, csrf: str, limit: int = 50) -> tuple[str, int]:
    """The queue's items (what the page polls for) and how many alerts are open."""
    alerts = view.open_alerts(limit=100_000)
    if not alerts:
        return '<p class="empty">No open alerts. New ones appear here as the workers raise them.</p>', 0
    items = "".join(_alert_item(a, view.cards.get(a.card_id), view.rules, csrf) for a in alerts[:limit])
    shown = f'<p class="muted">{len(alerts)} open alerts, highest score first; the first {limit} shown.</p>' if len(alerts) > limit else ""
    return shown + items, len(alerts)


def queue_page(view: PipelineView, csrf: str) -> str:
    fragment, n = queue_fragment(view, csrf)
    fraud, labelled = view.alert_precision()
    precision = f"{fraud / labelled:.0%} of {labelled} labelled alerts were fraud" if labelled else "no alert labelled yet"
    return (f'<h1>Review queue <span class="count" id="open-count">{n}</span></h1>'
            f'<p class="muted">Open alerts by score, then time; {e(precision)}. Updates every 2 seconds.</p>'
            f'<div id="queue" data-poll="/api/queue">{fragment}</div>')


# --- 2. card lookup -------------------------------------------------------------------------------


def _lookup_form(action: str, card: str = "", button: str = "Look up") -> str:
    return (f'<form method="get" action="{e(action)}" class="lookup"><label>Card id <input name="card" value="{e(card)}" '
            f'autocomplete="off" required maxlength="128"></label> <button type="submit">{e(button)}</button></form>')


def card_page(view: PipelineView, card_id: str | None, csrf: str, error: str | None = None) -> str:
    out = ["<h1>Card lookup</h1>", _lookup_form("/card", card_id or "")]
    if error:
        out.append(f'<p class="flash error">{e(error)}</p>')
    if not card_id or error:
        return "".join(out)
    card = view.card(card_id)
    if card is None:
        out.append(f'<p class="flash error">No authorization, alert or label of card {e(card_id)} in the topics read '
                   f"(the console holds the {view.max_cards:,} most recently seen cards).</p>")
        return "".join(out)
    st = card.standing
    if card.blocked_since is not None:
        standing = f'<span class="action block">blocked</span> since {e(fmt_ts(card.blocked_since))} UTC (a confirmed fraud), until reissued'
    else:
        standing = '<span class="action none">not blocked</span>'
    if card.reissued:
        standing += f"; reissued {e(fmt_ts(card.reissued[-1]))} UTC"
    open_alerts = [a for a in (view.alerts.get(i) for i in card.alert_ids) if a is not None and a.is_open]
    alert_text = ", ".join(e(a.alert_id) for a in open_alerts) or "none"
    out.append(f'<section class="standing"><h2>Card {e(card_id)}</h2><dl><dt>Standing</dt><dd id="standing">{standing}</dd>'
               f"<dt>Open alert</dt><dd>{alert_text}</dd><dt>Alerts seen</dt><dd>{len(card.alert_ids)}</dd></dl>")
    if st.compromised:
        out.append(_form("/cards/reissue", csrf, {"card_id": card_id, "back": f"/card?card={card_id}"}, "Reissue card", "",
                         confirm=f"Reissue card {card_id}? It stops being blocked."))
    out.append(f' <a class="button" href="/report?card={e(card_id)}">Take a fraud report</a></section>')
    out.append(f"<h2>Last {len(card.authorizations)} authorizations</h2>")
    out.append(_authorizations(card.authorizations, limit=view.recent))
    rows = [[e(fmt_ts(lb.ts)), e(lb.tx_id or f"the card, since {fmt_ts(lb.since)} UTC"), "fraud" if lb.is_fraud else "legitimate",
             e(lb.source)] for lb in reversed(card.labels)]
    out.append("<h2>Labels</h2>" + (_table(["known at (UTC)", "about", "verdict", "source"], rows) if rows
                                      else '<p class="muted">No label on this card.</p>'))
    return "".join(out)


# --- 3. customer fraud report ----------------------------------------------------------------------


def report_pages(step: str, view: PipelineView, csrf: str, card_id: str = "", ticked: Sequence[str] = (),
                 error: str | None = None, reference: str | None = None, message: str = "") -> str:
    """``identify`` -> ``select`` -> ``confirm`` -> ``done``: the intake, one page per step."""
    steps = ["1. Identify the card", "2. Tick what you don't recognise", "3. Confirm"]
    at = {"identify": 0, "select": 1, "confirm": 2, "done": 3}[step]
    bar = '<ol class="steps">' + "".join(f'<li{" class=current" if i == at else ""}>{e(s)}</li>' for i, s in enumerate(steps)) + "</ol>"
    out = ["<h1>Customer fraud report</h1>", bar]
    if error:
        out.append(f'<p class="flash error" role="alert">{e(error)}</p>')
    card = view.card(card_id) if card_id else None
    if step == "identify" or card is None:
        out.append(_lookup_form("/report", card_id, "Next"))
        return "".join(out)
    auths = sorted(card.authorizations, key=lambda a: a.ts, reverse=True)
    if step == "select":
        rows = [[f'<input type="checkbox" name="tx_id" value="{e(a.tx_id)}" id="tx-{e(a.tx_id)}"'
                 f'{" checked" if a.tx_id in ticked else ""}>',
                 f'<label for="tx-{e(a.tx_id)}">{e(fmt_ts(a.ts))}</label>', e(a.merchant_id), _amount(a.amount, a.currency)]
                for a in auths]
        out.append(f'<form method="post" action="/report/review">{_csrf(csrf)}<input type="hidden" name="card_id" value="{e(card_id)}">'
                   f"<p>Card <strong>{e(card_id)}</strong>: tick every authorization the customer does not recognise.</p>"
                   f'{_table(["", "time (UTC)", "merchant", "amount"], rows, "pick")}'
                   '<button type="submit">Next</button></form>')
    elif step == "confirm":
        chosen = [a for a in auths if a.tx_id in ticked]
        since = min(a.ts for a in chosen)
        rows = [[e(fmt_ts(a.ts)), e(a.merchant_id), _amount(a.amount, a.currency)] for a in chosen]
        hidden = "".join(f'<input type="hidden" name="tx_id" value="{e(t)}">' for t in ticked)
        out.append(f"<p>Report card <strong>{e(card_id)}</strong> compromised since {e(fmt_ts(since))} UTC, the earliest "
                   f"authorization not recognised. Every authorization since then is labelled fraud, and the card is "
                   f"blocked until it is reissued.</p>{_table(['time (UTC)', 'merchant', 'amount'], rows)}"
                   f'<form method="post" action="/report/confirm">{_csrf(csrf)}<input type="hidden" name="card_id" value="{e(card_id)}">'
                   f'{hidden}<button type="submit" class="danger">Confirm the report</button> <a href="/report?card={e(card_id)}">Back</a></form>')
    else:
        out.append(f'<section class="done"><h2>Report <span id="report-number">{e(reference or "-")}</span></h2>'
                   f"<p>{e(message)}</p><p>Give the customer this number. <a href=\"/card?card={e(card_id)}\">See the card</a> · "
                   '<a href="/report">Next report</a></p></section>')
    return "".join(out)


# --- 4. countermeasure review ---------------------------------------------------------------------


def _spark(values: Sequence[int]) -> str:
    """A bar chart of daily hits, inline SVG."""
    top = max(values) if values and max(values) > 0 else 1
    w = 8
    bars = "".join(f'<rect x="{i * w}" y="{20 - 20 * v / top:.1f}" width="{w - 2}" height="{20 * v / top:.1f}"><title>{v}</title></rect>'
                   for i, v in enumerate(values))
    return f'<svg class="spark" width="{w * len(values)}" height="20" viewBox="0 0 {w * len(values)} 20">{bars}</svg>'


def rules_page(view: PipelineView, csrf: str, days: int = 7) -> str:
    snap = view.rule_stats.snapshot()
    modes = view.rule_modes()
    newest = view.newest_ts or int(dt.datetime.now(dt.UTC).timestamp() * 1000)
    end = dt.datetime.fromtimestamp(newest / 1000, dt.UTC).date()
    window = [(end - dt.timedelta(days=back)).isoformat() for back in range(days - 1, -1, -1)]
    out = ["<h1>Countermeasure review</h1>",
           f'<p class="muted">Hits, alerts and labelled precision per day of event time, {e(window[0])} .. {e(window[-1])} (UTC), '
           "from the scores and labels read; shadow rules count hits but never alert. Changes go to the rules topic, "
           "as <code>fraudstream rules apply</code> does, after a confirmation.</p>"]
    ids = sorted(set(modes) | set(snap))
    if not ids:
        out.append('<p class="empty">No rules in the rules topic, and no rule hits in the scores read. Apply some with '
                   "<code>fraudstream rules apply rules/handbook.json</code>.</p>")
        return "".join(out)
    header = ["rule", "condition", "hits", "alerts", "labelled", "precision", *(d[5:] for d in window), "hits a day", "change"]
    head = "<tr>" + "".join(f"<th>{e(h)}</th>" for h in header) + "</tr>"
    body = []
    # Shadow rules beside the active ones: the same columns, one group each, so a candidate is read against what is in force.
    for group, title in (("active", "Active: alert or score"), ("shadow", "Shadow: counted, never acting"),
                         ("off", "Off"), ("invalid", "Invalid: ignored by the workers"), ("deleted", "No longer in the rules topic")):
        members = [r for r in ids if modes.get(r, "deleted") == group]
        if not members:
            continue
        body.append(f'<tr class="group {e(group)}"><th colspan="{len(header)}">{e(title)} ({len(members)})</th></tr>')
        for rule_id in members:
            body.append("<tr>" + "".join(f"<td>{c}</td>" for c in _rule_row(view, rule_id, group, snap, window, csrf)) + "</tr>")
    out.append(f'<table class="rules"><thead>{head}</thead><tbody>{"".join(body)}</tbody></table>')
    out.append('<p class="muted">Per day: hits/alerts · precision of the labelled hits.</p>')
    return "".join(out)


def _rule_row(view: PipelineView, rule_id: str, mode: str, snap: dict[str, Any], window: list[str], csrf: str) -> list[str]:
    rule = view.rules.get(rule_id)
    counts = snap.get(rule_id, {"overall": {"hits": 0, "alerts": 0, "labelled": 0, "precision": None}, "days": {}})
    o = counts["overall"]
    per_day = [counts["days"].get(d, {}) for d in window]
    day_cells = [f'{c.get("hits", 0)}<small>/{c.get("alerts", 0)}'
                 + (f' · {c["precision"]:.0%}' if c.get("precision") is not None else "") + "</small>" for c in per_day]
    change = ""
    if rule is not None:
        options = "".join(f'<option value="{m}"{" selected" if m == mode else ""}>{e(_MODE_VERB[m])}</option>' for m in MODES)
        change = (f'<form method="post" action="/rules/change" class="inline">{_csrf(csrf)}'
                  f'<input type="hidden" name="rule_id" value="{e(rule_id)}"><select name="mode" aria-label="mode of {e(rule_id)}">'
                  f'{options}</select> <button type="submit">Change…</button></form>')
    cond = e(rule.condition) if rule else e(view.invalid_rules.get(rule_id, "not in the rules topic any more"))
    action = "" if rule is None else (f" → score {rule.score_delta:+.2f}" if rule.action == "score" else " → alert")
    return [f'<code>{e(rule_id)}</code> <span class="mode {e(mode)}">{e(mode)}</span><br><small>{e(rule.description) if rule else ""}</small>',
            f"<code>{cond}</code><br><small>{e(action)}</small>", str(o["hits"]), str(o["alerts"]), str(o["labelled"]),
            f'{o["precision"]:.0%}' if o["precision"] is not None else "-", *day_cells,
            _spark([c.get("hits", 0) for c in per_day]), change]


_MODE_VERB = {"active": "active: start", "shadow": "shadow: count", "off": "off: stop"}


def rule_confirm_page(rule: Rule, mode: str, csrf: str) -> str:
    what = {"active": "start alerting and scoring with it", "shadow": "count its hits without acting on them",
            "off": "stop applying it: it hits no more"}[mode]
    return (f"<h1>Change rule {e(rule.id)}</h1><p>Rule <code>{e(rule.id)}</code> ({e(rule.description)}: "
            f"<code>{e(rule.condition)}</code>) is <strong>{e(rule.mode)}</strong>. Set it to <strong>{e(mode)}</strong>: "
            f"the workers {e(what)} within a second.</p>"
            f'<form method="post" action="/rules/change/confirm">{_csrf(csrf)}<input type="hidden" name="rule_id" value="{e(rule.id)}">'
            f'<input type="hidden" name="mode" value="{e(mode)}"><button type="submit" class="danger">Confirm: set {e(rule.id)} to {e(mode)}</button>'
            ' <a href="/rules">Cancel</a></form>')


# --- 5. live overview, audit, login ------------------------------------------------------------------

_CHARTS = (("authorizations_per_s", "Authorizations per second", ""), ("alerts_24h", "Alerts in the last 24 h, against the day's budget", "budget_per_day"),
           ("alert_precision", "Alert precision (labelled alerts that were fraud)", ""),
           ("average_precision", "Model quality: average precision on recent labels", "fraud_recall"),
           ("lag", "Consumer lag (messages behind)", ""), ("latency_p95_s", "End-to-end latency, p95 and mean (s)", "latency_mean_s"))


def feed_summary(view: PipelineView) -> str:
    """What the console has read from each topic, and what it could not read (counted, never dropped unsaid)."""
    read = ", ".join(f"{view.records[k]:,} {k}" for k in ("scores", "alerts", "labels", "reissues", "rules", "audit"))
    text = f"Read from the topics: {read}."
    if view.unreadable:
        bad = "; ".join(f"{n:,} {k} (the last: {view.last_problem.get(k, '?')})" for k, n in sorted(view.unreadable.items()))
        text += f" Unreadable, skipped: {bad}."
    return text


def overview_page(metrics_urls: Sequence[str], summary: str = "") -> str:
    charts = "".join(f'<figure class="chart" data-series="{e(key)}" data-second="{e(second)}"><figcaption>{e(title)}</figcaption>'
                     f'<svg viewBox="0 0 400 140" role="img" aria-label="{e(title)}"></svg><p class="now"></p></figure>'
                     for key, title, second in _CHARTS)
    return ('<h1>Live overview</h1><p class="muted" id="overview-status">Sampling the workers\' metrics at '
            f'{e(", ".join(metrics_urls))}; charts cover the last samples kept.</p>'
            f'<div id="overview" data-poll="/api/overview" class="charts">{charts}</div>'
            f'<p class="muted" id="feed-summary">{e(summary)}</p>')


def audit_page(records: Sequence[dict[str, Any]]) -> str:
    rows = [[e(fmt_ts(r.get("ts"))), e(r.get("user", "")), e(r.get("action", "")), e(r.get("target", "")),
             "done" if r.get("ok") else "refused", e(r.get("message", ""))[:300], e(r.get("remote", ""))]
            for r in reversed(records)]
    table = _table(["time (UTC)", "user", "action", "target", "outcome", "answer", "from"], rows) if rows else '<p class="empty">Nothing yet.</p>'
    return "<h1>Audit log</h1><p class=\"muted\">Who labelled, reported, reissued or changed a rule, newest first (the audit topic).</p>" + table


def login_page(csrf: str, error: str | None = None, next_path: str = "/") -> str:
    err = f'<p class="flash error" role="alert">{e(error)}</p>' if error else ""
    return (f'<h1>Log in</h1>{err}<form method="post" action="/login" class="login">{_csrf(csrf)}'
            f'<input type="hidden" name="next" value="{e(next_path)}">'
            '<label>User <input name="user" autocomplete="username" required maxlength="64"></label>'
            '<label>Password <input name="password" type="password" autocomplete="current-password" required></label>'
            '<button type="submit">Log in</button></form>')
