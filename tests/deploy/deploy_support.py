"""Helpers for the deploy tests: promtool, a small YAML reader, PromQL name extraction, exposed metric names.

PyYAML is not a dependency of the project, so the rule and provisioning files are
read with ``load_yaml``, which understands the block-style subset those files are
written in (mappings, sequences, plain/quoted scalars, ``|``/``>`` block scalars,
empty ``[]``/``{}`` and one-line flow lists) and raises on anything else; every
scalar is read as a string (``5s``, ``true``, ``1``). The
tests cross-check what it reads against promtool's own rule counts.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROM_DIR = ROOT / "deploy" / "prometheus"
RULES_DIR = PROM_DIR / "rules"
PROM_TESTS_DIR = PROM_DIR / "tests"
GRAFANA_DIR = ROOT / "deploy" / "grafana"
DASHBOARDS_DIR = GRAFANA_DIR / "dashboards"

PROMTOOL_MISSING = (
    "promtool not found on PATH. It comes with Debian's `prometheus` package: run `make test`, which installs it "
    "(apt-get update && apt-get install -y prometheus) when it is missing, or install that package yourself."
)


# --------------------------------------------------------------------------- promtool
def promtool_path() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail(PROMTOOL_MISSING, pytrace=False)
    return path


def run_promtool(*args: str | Path, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool_path(), *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=300)


def rule_files() -> list[Path]:
    return sorted(RULES_DIR.glob("*.yml"))


def rule_test_files() -> list[Path]:
    return sorted(PROM_TESTS_DIR.glob("*.yml"))


# --------------------------------------------------------------------------- YAML subset
class YamlSubsetError(ValueError):
    pass


_KEY = re.compile(r"""^(?P<key>"[^"]*"|'[^']*'|[^\s'"#\-\[\]{}][^:#]*?|-[^\s:][^:#]*?)\s*:(?:\s+(?P<rest>.*))?$""")


def _strip_comment(s: str) -> str:
    """Drop a trailing ``# comment`` that is outside quotes."""
    quote = None
    for i, ch in enumerate(s):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"" and (i == 0 or s[i - 1] in " [{,:"):
            quote = ch
        elif ch == "#" and (i == 0 or s[i - 1] in " \t"):
            return s[:i].rstrip()
    return s.rstrip()


def _scalar(s: str) -> Any:
    s = s.strip()
    if s in ("[]", "{}"):
        return [] if s == "[]" else {}
    if s.startswith('"'):
        if not s.endswith('"') or len(s) < 2:
            raise YamlSubsetError(f"unterminated double-quoted scalar: {s!r}")
        return json.loads(s)
    if s.startswith("'"):
        if not s.endswith("'") or len(s) < 2:
            raise YamlSubsetError(f"unterminated single-quoted scalar: {s!r}")
        return s[1:-1].replace("''", "'")
    if s.startswith("["):
        if not s.endswith("]"):
            raise YamlSubsetError(f"multi-line flow sequence not supported: {s!r}")
        return [_scalar(x) for x in s[1:-1].split(",") if x.strip()]
    if s.startswith("{"):
        if not s.endswith("}"):
            raise YamlSubsetError(f"multi-line flow mapping not supported: {s!r}")
        out = {}
        for item in s[1:-1].split(","):
            if item.strip():
                k, _, v = item.partition(":")
                out[_scalar(k)] = _scalar(v)
        return out
    if s.startswith(("&", "*", "!", "%", "@", "`")):
        raise YamlSubsetError(f"anchors, aliases and tags are not supported: {s!r}")
    return s


