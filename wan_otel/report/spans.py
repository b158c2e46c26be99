"""A run's spans as a tree: root, stages, steps and transfers, with typed attribute access."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from wan_otel import semconv
from wan_otel.errors import WanOtelError
from wan_otel.store.otlp_json import STATUS_ERROR, AttrValue, SpanRecord

GIB = float(1 << 30)


def attr_str(span: SpanRecord, key: str) -> str | None:
    value = span.attributes.get(key)
    return None if value is None else str(value)


def attr_int(span: SpanRecord, key: str) -> int | None:
    value = span.attributes.get(key)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    number = attr_float(span, key)
    return None if number is None else int(number)


def attr_float(span: SpanRecord, key: str) -> float | None:
    """A finite number, or None (absent, not a number, NaN or infinite: OTLP allows them)."""
    value = span.attributes.get(key)
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def attr_floats(span: SpanRecord, key: str) -> tuple[float, ...] | None:
    """An array of finite, non-negative numbers (durations), or None (absent, not an array,
    or any element that is not such a number: one bad element makes the array unreliable)."""
    value = span.attributes.get(key)
    if not isinstance(value, tuple):
        return None
    numbers = []
    for item in value:
        if not isinstance(item, (int, float)) or isinstance(item, bool):
            return None
        number = float(item)
        if not math.isfinite(number) or number < 0:
            return None
        numbers.append(number)
    return tuple(numbers)


def attr_gib(span: SpanRecord, key: str) -> float | None:
    value = attr_int(span, key)
    return None if value is None else value / GIB


def error_text(span: SpanRecord) -> str | None:
    """``Type: message`` of a failed span on one line, from its status and exception event.

    Writers differ: wan-otel's pipeline puts ``Type: message`` in the status description,
    OTel's ``record_exception`` only the message; the type is not repeated either way."""
    if span.status_code != STATUS_ERROR:
        return None
    kind = attr_str(span, semconv.ERROR_TYPE)
    message = span.status_message
    for event in span.events:
        if event.name == "exception":
            kind = kind or _str(event.attributes.get("exception.type"))
            message = message or _str(event.attributes.get("exception.message")) or ""
    message = " ".join((message or "").split())
    if kind and (message == kind or message.startswith(f"{kind}:")):
        return message
    return ": ".join(part for part in (kind, message) if part) or "error"


def _str(value: AttrValue) -> str | None:
    return None if value is None else str(value)


@dataclass
class RunTree:
    """The spans of one rank of a run, indexed: rank 0's tree is rooted at the run's root span
    and holds, in ``others``, the trees of the other ranks of a multi-GPU run, each rooted at
    its ``wan.parallel.rank`` span (or a stand-in where that span is missing)."""

    root: SpanRecord
    root_is_real: bool
    spans: list[SpanRecord]
    children: dict[str, list[SpanRecord]]
    by_id: dict[str, SpanRecord]
    rank: int = 0
    world_size: int = 1
    """GPUs (processes) of the run: the root's ``wan.world_size``, or one more than the highest
    rank seen, whichever is larger; 1 for a one-GPU run."""
    others: dict[int, RunTree] = field(default_factory=dict)
    """Rank -> tree of every other rank that wrote spans (empty for a one-GPU run)."""

    def kids(self, span: SpanRecord) -> list[SpanRecord]:
        return self.children.get(span.span_id, [])

    def stages(self) -> list[SpanRecord]:
        """Stage spans directly under the root, in start order."""
        return [s for s in self.kids(self.root) if s.name in semconv.STAGE_SPANS]

    def first(self, name: str) -> SpanRecord | None:
        return next((s for s in self.stages() if s.name == name), None)

    def steps(self) -> list[SpanRecord]:
        """This rank's step spans (never another rank's), in start order."""
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

    def rank_trees(self) -> list[RunTree]:
        """Every rank's tree that has spans, rank 0 (this one) first."""
        return [self, *(self.others[k] for k in sorted(self.others))]


