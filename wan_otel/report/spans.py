"""A run's spans as a tree: root, stages, steps and transfers, with typed attribute access."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from wan_otel import semconv
from wan_otel.errors import WanOtelError
from wan_otel.store.otlp_json import STATUS_ERROR, AttrValue, SpanRecord

GIB = float(1 << 30)


def attr_str(span: SpanRecord, key: str) -> str | None:
    value = span.attributes.get(key)
    return None if value is None else str(value)


def attr_int(span: SpanRecord, key: str) -> int | None:
    value = span.attributes.get(key)
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def attr_float(span: SpanRecord, key: str) -> float | None:
    value = span.attributes.get(key)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def attr_gib(span: SpanRecord, key: str) -> float | None:
    value = attr_int(span, key)
    return None if value is None else value / GIB


def error_text(span: SpanRecord) -> str | None:
    """``Type: message`` of a failed span, from its status and exception event."""
    if span.status_code != STATUS_ERROR:
        return None
    kind = attr_str(span, semconv.ERROR_TYPE)
    message = span.status_message
    for event in span.events:
        if event.name == "exception":
            kind = kind or _str(event.attributes.get("exception.type"))
            message = message or _str(event.attributes.get("exception.message")) or ""
    return ": ".join(part for part in (kind, message) if part) or "error"


def _str(value: AttrValue) -> str | None:
    return None if value is None else str(value)


@dataclass
class RunTree:
    """The spans of one run, indexed."""

    root: SpanRecord
    root_is_real: bool
    spans: list[SpanRecord]
    children: dict[str, list[SpanRecord]]
    by_id: dict[str, SpanRecord]

    def kids(self, span: SpanRecord) -> list[SpanRecord]:
        return self.children.get(span.span_id, [])

    def stages(self) -> list[SpanRecord]:
        """Stage spans directly under the root, in start order."""
        return [s for s in self.kids(self.root) if s.name in semconv.STAGE_SPANS]

    def first(self, name: str) -> SpanRecord | None:
        return next((s for s in self.stages() if s.name == name), None)

    def steps(self) -> list[SpanRecord]:
        steps = [s for s in self.spans if s.name == semconv.SPAN_DENOISE_STEP]
        return sorted(steps, key=lambda s: (s.start_ns, attr_int(s, semconv.DENOISE_STEP) or 0))

    def descendants(self, span: SpanRecord, name: str) -> list[SpanRecord]:
        found, todo = [], list(self.kids(span))
        while todo:
            node = todo.pop()
            if node.name == name:
                found.append(node)
            todo.extend(self.kids(node))
        return sorted(found, key=lambda s: s.start_ns)


SYNTHETIC_ROOT_ID = "0" * 15 + "1"


def build_tree(run_id: str, spans: Sequence[SpanRecord], notes: list[str]) -> RunTree:
    """Index a run's spans. A run with no root span (killed before it ended) gets a synthetic
    root covering the spans that were written, and a note says so."""
    mine = [s for s in spans if s.attributes.get(semconv.RUN_ID) == run_id]
    if not mine:
        raise WanOtelError(f"run {run_id!r} has no spans carrying {semconv.RUN_ID}={run_id}")
    others = len(spans) - len(mine)
    if others:
        notes.append(f"{others} span(s) in the file belong to other runs; ignored")
    mine.sort(key=lambda s: (s.start_ns, -s.end_ns))
    by_id = {s.span_id: s for s in mine}
    roots = [s for s in mine if s.name == semconv.SPAN_GENERATE]
    if roots:
        root, real = roots[-1], True
        if len(roots) > 1:
            notes.append(f"{len(roots)} root spans carry this run id; the last one is reported")
    else:
        real = False
        start = min(s.start_ns for s in mine)
        end = max(s.end_ns for s in mine)
        trace_id = mine[0].trace_id
        root = SpanRecord(
            trace_id,
            SYNTHETIC_ROOT_ID,
            None,
            semconv.SPAN_GENERATE,
            start,
            end,
            {semconv.RUN_ID: run_id},
        )
        notes.append(
            "no root span: the run did not end (killed, or spans lost); figures cover the "
            f"{len(mine)} spans written, {(end - start) / 1e9:.2f} s"
        )
    if real:
        # A run is one trace; spans of other traces carrying the same id (a reused run id)
        # would otherwise be counted twice.
        strays = [s for s in mine if s.trace_id != root.trace_id]
        if strays:
            notes.append(
                f"{len(strays)} span(s) with this run id belong to other traces "
                "(a reused run id?); ignored"
            )
            mine = [s for s in mine if s.trace_id == root.trace_id]
            by_id = {s.span_id: s for s in mine}
    children: dict[str, list[SpanRecord]] = {}
    for span in mine:
        if span is root:
            continue
        parent = span.parent_span_id
        if parent not in by_id:
            parent = root.span_id  # orphans (parent lost) hang under the root
        children.setdefault(parent, []).append(span)
    return RunTree(root=root, root_is_real=real, spans=mine, children=children, by_id=by_id)