class _Reader:
    def __init__(self, text: str) -> None:
        self.raw = text.expandtabs(8).splitlines()
        self.i = 0

    # The next significant line: (indent, content) or None; skips blanks and comments.
    def peek(self) -> tuple[int, str] | None:
        while self.i < len(self.raw):
            line = self.raw[self.i]
            stripped = line.strip()
            if not stripped or stripped.startswith("#") or stripped == "---":
                self.i += 1
                continue
            return len(line) - len(line.lstrip(" ")), _strip_comment(line.strip())
        return None

    def block(self, indent: int) -> Any:
        nxt = self.peek()
        if nxt is None:
            return None
        ind, content = nxt
        if ind != indent:
            raise YamlSubsetError(f"line {self.i + 1}: expected indent {indent}, got {ind}")
        if content == "-" or content.startswith("- "):
            return self.sequence(indent)
        if _KEY.match(content):
            return self.mapping(indent, None)
        self.i += 1
        return _scalar(content)

    def sequence(self, indent: int) -> list[Any]:
        out: list[Any] = []
        while (nxt := self.peek()) is not None:
            ind, content = nxt
            if ind != indent or not (content == "-" or content.startswith("- ")):
                if ind > indent:
                    raise YamlSubsetError(f"line {self.i + 1}: unexpected indentation")
                break
            rest = content[1:].lstrip()
            if not rest:
                self.i += 1
                sub = self.peek()
                out.append(self.block(sub[0]) if sub and sub[0] > indent else None)
                continue
            inner = indent + (len(content) - len(rest))
            if _KEY.match(rest):
                out.append(self.mapping(inner, rest))
            else:
                self.i += 1
                out.append(_scalar(rest))
        return out

    def mapping(self, indent: int, first: str | None) -> dict[str, Any]:
        out: dict[str, Any] = {}
        while True:
            if first is not None:
                content, first = first, None
            else:
                nxt = self.peek()
                if nxt is None:
                    break
                ind, content = nxt
                if ind < indent or (ind == indent and content.startswith("- ")):
                    break
                if ind > indent:
                    raise YamlSubsetError(f"line {self.i + 1}: unexpected indentation")
            m = _KEY.match(content)
            if not m:
                raise YamlSubsetError(f"line {self.i + 1}: expected `key: value`, got {content!r}")
            key = _scalar(m.group("key"))
            if key in out:
                raise YamlSubsetError(f"line {self.i + 1}: duplicate key {key!r}")
            rest = (m.group("rest") or "").strip()
            self.i += 1
            if rest and rest[0] in "|>":
                out[key] = self.block_scalar(indent, rest)
            elif rest:
                out[key] = _scalar(rest)
            else:
                sub = self.peek()
                if sub and (sub[0] > indent or (sub[0] == indent and sub[1].startswith("- "))):
                    out[key] = self.block(sub[0])
                else:
                    out[key] = None
        return out

    def block_scalar(self, indent: int, header: str) -> str:
        if not re.fullmatch(r"[|>][+-]?", header):
            raise YamlSubsetError(f"line {self.i}: unsupported block scalar header {header!r}")
        lines: list[str] = []
        content_indent = None
        while self.i < len(self.raw):
            line = self.raw[self.i]
            if line.strip():
                ind = len(line) - len(line.lstrip(" "))
                if ind <= indent:
                    break
                if content_indent is None:
                    content_indent = ind
                if ind < content_indent:
                    raise YamlSubsetError(f"line {self.i + 1}: block scalar less indented than its first line")
                lines.append(line[content_indent:])
            else:
                lines.append("")
            self.i += 1
        while lines and not lines[-1]:
            lines.pop()
        if header[0] == "|":
            text = "\n".join(lines)
        else:
            paragraphs, cur = [], []
            for line in lines:
                if line:
                    cur.append(line)
                else:
                    paragraphs.append(" ".join(cur))
                    cur = []
            paragraphs.append(" ".join(cur))
            text = "\n".join(paragraphs)
        return text if header.endswith("-") else text + "\n"


def load_yaml(text: str) -> Any:
    r = _Reader(text)
    first = r.peek()
    if first is None:
        return None
    value = r.block(first[0])
    if r.peek() is not None:
        raise YamlSubsetError(f"line {r.i + 1}: trailing content")
    return value


def load_yaml_file(path: Path) -> Any:
    return load_yaml(path.read_text(encoding="utf-8"))


def rules_of(path: Path) -> list[dict[str, Any]]:
    doc = load_yaml_file(path)
    return [rule for group in doc["groups"] for rule in group["rules"]]


def all_rules() -> list[dict[str, Any]]:
    return [r for f in rule_files() for r in rules_of(f)]


def recorded_names() -> set[str]:
    return {r["record"] for r in all_rules() if "record" in r}


