"""Which core code runs: the mypyc-compiled modules, or their Python source.

Every authorization passes through the feature windows, the card and merchant features, the model's score and the
decision. ``setup.py`` compiles these modules with mypyc at install, from the same typed Python source: the backtest
runs about a third faster (``make bench`` and ``make evaluate`` print which code ran). Only these: compiling the
scorer and the state tables, which mostly handle objects of uncompiled modules, made it slower.

A compiled module sits beside its source and Python imports it first, so an edit to the source would go unnoticed
until the next install. The install records each source's hash (``native.json``); when a source no longer matches,
all of them run from source, with a warning, until ``make install`` compiles them again. They go together:
compiled modules call one another natively. ``FRAUDSTREAM_PURE_PYTHON=1`` runs the source too (for a debugger),
and at install skips the compiler.

>>> CORE_CODE in ("compiled", "python", "python (FRAUDSTREAM_PURE_PYTHON)", "python (sources changed since compiling)")
True
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import os
import sys
import warnings
from pathlib import Path
from types import ModuleType

__all__ = ["CORE_CODE", "NATIVE_MODULES", "core_code"]

#: The compiled modules, under fraudstream.core, in dependency order (``setup.py`` reads this line; the Makefile
#: re-installs when any core module changes).
NATIVE_MODULES = ("partitioner", "features.windows", "features.card", "features.merchant", "features.partials", "model.linear",
                  "decision")
_HERE = Path(__file__).parent
_PACKAGE = __name__.rpartition(".")[0]
MANIFEST = _HERE / "native.json"


def source_of(name: str) -> Path:
    return _HERE.joinpath(*name.split(".")).with_suffix(".py")


def _compiled(name: str) -> bool:
    source = source_of(name)
    return any(p.suffix in (".so", ".pyd") for p in source.parent.glob(f"{source.stem}.*"))


def stale(manifest: dict[str, str]) -> list[str]:
    """The modules whose source is not the one compiled."""
    return [m for m in NATIVE_MODULES if manifest.get(m) != hashlib.sha256(source_of(m).read_bytes()).hexdigest()]


def _from_source(name: str) -> ModuleType:
    qualified = f"{_PACKAGE}.{name}"
    spec = importlib.util.spec_from_file_location(qualified, source_of(name))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[qualified] = module  # before it runs: the next module's import finds this one
    spec.loader.exec_module(module)
    parent, _, leaf = qualified.rpartition(".")
    setattr(importlib.import_module(parent), leaf, module)
    return module


def core_code() -> str:
    """Decide, once per process and before any of the modules is imported, which code runs; say which."""
    if not any(_compiled(m) for m in NATIVE_MODULES):
        return "python"
    if os.environ.get("FRAUDSTREAM_PURE_PYTHON"):
        why = "FRAUDSTREAM_PURE_PYTHON"
    else:
        try:
            manifest = json.loads(MANIFEST.read_text())
        except (OSError, ValueError):
            manifest = {}
        changed = stale(manifest)
        if not changed:
            return "compiled"
        why = "sources changed since compiling"
        names = ", ".join(str(source_of(m).relative_to(_HERE.parent.parent)) for m in changed)
        warnings.warn(f"fraudstream: {names} changed since it was compiled: the core runs from source (slower) until "
                      "`make install` compiles it again", stacklevel=2)
    for name in NATIVE_MODULES:
        _from_source(name)
    return f"python ({why})"


CORE_CODE = core_code()
