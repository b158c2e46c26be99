"""Layering, read from the source: the core imports neither the exporter nor the pipeline, nor
torch or NVML; the exporter never imports torch, diffusers or the pipeline, and only its
nvml.py imports pynvml."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXPORTER_FORBIDDEN = ("torch", "diffusers", "transformers", "wan_otel.pipeline")
FORBIDDEN_IN_CORE = (
    "wan_otel.exporter",
    "wan_otel.pipeline",
    "torch",
    "diffusers",
    "pynvml",
    "transformers",
)


def imports(path: Path) -> set[str]:
    """Every module a file imports, by name."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_core_imports_no_exporter_pipeline_torch_or_nvml() -> None:
    offenders = []
    for path in sorted((ROOT / "wan_otel").rglob("*.py")):
        for name in imports(path):
            if any(name == f or name.startswith(f + ".") for f in FORBIDDEN_IN_CORE):
                offenders.append(f"{path.relative_to(ROOT)} imports {name}")
    assert offenders == []


def test_cli_names_its_commands_by_module_string_only() -> None:
    from wan_otel.cli import COMMANDS

    assert COMMANDS["exporter"][0] == "wan_otel.exporter.cli"
    assert COMMANDS["run"][0] == "wan_otel.pipeline.cli"


def test_no_exporter_module_imports_torch_diffusers_or_the_pipeline() -> None:
    modules = sorted((ROOT / "exporter").glob("*.py"))
    assert len(modules) >= 10
    offenders = [
        f"{path.name} imports {name}"
        for path in modules
        for name in imports(path)
        if any(name == f or name.startswith(f + ".") for f in EXPORTER_FORBIDDEN)
    ]
    assert offenders == []


def test_only_nvml_py_imports_pynvml() -> None:
    importers = sorted(p.name for p in (ROOT / "exporter").glob("*.py") if "pynvml" in imports(p))
    assert importers == ["nvml.py"]
