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
    assert COMMANDS["run"][0] == "wan_otel.pipeline.runner.cli"


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


def _offenders(folder: Path, forbidden: tuple[str, ...]) -> list[str]:
    return [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in sorted(folder.rglob("*.py"))
        for name in imports(path)
        if any(name == f or name.startswith(f + ".") for f in forbidden)
    ]


def test_the_store_does_not_import_the_report() -> None:
    """The store is below the report: it owns its summary type instead of borrowing one."""
    assert _offenders(ROOT / "wan_otel" / "store", ("wan_otel.report",)) == []


def test_the_instrumentation_library_imports_no_app() -> None:
    """What users import into their own servers stands apart from what we run."""
    apps = ("wan_otel.pipeline.runner", "wan_otel.pipeline.serve", "opentelemetry.sdk")
    assert _offenders(ROOT / "pipeline" / "instrumentation", apps) == []


def test_the_run_app_does_not_import_the_server() -> None:
    assert _offenders(ROOT / "pipeline" / "runner", ("wan_otel.pipeline.serve",)) == []


def test_no_pipeline_module_is_over_350_lines() -> None:
    long = {
        str(path.relative_to(ROOT)): n
        for path in sorted((ROOT / "pipeline").rglob("*.py"))
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > 350
    }
    assert long == {}