# --------------------------------------------------------------------------- PromQL names
_KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "offset", "bool", "and", "or", "unless", "atan2",
    "inf", "nan", "start", "end",
}
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_IDENT = re.compile(r"(?<![\w:.])([a-zA-Z_:][a-zA-Z0-9_:]*)(?![\w:])(?!\s*\()")


def metric_names(expr: str) -> set[str]:
    """Metric names (and recording-rule names) an expression selects.

    Strings, label matchers ``{...}``, ranges ``[...]`` and grouping label lists are
    removed first; what remains that looks like an identifier and is neither a
    function call nor a keyword is a metric name.
    """
    s = _STRING.sub('""', expr)
    s = re.sub(r"\{[^}]*\}", " ", s)
    s = re.sub(r"\[[^\]]*\]", " ", s)
    s = _GROUPING.sub(" ", s)
    s = re.sub(r"\b\d+(\.\d+)?(e[+-]?\d+)?\b", " ", s)  # numbers
    s = re.sub(r"\b\d+[smhdwy]\b", " ", s)  # offsets' durations
    return {m for m in _IDENT.findall(s) if m.lower() not in _KEYWORDS}


# --------------------------------------------------------------------------- exposed metrics
def exposed_metric_names() -> set[str]:
    """Every sample name a worker exposes: fraudstream.metrics.Metrics on a fresh registry, each metric observed once,
    and the process, platform and garbage-collector metrics that prometheus-client's default registry adds."""
    from prometheus_client import CollectorRegistry, Counter, Gauge, GCCollector, Histogram, PlatformCollector, ProcessCollector, Summary
    from prometheus_client.metrics import MetricWrapperBase

    from fraudstream.metrics import Metrics

    registry = CollectorRegistry()
    metrics = Metrics(registry)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    seen = 0
    for attr, metric in vars(metrics).items():
        if not isinstance(metric, MetricWrapperBase):
            continue
        labelnames = tuple(getattr(metric, "_labelnames", ()))
        child = metric.labels(*(f"dummy_{n}" for n in labelnames)) if labelnames else metric
        if isinstance(metric, Counter):
            child.inc()
        elif isinstance(metric, Gauge):
            child.set(1)
        elif isinstance(metric, (Histogram, Summary)):
            child.observe(0.1)
        else:  # pragma: no cover - a new metric type in metrics.py
            raise AssertionError(f"Metrics.{attr}: do not know how to observe a {type(metric).__name__}")
        seen += 1
    assert seen, "fraudstream.metrics.Metrics defines no metric?"
    return {sample.name for family in registry.collect() for sample in family.samples}


# --------------------------------------------------------------------------- dashboards
def dashboard_files() -> list[Path]:
    return sorted(DASHBOARDS_DIR.glob("*.json"))


def iter_exprs(node: Any, where: str = "") -> list[tuple[str, str]]:
    """(where, expr) for every ``expr`` string anywhere in a dashboard (panels, targets, annotations)."""
    out: list[tuple[str, str]] = []
    if isinstance(node, dict):
        title = node.get("title") or node.get("name") or ""
        here = f"{where}/{title}" if title and "expr" not in node else where
        if isinstance(node.get("expr"), str):
            out.append((f"{here}[{node.get('refId') or node.get('name', '')}]", node["expr"]))
        for v in node.values():
            if isinstance(v, (dict, list)):
                out.extend(iter_exprs(v, here))
    elif isinstance(node, list):
        for v in node:
            out.extend(iter_exprs(v, where))
    return out


#: Grafana's global variables, replaced by values of the right kind before promtool parses an expression.
GRAFANA_MACROS = {
    "$__rate_interval": "1m", "${__rate_interval}": "1m", "$__interval": "30s", "${__interval}": "30s",
    "$__range": "6h", "${__range}": "6h", "$__range_s": "21600", "$__range_ms": "21600000",
    "$__interval_ms": "30000",
}


def grafana_to_promql(expr: str) -> str:
    """The expression as Prometheus receives it: macros replaced, template variables (regex matchers) as ``.*``."""
    for macro in sorted(GRAFANA_MACROS, key=len, reverse=True):
        expr = expr.replace(macro, GRAFANA_MACROS[macro])
    return re.sub(r"\$\{?[A-Za-z_]\w*(?::\w+)?\}?", ".*", expr)
