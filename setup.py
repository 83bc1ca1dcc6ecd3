"""Compiles the core's per-authorization modules with mypyc when it can; pure Python otherwise.

The modules stay plain, typed Python: mypyc compiles them as they are (see ``fraudstream/core/native.py``: which
ones, why, and how an edited source is never shadowed by an older compiled module). ``FRAUDSTREAM_PURE_PYTHON=1``
skips the compiler. Everything else about the package is in ``pyproject.toml``.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import sys
from pathlib import Path

from setuptools import setup


def _native_sources() -> list[str]:
    """The modules every authorization passes through, in dependency order: ``NATIVE_MODULES`` of
    ``fraudstream/core/native.py`` (read from its source: importing it here would run the core's code choice)."""
    tree = ast.parse(Path("fraudstream/core/native.py").read_text())
    names = next(ast.literal_eval(node.value) for node in tree.body
                 if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "NATIVE_MODULES" for t in node.targets))
    return [str(Path("fraudstream/core", *name.split(".")).with_suffix(".py")) for name in names]


NATIVE = _native_sources()


def _native_modules() -> list:
    if os.environ.get("FRAUDSTREAM_PURE_PYTHON"):
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:
        print("fraudstream: mypyc not available: the core runs as pure Python", file=sys.stderr)
        return []
    # What was compiled, by the hash of its source: an edited module runs from its source until it is compiled again.
    manifest = {".".join(Path(p).with_suffix("").parts[2:]): hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in NATIVE}
    Path("fraudstream/core/native.json").write_text(json.dumps(manifest, indent=1) + "\n")
    try:
        # Other modules are not followed (mypy would analyse river whole): what they give is typed as Any.
        return mypycify([*NATIVE, "--follow-imports=skip"], opt_level="3")
    except (SystemExit, Exception) as e:  # a type error mypyc can't compile: the install still works
        print(f"fraudstream: mypyc could not compile the core ({e}): it runs as pure Python", file=sys.stderr)
        Path("fraudstream/core/native.json").unlink(missing_ok=True)
        return []


setup(ext_modules=_native_modules())
