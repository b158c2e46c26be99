"""The run laid out in time for the HTML and Perfetto renderers: each rank's spans packed into
lanes by nesting, and the rank's GPU series (SM activity, memory) on the same clock.

A pure function of the run's spans and samples (whatever source they came from); the
renderers decide how it looks.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from wan_otel import semconv as sc
from wan_otel.report.experts import has_two_experts, step_expert
from wan_otel.report.integrate import WindowMean
from wan_otel.report.sm import SmSeries
from wan_otel.report.spans import RunTree, attr_int, attr_str, build_tree
from wan_otel.report.stages import stage_label
from wan_otel.report.timeline_series import MemorySeries, memory_series, sm_points
from wan_otel.store.otlp_json import SpanRecord
from wan_otel.store.run_store import RunData

KINDS = {
    sc.SPAN_GENERATE: "root",
    sc.SPAN_RANK: "rank",
    sc.SPAN_COMPONENT_INITIALIZE: "init",
    sc.SPAN_DENOISE_STEP: "step",
    sc.SPAN_TRANSFORMER_FORWARD: "forward",
    sc.SPAN_WEIGHT_TRANSFER: "transfer",
    sc.SPAN_COLLECTIVE: "collective",
}
"""Span name -> kind (stages are ``stage``; anything else ``span``)."""
LANE_NAMES = {
    "root": "run",
    "rank": "rank",
    "stage": "stages",
    "init": "components",
    "step": "steps",
    "forward": "forwards",
    "transfer": "transfers",
    "collective": "collectives",
    "span": "other spans",
}


@dataclass(frozen=True)
class Bar:
    """One span placed in a lane of its rank."""

    lane: int
    span: SpanRecord
    kind: str
    label: str
    """Short name: ``Denoising``, ``Step 3``, ``cond``, ``Transfer vae``, ``all_to_all``."""
    sm: WindowMean
    """SM activity of the rank's GPU over the span."""
    expert: str | None = None
    """Steps of a two-expert run: the component that ran it."""
    stand_in: bool = False
    """A span the report made up over the children of one that never ended."""


@dataclass(frozen=True)
class RankView:
    """One rank's lanes and GPU series."""

    rank: int
    title: str
    lanes: list[str]
    """Lane names, top (the root) first."""
    bars: list[Bar]
    sm: list[tuple[int, int, float]]
    """SM activity over consecutive windows of whole sample intervals (start ns, end ns,
    percent)."""
    memory: MemorySeries


@dataclass(frozen=True)
class Timeline:
    run_id: str
    origin_ns: int
    """Time zero of every axis: the earliest span start of any rank."""
    end_ns: int
    ranks: list[RankView]
    sm_source: str | None

    @property
    def duration_ns(self) -> int:
        return max(1, self.end_ns - self.origin_ns)


def kind_of(span: SpanRecord) -> str:
    if span.name in sc.STAGE_SPANS:
        return "stage"
    return KINDS.get(span.name, "span")


def _label(span: SpanRecord, kind: str, expert: str | None) -> str:
    if kind == "stage":
        return stage_label(span)
    if kind == "step":
        name = f"Step {attr_int(span, sc.DENOISE_STEP)}"
        return name if expert is None else f"{name} ({sc.EXPERTS[expert]})"
    if kind == "forward":
        return attr_str(span, sc.TRANSFORMER_BRANCH) or "forward"
    if kind == "transfer":
        return f"Transfer {attr_str(span, sc.COMPONENT_NAME) or '?'}"
    if kind == "init":
        return f"Init {attr_str(span, sc.COMPONENT_NAME) or '?'}"
    if kind == "collective":
        return attr_str(span, sc.COLLECTIVE_OP) or "collective"
    if kind == "root":
        return "Run"
    if kind == "rank":
        return f"Rank {attr_int(span, sc.RANK)}"
    return span.name


def _depths(tree: RunTree) -> dict[str, int]:
    """Span id -> nesting depth under the rank's root (orphans hang under the root)."""
    depth = {tree.root.span_id: 0}
    todo = [tree.root]
    while todo:
        node = todo.pop()
        for kid in tree.kids(node):
            if kid.span_id not in depth:
                depth[kid.span_id] = depth[node.span_id] + 1
                todo.append(kid)
    return depth


