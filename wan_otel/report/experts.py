"""The two experts of Wan2.2 A14B in a run: which steps each ran, their time, activity, memory
and weight moves, and where the low-noise expert took over.

A step's expert is its ``wan.denoise.expert`` (or, where the step lacks it, its forwards').
The figures are rank 0's in a multi-GPU run, as every one-GPU section is.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from wan_otel import semconv as sc
from wan_otel.report.model import ExpertLine
from wan_otel.report.sm import SmSeries
from wan_otel.report.spans import (
    GIB,
    RunTree,
    attr_float,
    attr_gib,
    attr_int,
    attr_str,
    work_peak_gib,
)
from wan_otel.store.otlp_json import SpanRecord

HIGH_NOISE, LOW_NOISE = tuple(sc.EXPERTS)
"""The components of the two experts: ``transformer``, then ``transformer_2``."""
GUIDANCE_KEYS = {HIGH_NOISE: sc.REQUEST_GUIDANCE, LOW_NOISE: sc.REQUEST_GUIDANCE_2}


def has_two_experts(tree: RunTree) -> bool:
    """Whether the run's model has two experts: its root names a boundary ratio or the
    low-noise expert's weights, or a step names its expert."""
    root = tree.root
    if attr_float(root, sc.MODEL_BOUNDARY_RATIO) is not None:
        return True
    if attr_int(root, sc.weight_bytes_key(LOW_NOISE)) is not None:
        return True
    return any(attr_str(s, sc.DENOISE_EXPERT) in sc.EXPERTS for s in tree.steps())


def step_expert(tree: RunTree, step: SpanRecord) -> str | None:
    """The component that ran the step, or None where nothing says."""
    named = attr_str(step, sc.DENOISE_EXPERT)
    if named in sc.EXPERTS:
        return named
    for forward in tree.descendants(step, sc.SPAN_TRANSFORMER_FORWARD):
        named = attr_str(forward, sc.DENOISE_EXPERT)
        if named in sc.EXPERTS:
            return named
    return None


@dataclass(frozen=True)
class _Moves:
    seconds: float
    gib: float


def _moves(transfers: Sequence[SpanRecord]) -> _Moves:
    moved = sum(b for t in transfers if (b := attr_int(t, sc.TRANSFER_BYTES)) and b > 0)
    return _Moves(sum(t.duration_s for t in transfers), moved / GIB)


def _own_moves(tree: RunTree, component: str) -> _Moves:
    """Moves of the component's weights outside initialization: what each call pays (the
    initial placement is paid once per process)."""
    init = [s for s in tree.stages() if s.name == sc.SPAN_INITIALIZE]
    once = {t.span_id for s in init for t in _transfers(tree, s)}
    return _moves(
        [
            s
            for s in tree.spans
            if s.name == sc.SPAN_WEIGHT_TRANSFER
            and s.span_id not in once
            and attr_str(s, sc.COMPONENT_NAME) == component
        ]
    )


def _transfers(tree: RunTree, span: SpanRecord) -> list[SpanRecord]:
    return tree.descendants(span, sc.SPAN_WEIGHT_TRANSFER)


def _init_s(tree: RunTree, component: str) -> float | None:
    spans = [
        s
        for s in tree.spans
        if s.name == sc.SPAN_COMPONENT_INITIALIZE and attr_str(s, sc.COMPONENT_NAME) == component
    ]
    return sum(s.duration_s for s in spans) if spans else None


def _stretches(steps: Sequence[SpanRecord], mine: Sequence[SpanRecord]) -> list[tuple[int, int]]:
    """Windows of the runs of consecutive steps that are ``mine``, in step order."""
    ids = {s.span_id for s in mine}
    windows, current = [], []
    for step in [*steps, None]:
        if step is not None and step.span_id in ids:
            current.append(step)
            continue
        if current:
            windows.append((current[0].start_ns, current[-1].end_ns))
            current = []
    return windows


def _sm_pct(sm: SmSeries, windows: Sequence[tuple[int, int]]) -> float | None:
    """Activity over the windows, each integrated as a stage row, weighted by its length;
    None when any window has no figure (a partial mean would misstate the expert)."""
    figures = [(sm.window(lo, hi).pct, hi - lo) for lo, hi in windows]
    if not figures or any(pct is None for pct, _ in figures):
        return None
    length = sum(n for _, n in figures)
    return sum((pct or 0.0) * n for pct, n in figures) / length if length else None


