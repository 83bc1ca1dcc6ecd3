"""docs/features.md carries the feature catalogue as a table generated from CATALOGUE.

Regenerate the table after changing the catalogue:

    .venv/bin/python tests/core/features/test_catalogue_doc.py
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from fraudstream.core.features.catalogue import CATALOGUE, FEATURE_NAMES

DOC = Path(__file__).resolve().parents[3] / "docs" / "features.md"
BEGIN = "<!-- BEGIN CATALOGUE: generated from fraudstream/core/features/catalogue.py by tests/core/features/test_catalogue_doc.py -->"
END = "<!-- END CATALOGUE -->"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def catalogue_table() -> str:
    """The table, one row per feature in vector order."""
    rows = ["| # | name | definition | window | why it helps |", "| ---: | --- | --- | --- | --- |"]
    for i, f in enumerate(CATALOGUE):
        rows.append(f"| {i} | `{f.name}` | {_cell(f.definition)} | {_cell(f.window)} | {_cell(f.why)} |")
    return "\n".join(rows) + "\n"


def documented_table(text: str) -> str:
    m = re.search(re.escape(BEGIN) + r"\n(.*?)" + re.escape(END), text, re.S)
    assert m, f"{DOC} has no generated catalogue between its markers"
    return m.group(1)


def test_features_doc_is_up_to_date_with_the_catalogue() -> None:
    assert documented_table(DOC.read_text()) == catalogue_table(), (
        "docs/features.md is out of date with CATALOGUE: run .venv/bin/python tests/core/features/test_catalogue_doc.py"
    )


def test_every_feature_has_a_row_and_a_complete_entry() -> None:
    table = documented_table(DOC.read_text())
    for name in FEATURE_NAMES:
        assert table.count(f"`{name}`") == 1, name
    assert len(set(FEATURE_NAMES)) == len(FEATURE_NAMES)
    for f in CATALOGUE:
        assert f.definition and f.window and f.why and f.phrase, f.name


def write() -> None:
    text = DOC.read_text()
    start, end = text.index(BEGIN) + len(BEGIN) + 1, text.index(END)
    DOC.write_text(text[:start] + catalogue_table() + text[end:])


if __name__ == "__main__":
    write()
    sys.stdout.write(f"wrote the catalogue ({len(CATALOGUE)} features) into {DOC}\n")
