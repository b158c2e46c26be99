"""The queries in the checked-in dashboard JSON, and how tests turn them into plain PromQL.

Grafana replaces ``$__rate_interval``/``$__range`` with durations and multi-value variables
whose "All" is ``.*`` with regexes; ``substitute`` does the same, so the result is what
Prometheus receives. Variable queries (``label_values(selector, label)``) become
``count by (label) (selector)``, the query Grafana's answer is derived from.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = ROOT / "dashboards"
VARIABLES = {"namespace": ".*", "pod": ".*", "gpu": ".*", "rank": ".*"}
DURATIONS = {"__rate_interval": "1m", "__range": "5m", "__interval": "15s"}
_LABEL_VALUES = re.compile(r"^label_values\((.*),\s*([a-zA-Z_][a-zA-Z0-9_]*)\)$", re.S)


@dataclass(frozen=True)
class Expression:
    dashboard: str
    where: str
    """Panel title and ref id, or ``variable <name>``."""
    text: str
    """As written in the dashboard (Grafana variables unreplaced)."""

    @property
    def promql(self) -> str:
        return substitute(self.text)


def dashboard_files() -> list[Path]:
    return sorted(DASHBOARDS.glob("*.json"))


def load(path: Path) -> dict[str, Any]:
    return dict(json.loads(path.read_text()))


def substitute(text: str) -> str:
    match = _LABEL_VALUES.match(text.strip())
    if match:
        text = f"count by ({match.group(2)}) ({match.group(1)})"
    for name, value in DURATIONS.items():
        text = text.replace(f"${name}", value).replace(f"${{{name}}}", value)
    for name, value in VARIABLES.items():
        text = re.sub(rf"\$(?:\{{{name}\}}|{name}\b)", value, text)
    assert "$" not in text, f"unreplaced variable in {text!r}"
    return text


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def prometheus_expressions() -> Iterator[Expression]:
    """Every Prometheus query: panel targets, query variables and annotations."""
    for path in dashboard_files():
        dashboard = load(path)
        for panel in panels(dashboard):
            if panel.get("datasource", {}).get("type") != "prometheus":
                continue
            for target in panel.get("targets", []):
                where = f"{panel['title']} / {target['refId']}"
                yield Expression(path.name, where, target["expr"])
        for variable in dashboard["templating"]["list"]:
            if variable["type"] == "query":
                yield Expression(path.name, f"variable {variable['name']}", variable["query"])
        for annotation in dashboard["annotations"].get("list", []):
            if annotation.get("expr"):
                yield Expression(path.name, f"annotation {annotation['name']}", annotation["expr"])


def tempo_queries() -> Iterator[Expression]:
    for path in dashboard_files():
        for panel in panels(load(path)):
            if panel.get("datasource", {}).get("type") == "tempo":
                for target in panel.get("targets", []):
                    yield Expression(path.name, panel["title"], target["query"])
