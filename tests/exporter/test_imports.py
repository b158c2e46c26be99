"""At run time, importing every exporter module loads no torch, diffusers or pipeline (the
static import checks are in tests/test_layering.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXPORTER = ROOT / "exporter"
FORBIDDEN = ("torch", "diffusers", "transformers", "wan_otel.pipeline")


def test_importing_every_exporter_module_loads_no_torch() -> None:
    names = [f"wan_otel.exporter.{p.stem}" for p in sorted(EXPORTER.glob("*.py"))]
    code = (
        "import importlib, sys\n"
        f"for name in {names!r}: importlib.import_module(name)\n"
        f"print(sorted(m for m in {FORBIDDEN!r} if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd="/", timeout=60
    )
    assert (result.returncode, result.stdout.strip()) == (0, "[]"), result.stderr
