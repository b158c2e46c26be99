"""Layering: the core imports neither the exporter nor the pipeline, nor torch or NVML."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN_IN_CORE = (
    "wan_otel.exporter",
    "wan_otel.pipeline",
    "torch",
    "diffusers",
    "pynvml",
    "transformers",
)


def _imports(path: Path) -> set[str]:
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
        for name in _imports(path):
            if any(name == f or name.startswith(f + ".") for f in FORBIDDEN_IN_CORE):
                offenders.append(f"{path.relative_to(ROOT)} imports {name}")
    assert offenders == []


def test_cli_names_its_commands_by_module_string_only() -> None:
    from wan_otel.cli import COMMANDS

    assert COMMANDS["exporter"][0] == "wan_otel.exporter.cli"
    assert COMMANDS["run"][0] == "wan_otel.pipeline.cli"
