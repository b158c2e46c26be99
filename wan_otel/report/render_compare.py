"""Render a Comparison of two runs as text, Markdown or JSON (``wan-otel.compare/v1``).

Figures print by the report's rules (``formatting``): durations by magnitude, n/a alone,
ASCII hyphen-minus. The JSON keeps base units (seconds, GiB, joules, percent), sorted keys and
floats rounded to 4 decimals.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from wan_otel.report.comparison import Comparison, Row
from wan_otel.report.formatting import NA, duration, to_ascii
from wan_otel.report.render_json import DECIMALS
from wan_otel.report.render_limits import energy_text

SCHEMA = "wan-otel.compare/v1"
WIDTH = 96


def cell_value(row: Row, value: float | None) -> str:
    if value is None:
        return NA
    if row.unit == "s":
        return duration(value)
    if row.unit == "GiB":
        return f"{value:.2f} GiB"
    if row.unit == "J":
        return energy_text(value)
    return f"{value:.1f}%"


def cell_change(row: Row) -> str:
    if row.a is None or row.b is None:
        return NA
    if row.unit == "%":  # activity and MFU: the difference in points says more than a ratio
        return f"{round(row.b - row.a, 1) + 0.0:+.1f} pp"
    return NA if row.change_pct is None else f"{round(row.change_pct, 1) + 0.0:+.1f}%"


def cell_verdict(row: Row) -> str:
    if row.regression:
        return "REGRESSION"
    if row.improved:
        return "better"
    return "" if row.better is not None else "(not gated)"


def _header(c: Comparison) -> list[str]:
    same = ", ".join(f"{k} {v}" for k, v in c.config_a.items() if c.config_b[k] == v)
    lines = [
        f"Run A: {c.run_a} (status {c.status_a})",
        f"Run B: {c.run_b} (status {c.status_b})",
        f"Same:  {same or 'nothing'}",
    ]
    if c.differences:
        lines.append(f"Differ (compared with --force): {'; '.join(c.differences)}")
    lines.append(
        f"Tolerance: {c.tolerance_pct:g}% (B worse than A by more than this, and by more than "
        "the noise floor, is a regression)"
    )
    return lines


def verdict_line(c: Comparison) -> str:
    found = [f"{r.label} ({cell_change(r)})" for r in c.regressions]
    if c.status_regressed:
        found.insert(0, f"status {c.status_a} -> {c.status_b}")
    if not found:
        return f"No regression beyond {c.tolerance_pct:g}%."
    return f"{len(found)} regression(s) beyond {c.tolerance_pct:g}%: {', '.join(found)}."


def render_text(c: Comparison, ascii_only: bool = False) -> str:
    header = f"{'Figure':<30}| {'A':>11} | {'B':>11} | {'Change':>9} | Verdict"
    rule = "-" * WIDTH
    lines = ["=" * WIDTH, "wan-otel compare: run B against run A", "=" * WIDTH, *_header(c)]
    lines += ["", header, rule]
    for row in c.rows:
        lines.append(
            f"{row.label:<30}| {cell_value(row, row.a):>11} | {cell_value(row, row.b):>11} | "
            f"{cell_change(row):>9} | {cell_verdict(row)}".rstrip(" |")
        )
    lines += [rule, verdict_line(c), "=" * WIDTH]
    text = "\n".join(lines) + "\n"
    return to_ascii(text) if ascii_only else text


def render_markdown(c: Comparison, ascii_only: bool = False) -> str:
    out = ["# wan-otel compare: run B against run A", ""]
    out += [f"- {line}" for line in _header(c)]
    out += ["", "| figure | A | B | change | verdict |", "|---|---:|---:|---:|---|"]
    out += [
        f"| {r.label} | {cell_value(r, r.a)} | {cell_value(r, r.b)} | {cell_change(r)} "
        f"| {cell_verdict(r)} |"
        for r in c.rows
    ]
    out += ["", verdict_line(c), ""]
    text = "\n".join(out)
    return to_ascii(text) if ascii_only else text


def _plain(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, DECIMALS)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def render_json(c: Comparison) -> str:
    body = _plain(dataclasses.asdict(c))
    body["schema"] = SCHEMA
    body["regressions"] = [r.key for r in c.regressions] + (
        ["status"] if c.status_regressed else []
    )
    return json.dumps(body, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
