"""Generate ``docs/telemetry.md`` from the naming contract (``python -m wan_otel.semconv_doc``)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

from wan_otel import semconv

HEADER = """# Telemetry reference

Generated from `wan_otel/semconv.py` by `python -m wan_otel.semconv_doc > docs/telemetry.md`;
a test fails when the two disagree. Every span name, attribute key and metric name wan-otel
emits or reads is listed here.
"""


def render() -> str:
    source = Path(semconv.__file__).read_text(encoding="utf-8")
    tree = ast.parse(source)
    lines = source.splitlines()
    out = [HEADER]
    body = tree.body
    section_of: dict[int, str] = {}
    for number, line in enumerate(lines, start=1):
        stripped = line.strip()
        if stripped.startswith("# ") and not stripped.startswith("# ---"):
            section_of[number] = stripped[2:]
    current = None
    for index, node in enumerate(body):
        if isinstance(node, ast.FunctionDef) and ast.get_docstring(node):
            out.append(
                f"| `{node.name}()` | function | {_one_line(ast.get_docstring(node) or '')} |"
            )
            continue
        if not isinstance(node, ast.AnnAssign | ast.Assign):
            continue
        target = node.target if isinstance(node, ast.AnnAssign) else node.targets[0]
        if not isinstance(target, ast.Name) or target.id.startswith("_"):
            continue
        heading = max((n for n in section_of if n < node.lineno), default=None)
        if heading is not None and section_of[heading] != current:
            current = section_of[heading]
            out += ["", f"## {current}", "", "| constant | value | meaning |", "|---|---|---|"]
        value = getattr(semconv, target.id)
        doc = ""
        following = body[index + 1] if index + 1 < len(body) else None
        if isinstance(following, ast.Expr) and isinstance(following.value, ast.Constant):
            doc = str(following.value.value)
        out.append(f"| `{target.id}` | {_shown(value)} | {_one_line(doc)} |")
    return "\n".join(out + _stage_table()) + "\n"


def _shown(value: object) -> str:
    if isinstance(value, tuple):
        return f"`{', '.join(v.key if isinstance(v, semconv.Stage) else str(v) for v in value)}`"
    return f"`{value}`"


def _stage_table() -> list[str]:
    """``STAGES`` in full: one row per stage, in run order."""
    out = [
        "",
        "## Stage table (`STAGES`)",
        "",
        _one_line(semconv.Stage.__doc__ or ""),
        "",
        "| order | span | key | metric label (`stage=`) | display label |",
        "|---|---|---|---|---|",
    ]
    out += [
        f"| {s.order} | `{s.span}` | `{s.key}` | `{s.metric_label}` | {s.label} |"
        for s in semconv.STAGES
    ]
    return out


def _one_line(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


if __name__ == "__main__":
    sys.stdout.write(render())
