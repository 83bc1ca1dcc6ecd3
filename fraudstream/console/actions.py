"""What an operator does from the console, done exactly as the command line does it, and written to the audit log.

A label, a fraud report, a reissue and a rule change each run the ``fraudstream`` subcommand's own function
(:mod:`fraudstream.operators`) with the arguments its parser makes of them, so the console validates and publishes
what the CLI does, no more and no less. One difference, for speed: the check that the card (and transaction) is
known to the pipeline asks the console's view first, which the feed keeps up to date, instead of reading the whole
scores topic on every button; only what the view does not know (it is bounded) is looked up in the topic, so the
answer is the command line's. Their printed answer becomes the operator's message; a refusal
(``UsageError``: an unknown card, a time in the future...) is shown as it is.

Each attempt is an :class:`AuditRecord`: appended to the audit file and published to the audit topic (keyed by
user), whatever its outcome.
"""

from __future__ import annotations

import contextlib
import functools
import io
import logging
import re
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaException, Producer

from fraudstream.cli import UsageError, build_parser
from fraudstream.config import Settings
from fraudstream.console.view import PipelineView
from fraudstream.contracts import encode
from fraudstream.core.rules import Rule
from fraudstream.knowledge import PipelineKnowledge, unknown_to_pipeline

__all__ = ["Actions", "Outcome", "AuditRecord", "report_number"]

log = logging.getLogger(__name__)
#: A refusal's way out, in the console: it has no --force, on purpose (a mistyped card is the common case).
CONSOLE_OVERRIDE = "if it is right all the same, publish it with the command line's --force"
_WHERE = re.compile(r"partition (\d+) offset (\d+)")


def report_number(printed: str) -> str | None:
    """The report's number: where its label is in the labels topic, so it can always be found again.

    >>> report_number("... fraud.labels partition 2 offset 417")
    'FR-2-000417'
    """
    m = _WHERE.search(printed)
    return f"FR-{m.group(1)}-{int(m.group(2)):06d}" if m else None


@dataclass(frozen=True)
class Outcome:
    ok: bool
    message: str
    reference: str | None = None  # a fraud report's number


