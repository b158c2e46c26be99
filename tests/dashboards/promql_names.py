"""The metric and label names a PromQL expression mentions (promql-parser), and the label
names the naming contract allows: shared by the dashboard and alert-rule tests."""

from __future__ import annotations

import promql_parser

from wan_otel import semconv

PROMETHEUS_LABELS = {"le", "instance", "job"}
"""Labels Prometheus itself defines (histogram buckets, scrape targets)."""


def contract_labels() -> set[str]:
    return {v for k, v in vars(semconv).items() if k.startswith("LABEL_") and isinstance(v, str)}


def names_in(promql: str) -> tuple[set[str], set[str]]:
    """(metric names, label names) an expression mentions."""
    metrics: set[str] = set()
    labels: set[str] = set()

    def visit(node: object) -> bool:
        if isinstance(node, promql_parser.VectorSelector):
            if node.name:
                metrics.add(node.name)
            for matcher in node.matchers.matchers:
                labels.add(matcher.name)
        elif isinstance(node, promql_parser.AggregateExpr) and node.modifier is not None:
            labels.update(node.modifier.labels)
        elif isinstance(node, promql_parser.BinaryExpr) and node.modifier is not None:
            if node.modifier.matching is not None:
                labels.update(node.modifier.matching.labels)
            labels.update(node.modifier.group_labels or [])
        return True

    promql_parser.walk(promql_parser.parse(promql), visit)
    return metrics, labels - {"__name__"}
