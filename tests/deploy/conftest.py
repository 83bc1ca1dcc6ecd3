from __future__ import annotations

import sys
from pathlib import Path

# The repository is not installed into the venv: make `import fraudstream` and the
# helpers beside this file importable from any working directory.
_HERE = Path(__file__).resolve().parent
for _p in (_HERE.parents[1], _HERE):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))
