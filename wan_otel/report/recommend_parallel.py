"""Recommendations of multi-GPU runs: communication-bound splits and imbalanced ranks.

Like the one-GPU rules (``recommend``), each states what the issue costs in this run and what a
change would save, and is silent when its inputs were not measured.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence

from wan_otel.report.formatting import duration, gib_or_mib
from wan_otel.report.model import ParallelFigures, RankLine, Recommendation

COMMUNICATION_BOUND = "communication_bound"
"""The rule name of a communication-bound run (the one-GPU compute_bound rule yields to it)."""
COMM_BOUND_PCT = 20.0
"""Communication share of the denoising time from which a run is communication-bound."""
IMBALANCE_MIN_PCT = 1.0
"""A straggler's compute above the others' mean, in percent, from which it is worth a word."""
SM_GAP_PP = 5.0
"""SM % points below the other ranks' mean from which a straggler's GPU counts as less busy."""


def _splits(figures: ParallelFigures) -> str:
    """Other ways to run the generation: fewer GPUs, and another Ulysses x ring split."""
    world = figures.world_size
    ulysses = figures.ulysses_degree or world
    ring = figures.ring_degree or 1
    fewer = "one GPU" if world <= 2 else f"{world // 2} GPUs (--ulysses {max(1, ulysses // 2)})"
    if ring == 1 and ulysses >= 4:
        other = (
            f"--ulysses {ulysses // 2} --ring 2 (ring attention passes keys and values "
            "between neighbours while it computes)"
        )
    elif ring == 1:
        other = "--ulysses 1 --ring 2 (ring attention overlaps its exchange with compute)"
    elif ring % 2 == 0:
        other = f"--ulysses {ulysses * 2} --ring {ring // 2} (fewer ring passes per attention)"
    else:
        return f"fewer GPUs ({fewer})"
    return f"fewer GPUs ({fewer}) or another split: {other}"


def _comm_bound(figures: ParallelFigures, lines: Sequence[RankLine]) -> Recommendation | None:
    if figures.comm_pct is None or figures.comm_pct < COMM_BOUND_PCT or figures.comm_s is None:
        return None
    counted = [line for line in lines if line.comm_s is not None]
    per_rank = figures.comm_s / len(counted)
    steps = statistics.fmean(line.steps_done for line in counted)
    step_part = f" ({duration(per_rank / steps)} per step)" if steps else ""
    waiting = ""
    if figures.wait_s is not None and figures.comm_s > 0:
        share = 100.0 * figures.wait_s / figures.comm_s
        waiting = f", {share:.1f}% of it waiting for a slower peer"
    sent = [line.comm_gb / line.steps_done for line in counted if line.comm_gb and line.steps_done]
    volume = f"; each rank sends {gib_or_mib(statistics.fmean(sent))} a step" if sent else ""
    efficiency = ""
    if figures.efficiency is not None:
        e = figures.efficiency
        pace = (
            f"{e.step_speedup:.2f}x faster"
            if e.step_speedup >= 1
            else f"{1 / e.step_speedup:.2f}x slower"
        )
        efficiency = (
            f" Against the one-GPU run {e.baseline_run_id} the step is {pace} on "
            f"{figures.world_size} GPUs: {e.step_efficiency_pct:.1f}% efficiency."
        )
    return Recommendation(
        COMMUNICATION_BOUND,
        f"Communication takes {figures.comm_pct:.1f}% of denoising: "
        f"{duration(per_rank)} per rank over the run{step_part}{waiting}{volume}."
        f"{efficiency} Try {_splits(figures)}; every halving of the communication time saves "
        f"{duration(per_rank / 2)} per video.",
    )


def _why(straggler: RankLine, others: Sequence[RankLine]) -> str:
    """The likely cause, from what differs between the straggler's GPU and the others'."""
    names = sorted({o.gpu_name for o in others if o.gpu_name} - {straggler.gpu_name})
    if straggler.gpu_name and names:
        return (
            f" Its GPU is another model ({straggler.gpu_name} against {', '.join(names)}): the "
            "slowest GPU sets every step's pace."
        )
    peers = [o.sm_pct for o in others if o.sm_pct is not None]
    if straggler.sm_pct is None or not peers:
        return (
            " No GPU samples for its GPU: they would tell slower kernels (clocks, power) from "
            "time lost on its host."
        )
    mean = statistics.fmean(peers)
    if straggler.sm_pct < mean - SM_GAP_PP:
        return (
            f" Its GPU was less busy (SM {straggler.sm_pct:.1f}% against {mean:.1f}% on the "
            "others): it lost time outside its kernels, on its host (CPU contention, process "
            "placement, launch overhead)."
        )
    return (
        f" Its GPU was as busy as the others (SM {straggler.sm_pct:.1f}% against {mean:.1f}%): "
        "its kernels ran slower, from lower clocks (thermal or power capping: see its clock "
        "and power panels) or a larger share of the work."
    )


def _imbalance(figures: ParallelFigures, lines: Sequence[RankLine]) -> Recommendation | None:
    rank = figures.straggler
    steps = figures.stragglers
    if rank is None or len(steps) < 2 or 2 * figures.straggler_steps <= len(steps):
        return None
    mine = [s for s in steps if s.rank == rank]
    excess = [s.excess_s for s in mine if s.excess_s is not None]
    base = [
        s.compute_s - s.excess_s for s in mine if s.compute_s is not None and s.excess_s is not None
    ]
    if not excess or not base or statistics.fmean(base) <= 0:
        return None
    pct = 100.0 * statistics.fmean(excess) / statistics.fmean(base)
    if pct < IMBALANCE_MIN_PCT:
        return None
    straggler = next(line for line in lines if line.rank == rank)
    others = [line for line in lines if line.rank != rank]
    caused = [s.wait_caused_s for s in mine if s.wait_caused_s is not None]
    cost = ""
    if caused:
        denoising = sum(o.denoising_s for o in others if o.denoising_s)
        share = f" ({100.0 * sum(caused) / denoising:.1f}% of their denoising)" if denoising else ""
        cost = f"; the other ranks waited {duration(sum(caused))} for it{share}"
    gpu = f" ({straggler.gpu_uuid})" if straggler.gpu_uuid else ""
    return Recommendation(
        "imbalance",
        f"Rank {rank}{gpu} was the straggler in {len(mine)} of {len(steps)} steps: its compute "
        f"took {duration(statistics.fmean(excess))} ({pct:.1f}%) longer than the other ranks' "
        f"per step{cost}.{_why(straggler, others)}",
    )


def recommend_parallel(
    figures: ParallelFigures | None, lines: Sequence[RankLine]
) -> list[Recommendation]:
    if figures is None:
        return []
    found = (rule(figures, lines) for rule in (_comm_bound, _imbalance))
    return [r for r in found if r is not None]
