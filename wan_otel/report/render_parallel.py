"""The ranks section of a multi-GPU run's report, in text and in Markdown (absent for one GPU).

A table of the ranks (GPU, steps, step mean, compute, communication, waiting, communication
share, SM %, peak memory, how the rank ended), then one line each for communication, the most
frequent straggler and the parallel efficiency against a baseline.
"""

from __future__ import annotations

import statistics

from wan_otel.report.formatting import NA, duration, number, one_line
from wan_otel.report.model import ParallelFigures, RankLine, Report

UUID_CHARS = 12
"""``GPU-4e1b0c2a``: the UUID's first group tells the GPUs of one node apart."""
LEGEND = (
    "Compute, Comm, Wait: time over the rank's steps. Wait: the part of Comm above the fastest",
    "rank's time for the same collective (waiting for a slower peer). Comm % of the rank's",
    "denoising stage; SM % over that stage; Peak: largest allocated on the rank.",
)


def short_uuid(uuid: str | None) -> str:
    return NA if not uuid else uuid[:UUID_CHARS]


def _title(p: ParallelFigures) -> str:
    split = " x ".join(
        f"{name} {degree}"
        for name, degree in (("Ulysses", p.ulysses_degree), ("ring", p.ring_degree))
        if degree is not None
    )
    return f"{p.world_size} GPUs" + (f", {split}" if split else "")


def _status(line: RankLine) -> str:
    return "ERROR" if line.status == "error" else line.status


def summary_lines(r: Report) -> list[str]:
    """Communication, straggler and efficiency, one sentence each (what was measured)."""
    p = r.parallel
    if p is None:
        return []
    out = []
    if p.comm_pct is not None:
        waiting = (
            f", of which waiting for a slower peer {p.wait_pct:.1f}% ({duration(p.wait_s)})"
            if p.wait_pct is not None
            else ""
        )
        out.append(
            f"Communication: {p.comm_pct:.1f}% of the denoising time over all ranks "
            f"({duration(p.comm_s)}){waiting}."
        )
    if p.straggler is not None:
        mine = [s for s in p.stragglers if s.rank == p.straggler]
        excess = [s.excess_s for s in mine if s.excess_s is not None]
        caused = [s.wait_caused_s for s in mine if s.wait_caused_s is not None]
        cost = []
        if excess:
            cost.append(f"its compute +{duration(statistics.fmean(excess))} a step")
        if caused:
            cost.append(f"the others waited {duration(sum(caused))} for it")
        out.append(
            f"Straggler: rank {p.straggler} in {p.straggler_steps} of {len(p.stragglers)} steps"
            + (f" ({'; '.join(cost)})" if cost else "")
            + "."
        )
    e = p.efficiency
    if e is not None:
        base = f"{e.baseline_run_id}" + (f", {e.baseline_gpu_name}" if e.baseline_gpu_name else "")
        denoising = (
            f"; denoising {e.denoising_speedup:.2f}x ({e.denoising_efficiency_pct:.1f}%)"
            if e.denoising_speedup is not None and e.denoising_efficiency_pct is not None
            else "; denoising n/a (see notes)"
        )
        out.append(
            f"Parallel efficiency against one GPU ({base}): mean step after the first "
            f"{duration(e.baseline_step_s)} -> {duration(e.step_s)}, {e.step_speedup:.2f}x, "
            f"{e.step_efficiency_pct:.1f}% of {p.world_size} GPUs{denoising}."
        )
    return out


def text_section(r: Report, width: int) -> list[str]:
    if r.parallel is None:
        return []
    header = (
        f"{'Rank':>4} | {'GPU':<12} | {'Steps':>5} | {'Step mean':>9} | {'Compute':>9} | "
        f"{'Comm':>9} | {'Wait':>9} | {'Comm %':>6} | {'SM %':>5} | {'Peak GiB':>8} | Status"
    )
    rule = "-" * max(len(header), width)
    lines = [f"[Ranks: {_title(r.parallel)}]", rule, header, rule]
    for line in r.ranks:
        lines.append(
            f"{line.rank:>4} | {short_uuid(line.gpu_uuid):<12} | {line.steps_done:>5} | "
            f"{duration(line.step_s_mean):>9} | {duration(line.compute_s):>9} | "
            f"{duration(line.comm_s):>9} | {duration(line.wait_s):>9} | "
            f"{number(line.comm_pct, '.1f', '%'):>6} | {number(line.sm_pct, '.1f'):>5} | "
            f"{number(line.peak_memory_gb, '.2f'):>8} | {_status(line)}"
        )
    lines += [rule, *LEGEND, *summary_lines(r), ""]
    return lines


def markdown_section(r: Report) -> list[str]:
    if r.parallel is None:
        return []
    out = [
        f"## Ranks ({_title(r.parallel)})",
        "",
        "| rank | GPU | steps | step mean | compute | comm | wait | comm % | SM % | peak GiB "
        "| status |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    out += [
        f"| {line.rank} | {short_uuid(line.gpu_uuid)} | {line.steps_done} | "
        f"{duration(line.step_s_mean)} | {duration(line.compute_s)} | {duration(line.comm_s)} | "
        f"{duration(line.wait_s)} | {number(line.comm_pct, '.1f', '%')} | "
        f"{number(line.sm_pct, '.1f')} | {number(line.peak_memory_gb)} | "
        f"{one_line(_status(line))} |"
        for line in r.ranks
    ]
    out += ["", " ".join(LEGEND), ""]
    out += [f"- {sentence}" for sentence in summary_lines(r)]
    return [*out, ""] if summary_lines(r) else out