def work_baseline_gib(tree: RunTree, span: SpanRecord) -> float | None:
    """Allocated GiB when the span's own work began: at its start, or, where offload moved
    weights inside it, after the last of those transfers (what moved is not working set)."""
    transfers = tree.descendants(span, semconv.SPAN_WEIGHT_TRANSFER)
    if transfers:
        last = max(transfers, key=lambda t: t.end_ns)
        after = attr_gib(last, semconv.MEMORY_ALLOCATED_END)
        if after is not None:
            return after
    return attr_gib(span, semconv.MEMORY_ALLOCATED_START)


def work_peak_gib(tree: RunTree, span: SpanRecord) -> float | None:
    """The span's working set: its peak above its work baseline; None when not measured (no
    allocator figures, or, where offload moved weights inside the span, a peak no higher than
    the memory before or during those moves: that peak is the moved weights', and the work's
    own peak lies hidden under it)."""
    peak = attr_gib(span, semconv.MEMORY_ALLOCATED_PEAK)
    base = work_baseline_gib(tree, span)
    if peak is None or base is None:
        return None
    transfers = tree.descendants(span, semconv.SPAN_WEIGHT_TRANSFER)
    if transfers:
        before = [attr_gib(span, semconv.MEMORY_ALLOCATED_START)]
        before += [attr_gib(t, semconv.MEMORY_ALLOCATED_PEAK) for t in transfers]
        known = [gib for gib in before if gib is not None]
        if known and peak <= max(known):
            return None
    return peak - base


SYNTHETIC_ROOT_ID = "0" * 15 + "1"
UNENDED_PARENTS = {
    semconv.SPAN_DENOISE_STEP: semconv.SPAN_DENOISE,
    semconv.SPAN_COMPONENT_INITIALIZE: semconv.SPAN_INITIALIZE,
}
"""The parent a span always has: stands in for the parent of spans whose own never ended."""
MAX_WORLD_SIZE = 4096
"""Ranks and world sizes beyond this are not a run's (a corrupt attribute): not believed."""


def span_rank(span: SpanRecord) -> int:
    """The span's ``wan.rank``; 0 for one-GPU runs (no attribute) and for values no run has."""
    rank = attr_int(span, semconv.RANK)
    return rank if rank is not None and 0 <= rank < MAX_WORLD_SIZE else 0


def _stand_in_rank_id(rank: int) -> str:
    return f"{0xFFFF << 48 | rank:016x}"