def _pack(tree: RunTree) -> list[tuple[int, SpanRecord]]:
    """(lane, span) for every span of the rank: a span goes to the first lane below its
    parent's that is free when it starts, so that no two spans of one lane overlap (a
    Perfetto thread, an SVG row) and children sit under their parents."""
    depth = _depths(tree)
    parent_of = {kid.span_id: pid for pid, kids in tree.children.items() for kid in kids}
    spans = [tree.root, *(s for s in tree.spans if s is not tree.root)]
    spans.sort(key=lambda s: (s.start_ns, -s.end_ns, depth.get(s.span_id, 1)))
    lane_of: dict[str, int] = {}
    ends: list[int] = []
    placed = []
    for span in spans:
        parent = parent_of.get(span.span_id)
        lane = 0 if span is tree.root else lane_of.get(parent or "", 0) + 1
        while lane < len(ends) and ends[lane] > span.start_ns:
            lane += 1
        if lane == len(ends):
            ends.append(span.end_ns)
        ends[lane] = max(ends[lane], span.end_ns)
        lane_of[span.span_id] = lane
        placed.append((lane, span))
    return placed


def _lane_names(bars: list[Bar], count: int) -> list[str]:
    """Each lane named by the (at most two) kinds of span it holds most (on a tie, the
    outer kind first)."""
    kinds: list[Counter[str]] = [Counter() for _ in range(count)]
    for bar in bars:
        kinds[bar.lane][bar.kind] += 1
    order = list(LANE_NAMES)
    return [
        " / ".join(LANE_NAMES[k] for k in sorted(c, key=lambda k: (-c[k], order.index(k)))[:2])
        for c in kinds
    ]


def _rank_title(tree: RunTree) -> str:
    root = tree.root
    gpu = attr_str(root, sc.GPU_NAME) or attr_str(root, sc.DEVICE)
    uuid = attr_str(root, sc.GPU_UUID)
    parts = [f"rank {tree.rank}"] if tree.world_size > 1 else []
    parts += [p for p in (gpu, uuid[:12] if uuid else None) if p]
    return " · ".join(parts) or "run"


def _rank_view(
    tree: RunTree,
    run: RunData,
    window: tuple[int, int],
    *,
    points: int,
    min_intervals: int,
    experts: bool,
    recorded: set[int],
) -> RankView:
    """One rank's bars and series; ``recorded``: ids of the span objects the run holds (the
    others are stand-ins the tree made)."""
    sm = SmSeries(tree.root, run.samples)
    bars = []
    for lane, span in _pack(tree):
        kind = kind_of(span)
        expert = step_expert(tree, span) if experts and kind == "step" else None
        label = _label(span, kind, expert)
        bars.append(Bar(lane, span, kind, label, sm.mean(span), expert, id(span) not in recorded))
    uuid = attr_str(tree.root, sc.GPU_UUID)
    return RankView(
        rank=tree.rank,
        title=_rank_title(tree),
        lanes=_lane_names(bars, 1 + max(b.lane for b in bars)),
        bars=bars,
        sm=sm_points(sm, window, points, min_intervals),
        memory=memory_series(tree, run.samples, uuid, window, points),
    )


def build_timeline(run: RunData, points: int, min_intervals: int = 1) -> Timeline:
    """The run's timeline, every rank's: at most about ``points`` values per series and rank,
    SM windows of at least ``min_intervals`` sample intervals."""
    started = run.summary.attributes if run.summary is not None else None
    # The tree as build_report makes it; its notes are already the report's.
    tree = build_tree(run.run_id, run.spans, [], started)
    trees = tree.rank_trees()
    everything = [s for t in trees for s in (t.root, *t.spans)]
    lo = min(s.start_ns for s in everything)
    hi = max(max(s.end_ns for s in everything), lo + 1)
    experts = has_two_experts(tree)
    recorded = {id(s) for s in run.spans}
    ranks = [
        _rank_view(
            t,
            run,
            (lo, hi),
            points=points,
            min_intervals=min_intervals,
            experts=experts,
            recorded=recorded,
        )
        for t in trees
    ]
    return Timeline(run.run_id, lo, hi, ranks, SmSeries(tree.root, run.samples).source)