def _largest(values: Sequence[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return max(known) if known else None


def _line(
    tree: RunTree,
    component: str,
    mine: list[SpanRecord],
    steps: Sequence[SpanRecord],
    sm: SmSeries,
) -> ExpertLine:
    root, loop = tree.root, tree.first(sc.SPAN_DENOISE)
    durations = [s.duration_s for s in mine]
    stable = statistics.fmean(durations[1:]) if len(durations) > 1 else None
    first = mine[0] if mine else None
    first_moves = _moves(_transfers(tree, first)) if first is not None else None
    moves = _moves([t for s in mine for t in _transfers(tree, s)])
    own = _own_moves(tree, component)
    forwards = [len(tree.descendants(s, sc.SPAN_TRANSFORMER_FORWARD)) for s in mine]
    activations = [work_peak_gib(tree, step) for step in mine]
    return ExpertLine(
        name=sc.EXPERTS[component],
        component=component,
        guidance_scale=attr_float(root, GUIDANCE_KEYS[component]),
        steps=len(mine),
        first_step=attr_int(first, sc.DENOISE_STEP) if first is not None else None,
        last_step=attr_int(mine[-1], sc.DENOISE_STEP) if mine else None,
        first_timestep=attr_float(first, sc.DENOISE_TIMESTEP) if first is not None else None,
        duration_s=sum(durations),
        step_s_mean=statistics.fmean(durations) if durations else None,
        step_s_first=durations[0] if durations else None,
        step_s_stable=stable,
        first_step_extra_s=durations[0] - stable if stable is not None else None,
        first_step_transfer_s=first_moves.seconds if first_moves is not None else None,
        first_step_transfer_gb=first_moves.gib if first_moves is not None else None,
        forwards_per_step=statistics.fmean(forwards) if any(forwards) else None,
        sm_pct=_sm_pct(sm, _stretches(steps, mine)),
        weights_gb=attr_gib(root, sc.weight_bytes_key(component)),
        init_s=_init_s(tree, component),
        transfer_s=moves.seconds,
        transfer_gb=moves.gib,
        own_transfer_s=own.seconds,
        own_transfer_gb=own.gib,
        activation_peak_gb=_largest(activations),
        peak_memory_gb=_largest([attr_gib(s, sc.MEMORY_ALLOCATED_PEAK) for s in mine]),
        boundary_ratio=attr_float(root, sc.MODEL_BOUNDARY_RATIO),
        boundary_timestep=attr_float(loop, sc.DENOISE_BOUNDARY_TIMESTEP) if loop else None,
    )


def expert_lines(tree: RunTree, sm: SmSeries, notes: list[str]) -> list[ExpertLine]:
    """Both experts' lines, high-noise first, for a two-expert run; empty for one expert."""
    if not has_two_experts(tree):
        return []
    steps = tree.steps()
    mine: dict[str, list[SpanRecord]] = {component: [] for component in sc.EXPERTS}
    unnamed = 0
    for step in steps:
        expert = step_expert(tree, step)
        if expert is None:
            unnamed += 1
        else:
            mine[expert].append(step)
    if unnamed:
        notes.append(
            f"{unnamed} step(s) of this two-expert run name no expert ({sc.DENOISE_EXPERT}); "
            "the experts section leaves them out"
        )
    lines = [_line(tree, component, mine[component], steps, sm) for component in sc.EXPERTS]
    _check_switch(tree, lines[1], notes)
    return lines


def _check_switch(tree: RunTree, low: ExpertLine, notes: list[str]) -> None:
    """The loop's recorded switch step against the low-noise expert's first step."""
    loop = tree.first(sc.SPAN_DENOISE)
    recorded = attr_int(loop, sc.DENOISE_SWITCH_STEP) if loop is not None else None
    if recorded is not None and recorded != low.first_step:
        seen = "no step" if low.first_step is None else f"step {low.first_step}"
        notes.append(
            f"the loop records the switch at step {recorded} ({sc.DENOISE_SWITCH_STEP}), but "
            f"the low-noise expert's first step is {seen}; the report goes by the steps"
        )


@dataclass(frozen=True)
class Resident:
    """What the denoising steps would hold with both experts resident: both experts' weights
    and the larger activation peak of their steps."""

    weights_gb: tuple[float, float]
    """High-noise, low-noise."""
    activation_gb: float

    @property
    def total_gb(self) -> float:
        return sum(self.weights_gb) + self.activation_gb


def both_resident(experts: Sequence[ExpertLine]) -> Resident | None:
    """Both experts resident in the steps, from measured figures; None unless both experts'
    weights and an activation peak were measured."""
    if len(experts) != 2:
        return None
    high, low = experts[0].weights_gb, experts[1].weights_gb
    activation = _largest([e.activation_peak_gb for e in experts])
    if high is None or low is None or activation is None:
        return None
    return Resident((high, low), max(activation, 0.0))


def switch_of(experts: Sequence[ExpertLine]) -> ExpertLine | None:
    """The low-noise expert's line when the run switched (both experts ran steps)."""
    if len(experts) != 2 or not experts[0].steps or not experts[1].steps:
        return None
    return experts[1]
