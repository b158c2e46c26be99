"""Render a Report as JSON: the stable, documented schema of docs/report.md.

Top-level keys: ``schema``, ``run_id``, ``title``, ``system``, ``config``, ``summary``,
``stages``, ``memory``, ``recommendations``, ``trace``, ``notes``. Keys are sorted and floats
rounded to 4 decimals, so the output is deterministic.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from wan_otel.report.model import Report

SCHEMA = "wan-otel.report/v1"
DECIMALS = 4


def _plain(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, DECIMALS)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def report_dict(report: Report) -> dict[str, Any]:
    body = _plain(dataclasses.asdict(report))
    body["schema"] = SCHEMA
    return dict(body)


def render_json(report: Report) -> str:
    return json.dumps(report_dict(report), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