def build_tree(
    run_id: str,
    spans: Sequence[SpanRecord],
    notes: list[str],
    root_attributes: Mapping[str, AttrValue] | None = None,
) -> RunTree:
    """Index a run's spans, rank by rank. A run with no root span (killed before it ended)
    gets a synthetic root covering the spans that were written, with ``root_attributes``
    (what the run's summary recorded at its start), and a note says so; a stage that never
    ended (the denoising loop of a killed run) is stood in for by a span over its children,
    and so is the rank span of a rank that never ended. Rank 0's tree is returned; the other
    ranks' are in its ``others``."""
    mine = [s for s in spans if s.attributes.get(semconv.RUN_ID) == run_id]
    if not mine:
        raise WanOtelError(f"run {run_id!r} has no spans carrying {semconv.RUN_ID}={run_id}")
    others = len(spans) - len(mine)
    if others:
        notes.append(f"{others} span(s) in the file belong to other runs; ignored")
    mine.sort(key=lambda s: (s.start_ns, -s.end_ns))
    roots = [s for s in mine if s.name == semconv.SPAN_GENERATE and span_rank(s) == 0]
    if roots:
        root, real = roots[-1], True
        if len(roots) > 1:
            notes.append(f"{len(roots)} root spans carry this run id; the last one is reported")
    else:
        real = False
        # The run's own window is rank 0's; a run whose rank 0 wrote nothing has only others'.
        covered = [s for s in mine if span_rank(s) == 0] or mine
        start = min(s.start_ns for s in covered)
        end = max(s.end_ns for s in covered)
        trace_id = mine[0].trace_id
        root = SpanRecord(
            trace_id,
            SYNTHETIC_ROOT_ID,
            None,
            semconv.SPAN_GENERATE,
            start,
            end,
            {**(root_attributes or {}), semconv.RUN_ID: run_id},
        )
        notes.append(
            "no root span: the run did not end (killed, or spans lost); figures cover the "
            f"{len(covered)} spans written, {(end - start) / 1e9:.2f} s"
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
    by_rank: dict[int, list[SpanRecord]] = {}
    for span in mine:
        if span is not root:
            by_rank.setdefault(span_rank(span), []).append(span)
    world = _world_size(root, mine, max(by_rank, default=0), notes)
    tree = _index(root, real, by_rank.pop(0, []), 0, world)
    for rank, kept in sorted(by_rank.items()):
        tree.others[rank] = _rank_tree(root, kept, rank, world)
    return tree


def _world_size(root: SpanRecord, spans: Sequence[SpanRecord], top: int, notes: list[str]) -> int:
    """The root's world size (any span's where the root has none), at least one more than
    the highest rank seen."""
    said = attr_int(root, semconv.WORLD_SIZE)
    if said is None:
        said = next((w for s in spans if (w := attr_int(s, semconv.WORLD_SIZE)) is not None), None)
    if said is not None and not 1 <= said <= MAX_WORLD_SIZE:
        notes.append(f"{semconv.WORLD_SIZE}={said} is not a world size; ignored")
        said = None
    return max(said or 1, top + 1)


def _rank_tree(root: SpanRecord, spans: list[SpanRecord], rank: int, world: int) -> RunTree:
    """One other rank's tree, rooted at its rank span, or at a stand-in over the spans it
    left when its rank span never ended (a rank killed by SIGKILL)."""
    rank_spans = [s for s in spans if s.name == semconv.SPAN_RANK]
    if rank_spans:
        rank_root, real = rank_spans[-1], True
    else:
        real = False
        rank_root = SpanRecord(
            root.trace_id,
            _stand_in_rank_id(rank),
            root.span_id,
            semconv.SPAN_RANK,
            min(s.start_ns for s in spans),
            max(s.end_ns for s in spans),
            {semconv.RUN_ID: root.attributes.get(semconv.RUN_ID), semconv.RANK: rank},
        )
    return _index(rank_root, real, [s for s in spans if s is not rank_root], rank, world)


def _index(root: SpanRecord, real: bool, spans: list[SpanRecord], rank: int, world: int) -> RunTree:
    """One rank's tree: orphans (parent lost) hang under the rank's root. A stand-in root is
    not one of the spans written (figures over ``spans`` never count it)."""
    mine = [root, *spans] if real else list(spans)
    mine.sort(key=lambda s: (s.start_ns, -s.end_ns))
    by_id = {s.span_id: s for s in mine}
    mine.extend(_stand_ins(mine, by_id, root))
    children: dict[str, list[SpanRecord]] = {}
    for span in mine:
        if span is root:
            continue
        parent = span.parent_span_id
        if parent not in by_id:
            parent = root.span_id
        children.setdefault(parent, []).append(span)
    return RunTree(
        root=root,
        root_is_real=real,
        spans=mine,
        children=children,
        by_id=by_id,
        rank=rank,
        world_size=world,
    )


def _stand_ins(
    spans: Sequence[SpanRecord], by_id: dict[str, SpanRecord], root: SpanRecord
) -> list[SpanRecord]:
    """Spans standing in for parents that never ended, over the children they left."""
    missing: dict[str, list[SpanRecord]] = {}
    for span in spans:
        parent = span.parent_span_id
        if span.name in UNENDED_PARENTS and parent is not None and parent not in by_id:
            missing.setdefault(parent, []).append(span)
    made = []
    for parent_id, kids in missing.items():
        stand_in = SpanRecord(
            root.trace_id,
            parent_id,
            root.span_id,
            UNENDED_PARENTS[kids[0].name],
            min(k.start_ns for k in kids),
            max(k.end_ns for k in kids),
            {semconv.RUN_ID: kids[0].attributes.get(semconv.RUN_ID)},
        )
        by_id[parent_id] = stand_in
        made.append(stand_in)
    return made