@dataclass(frozen=True)
class AuditRecord:
    """Who did what, when (epoch ms), from where, and how it ended."""

    ts: int
    user: str
    action: str  # label, report, reissue, rule
    target: str  # the card, or the rule id
    detail: dict[str, Any]
    ok: bool
    message: str
    remote: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Actions:
    """The console's hands: each method returns an :class:`Outcome`, never raises for a refusal."""

    def __init__(self, settings: Settings, audit_file: Path | None, view: PipelineView | None = None,
                 view_lock: threading.Lock | None = None) -> None:
        self.settings = settings
        self.audit_file = audit_file
        self.view = view
        self.view_lock = view_lock or threading.Lock()
        self._lock = threading.Lock()  # one command at a time: their printed output is captured
        self._producer: Producer | None = None

    # --- the commands -------------------------------------------------------------------------

    def label(self, user: str, remote: str, card_id: str, tx_id: str, is_fraud: bool) -> Outcome:
        from fraudstream.operators import publish_label

        argv = ["label", tx_id, "--fraud" if is_fraud else "--legit", "--card", card_id, "--source", "analyst"]
        outcome = self._run(functools.partial(publish_label, knowledge=self.knowledge), argv)
        return self._audit(user, remote, "label", card_id, {"tx_id": tx_id, "is_fraud": is_fraud, "source": "analyst"}, outcome)

    def report(self, user: str, remote: str, card_id: str, since_ms: int, tx_ids: list[str]) -> Outcome:
        from fraudstream.operators import report_fraud

        outcome = self._run(functools.partial(report_fraud, knowledge=self.knowledge), ["report-fraud", card_id, "--since", str(since_ms)])
        if outcome.ok:
            outcome = Outcome(True, outcome.message, report_number(outcome.message))
        return self._audit(user, remote, "report", card_id, {"since": since_ms, "tx_ids": tx_ids, "report": outcome.reference}, outcome)

    def reissue(self, user: str, remote: str, card_id: str) -> Outcome:
        from fraudstream.operators import reissue_card

        outcome = self._run(functools.partial(reissue_card, knowledge=self.knowledge), ["reissue", card_id])
        return self._audit(user, remote, "reissue", card_id, {}, outcome)

    def set_rule_mode(self, user: str, remote: str, rule: Rule, mode: str) -> Outcome:
        """The rule as it is in force, with ``mode`` changed, applied as ``fraudstream rules apply FILE`` does."""
        from fraudstream.operators import rules_command

        changed = {**rule.to_dict(), "mode": mode}
        with tempfile.TemporaryDirectory(prefix="fraudstream-console-") as tmp:
            path = Path(tmp) / f"{rule.id}.json"
            path.write_bytes(encode(changed))
            outcome = self._run(rules_command, ["rules", "apply", str(path)])
        if outcome.ok:  # the command's answer is a table of the file it applied, a temporary one: say it plainly
            outcome = Outcome(True, f"rule {rule.id} set to {mode} (was {rule.mode}) in {self.settings.topic_rules}; "
                              "the workers apply the change within a second")
        return self._audit(user, remote, "rule", rule.id, {"from": rule.mode, "to": mode, "rule": changed}, outcome)

    def knowledge(self, settings: Settings, card_id: str, tx_id: str | None) -> PipelineKnowledge:
        """What the pipeline knows of the card: from the console's view when it knows them, else from the scores
        topic as the command line reads it (the view keeps the latest cards only: forgotten is not unknown)."""
        from fraudstream.operators import read_pipeline_knowledge

        if self.view is not None:
            with self.view_lock:
                known = self.view.knowledge(card_id, tx_id)
            if unknown_to_pipeline(known, settings.topic_scores) is None:
                return known
        known = read_pipeline_knowledge(settings, card_id, tx_id)
        known.override = CONSOLE_OVERRIDE
        return known

    # --- plumbing ---------------------------------------------------------------------------------

    def _run(self, command: Callable[[Settings, Any], int], argv: list[str]) -> Outcome:
        out, err = io.StringIO(), io.StringIO()
        with self._lock, contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                args = build_parser().parse_args(argv)
                code = command(self.settings, args)
            except UsageError as exc:
                return Outcome(False, str(exc))
            except SystemExit:  # the parser refused it: what it printed says why
                return Outcome(False, err.getvalue().strip().splitlines()[-1] if err.getvalue().strip() else "refused")
        text = (out.getvalue() if code == 0 else err.getvalue() or out.getvalue()).strip()
        if code != 0:
            text = re.sub(r"^fraudstream [\w-]+: ", "", text)
        return Outcome(code == 0, text or ("done" if code == 0 else f"failed (exit code {code})"))

    def _audit(self, user: str, remote: str, action: str, target: str, detail: dict[str, Any], outcome: Outcome) -> Outcome:
        """Write the record to the file and the topic; the outcome, with a warning if either failed (the action itself
        is done by then: it is said, not undone)."""
        record = AuditRecord(int(time.time() * 1000), user, action, target, detail, outcome.ok, outcome.message[:500], remote)
        raw = encode(record.as_dict())
        problems = []
        if self.audit_file is not None:
            try:
                self.audit_file.parent.mkdir(parents=True, exist_ok=True)
                with open(self.audit_file, "ab") as f:
                    f.write(raw + b"\n")
            except OSError as exc:
                problems.append(f"{self.audit_file}: {exc.strerror or exc}")
        try:
            if self._producer is None:
                self._producer = Producer(self.settings.producer_config())
            self._producer.produce(self.settings.topic_audit, raw, user.encode())
            if self._producer.flush(10):
                problems.append(f"{self.settings.topic_audit} did not confirm it within 10 s")
        except (KafkaException, BufferError) as exc:
            problems.append(f"{self.settings.topic_audit}: {exc}")
        if problems:
            log.error("audit record not written (%s): %s", "; ".join(problems), raw.decode())
            return Outcome(outcome.ok, f"{outcome.message}\nWARNING: the audit record could not be written ({'; '.join(problems)}).",
                           outcome.reference)
        return outcome
