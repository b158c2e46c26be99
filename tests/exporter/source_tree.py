"""Make ``wan_otel.exporter`` importable when tests run from the repository root.

``python -m pytest`` puts the root on ``sys.path``, so ``wan_otel`` comes from the source folder,
where setuptools' package-dir mapping (``exporter/`` -> ``wan_otel.exporter``) does not exist and
only the editable build has it. Adding the root to the package's search path resolves the
mapped folders from the source tree; it does nothing when the build is the one imported.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def map_source_tree() -> None:
    import wan_otel

    if importlib.util.find_spec("wan_otel.exporter") is None:
        wan_otel.__path__.append(str(ROOT))
