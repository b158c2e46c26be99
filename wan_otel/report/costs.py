"""What each stage and step of a run cost: its FLOPs and MFU, its GPU energy and mean power;
and the generation's energy per video, per frame and per second of video.

Energy is summed over every GPU of the run: each rank's window (its root, its stage, its step
of the same index) on its own GPU (``wan.gpu.uuid`` of its root), so a two-GPU run's step costs
both GPUs' joules. A window is n/a when any rank's is (a partial sum would read as the whole).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence

from wan_otel import semconv as sc
from wan_otel.report.compute import StepFlops
from wan_otel.report.energy import RunEnergy, WindowEnergy, summed
from wan_otel.report.limits import ComputeFigures, Costs, EnergyFigures, StageCost, StepCost
from wan_otel.report.model import RunConfig, StageLine
from wan_otel.report.spans import RunTree, attr_int, attr_str
from wan_otel.store.otlp_json import SpanRecord
from wan_otel.store.samples import GpuSample

TOTAL = "total"
"""Key of the whole run's line in ``Costs.stages``."""
NO_SPAN = "no span"
"""The energy note of a stage the run has no span for."""


def _uuid(tree: RunTree) -> str | None:
    return attr_str(tree.root, sc.GPU_UUID)


def _stage_energy(energy: RunEnergy, trees: Sequence[RunTree], name: str | None) -> WindowEnergy:
    """The stage ``name`` on every rank (None: each rank's root), summed."""
    parts = []
    for tree in trees:
        span = tree.root if name is None else tree.first(name)
        if span is None:
            return WindowEnergy(None, reason=f"rank {tree.rank} has no span for it")
        parts.append(energy.window(_uuid(tree), span.start_ns, span.end_ns))
    return summed(parts)


def _steps_by_index(tree: RunTree) -> dict[int, SpanRecord]:
    """A rank's steps by their index (their position where a step does not say it); the
    first of two with one index."""
    found: dict[int, SpanRecord] = {}
    for position, step in enumerate(tree.steps()):
        index = attr_int(step, sc.DENOISE_STEP)
        found.setdefault(position if index is None else index, step)
    return found


def _step_energy(
    energy: RunEnergy, ranks: Sequence[tuple[RunTree, dict[int, SpanRecord]]], index: int
) -> WindowEnergy:
    parts = []
    for tree, steps in ranks:
        step = steps.get(index)
        if step is None:
            return WindowEnergy(None, reason=f"rank {tree.rank} has no step {index}")
        parts.append(energy.window(_uuid(tree), step.start_ns, step.end_ns))
    return summed(parts)


def _power(part: WindowEnergy, seconds: float | None) -> float | None:
    return part.joules / seconds if part.joules is not None and seconds else None


def _flops_of(key: str, compute: ComputeFigures) -> tuple[float | None, float | None]:
    if key == "denoising":
        return compute.denoising_flops, compute.mfu_pct
    if key == "vae_decode":
        return compute.vae_decode_flops, compute.vae_mfu_pct
    return None, None


def _energy_note(tree: RunTree, energy: RunEnergy, samples: Sequence[GpuSample]) -> str | None:
    if not samples:
        return "no GPU samples were recorded for this run: energy n/a"
    missing = [t.rank for t in tree.rank_trees() if (_uuid(t) or "") not in energy.gpus]
    if missing:
        which = (
            "the run's GPU"
            if missing == [0] and tree.world_size == 1
            else "ranks " + ", ".join(map(str, missing))
        )
        return (
            f"no energy counter readings for {which}: a GPU without one, or samples from "
            "Prometheus (which holds SM activity only)"
        )
    return None


def cost_figures(
    tree: RunTree,
    config: RunConfig,
    stages: Sequence[StageLine],
    compute: ComputeFigures,
    step_flops: Sequence[StepFlops],
    samples: Sequence[GpuSample],
) -> tuple[EnergyFigures, Costs]:
    """The run's energy figures and its per-stage and per-step costs."""
    energy = RunEnergy(samples)
    trees = tree.rank_trees()
    stage_costs = []
    for line in stages:
        if line.key == "other":
            continue
        span_name = next((s.span for s in sc.STAGES if s.key == line.key), None)
        part = (
            _stage_energy(energy, trees, span_name)
            if line.duration_s is not None
            else WindowEnergy(None, reason=NO_SPAN)
        )
        flops, mfu = _flops_of(line.key, compute)
        stage_costs.append(
            StageCost(line.key, line.label, flops, mfu, part.joules,
                      part.tolerance_j if part.joules is not None else None,
                      _power(part, line.duration_s), part.reason)
        )  # fmt: skip
    whole = _stage_energy(energy, trees, None)
    total_flops = None
    if compute.denoising_flops is not None and compute.vae_decode_flops is not None:
        total_flops = compute.denoising_flops + compute.vae_decode_flops
    stage_costs.append(
        StageCost(TOTAL, "Total", total_flops, None, whole.joules,
                  whole.tolerance_j if whole.joules is not None else None,
                  _power(whole, tree.root.duration_s), whole.reason)
    )  # fmt: skip
    ranks = [(t, _steps_by_index(t)) for t in trees]
    index_of = {id(step): index for index, step in ranks[0][1].items()}
    step_costs = []
    for position, done in enumerate(step_flops):
        index = index_of.get(id(done.step), position)
        part = _step_energy(energy, ranks, index)
        step_costs.append(
            StepCost(index, done.step.duration_s, done.forwards,
                     done.flops, done.mfu_pct, part.joules,
                     part.tolerance_j if part.joules is not None else None,
                     _power(part, done.step.duration_s))
        )  # fmt: skip
    later = [s.energy_j for s in step_costs[1:]]
    video_s = config.num_frames / config.fps if config.num_frames and config.fps else None
    total = whole.joules
    uuids = [u for t in trees if (u := _uuid(t)) is not None and u in energy.gpus]
    figures = EnergyFigures(
        total_j=total,
        tolerance_j=whole.tolerance_j if total is not None else None,
        mean_power_w=_power(whole, tree.root.duration_s),
        j_per_frame=total / config.num_frames if total is not None and config.num_frames else None,
        j_per_video_s=total / video_s if total is not None and video_s else None,
        video_s=video_s,
        step_j_stable=statistics.fmean(later)  # type: ignore[arg-type]
        if later and all(j is not None for j in later)
        else None,
        gpus=sorted(set(uuids)),
        edge_s=energy.edge_s(uuids),
        note=(_energy_note(tree, energy, samples) or whole.reason) if total is None else None,
    )
    return figures, Costs(stages=stage_costs, steps=step_costs)
