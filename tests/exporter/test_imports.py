"""Layering: the exporter never imports torch or diffusers; only nvml.py imports pynvml."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXPORTER = ROOT / "exporter"
FORBIDDEN = ("torch", "diffusers", "transformers", "wan_otel.pipeline")


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_no_exporter_module_imports_torch_diffusers_or_the_pipeline() -> None:
    modules = sorted(EXPORTER.glob("*.py"))
    assert len(modules) >= 10
    offenders = [
        f"{path.name} imports {name}"
        for path in modules
        for name in _imports(path)
        if any(name == f or name.startswith(f + ".") for f in FORBIDDEN)
    ]
    assert offenders == []


def test_only_nvml_py_imports_pynvml() -> None:
    importers = sorted(p.name for p in EXPORTER.glob("*.py") if "pynvml" in _imports(p))
    assert importers == ["nvml.py"]


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
