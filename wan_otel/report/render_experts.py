"""The experts section of a two-expert run's report (Wan2.2 A14B), in text and in Markdown
(absent for one expert).

A table of the two experts (steps, time, mean step, mean step after its first, SM %, weight
transfers inside its steps, weights, initialization, peak memory), then one line each for the
boundary, the switch, the experts' weight moves and their memory.
"""

from __future__ import annotations

from wan_otel.report.experts import both_resident, switch_of
from wan_otel.report.formatting import NA, duration, gib_or_mib, number, signed_duration
from wan_otel.report.model import ExpertLine, Report
from wan_otel.report.recommend_experts import resident_parts

LEGEND = (
    "Time: its steps summed; After 1st: mean step after its first (loading, warm-up, the",
    "switch); SM % from its first step to its last; Transfers: weight moves inside its steps.",
)
MODES = {
    "none": "both experts resident",
    "model": "one expert resident at a time",
    "sequential": "experts moved layer by layer",
    "group": "experts moved block by block",
}


def _steps_cell(e: ExpertLine) -> str:
    if not e.steps:
        return "0"
    span = f"{e.first_step}" if e.first_step == e.last_step else f"{e.first_step}-{e.last_step}"
    return f"{e.steps} ({span})"


def _weights(e: ExpertLine) -> str:
    return gib_or_mib(e.weights_gb) if e.weights_gb is not None else NA


def _boundary(r: Report) -> str | None:
    high = r.experts[0]
    parts = []
    where = []
    if high.boundary_ratio is not None:
        where.append(f"ratio {high.boundary_ratio:g}")
    if high.boundary_timestep is not None:
        where.append(f"timestep {high.boundary_timestep:.1f}")
    if where:
        parts.append(where[0] + (f" ({where[1]})" if len(where) > 1 else ""))
    guidance = [
        f"{e.guidance_scale:g} ({e.name})" for e in r.experts if e.guidance_scale is not None
    ]
    if guidance:
        parts.append(f"guidance {', '.join(guidance)}")
    return f"Boundary: {'; '.join(parts)}." if parts else None


def _switch(r: Report) -> str:
    low = switch_of(r.experts)
    if low is None:
        ran = [e for e in r.experts if e.steps]
        total = sum(e.steps for e in r.experts)
        which = f", all {ran[0].name}" if len(ran) == 1 else ""
        if r.summary.status != "ok":
            return f"Switch: not reached ({total} step(s) written{which})."
        return f"Switch: none ({total} step(s){which})."
    at = f" (timestep {low.first_timestep:.1f})" if low.first_timestep is not None else ""
    text = (
        f"Switch: the low-noise expert took over at step {low.first_step}{at}; that step took "
        f"{duration(low.step_s_first)}"
    )
    if low.first_step_extra_s is not None:
        text += (
            f", {signed_duration(low.first_step_extra_s)} over the low-noise expert's later steps "
            f"({duration(low.step_s_stable)})"
        )
    else:
        text += " (no later low-noise step to compare)"
    if low.first_step_transfer_s:
        text += (
            f", of which {duration(low.first_step_transfer_s)} weight transfers "
            f"({gib_or_mib(low.first_step_transfer_gb or 0.0)} moved)"
        )
    return text + "."


def _moves(r: Report) -> str | None:
    if not any(e.own_transfer_s for e in r.experts):
        return None
    moved = ", ".join(
        f"{e.name} {gib_or_mib(e.own_transfer_gb)} in {duration(e.own_transfer_s)}"
        for e in r.experts
    )
    return f"Expert weights moved in this generation (outside initialization): {moved}."


def _memory(r: Report) -> str | None:
    peaks = [e.peak_memory_gb for e in r.experts if e.peak_memory_gb is not None]
    if not peaks and all(e.weights_gb is None for e in r.experts):
        return None
    offload = r.config.offload
    mode = f"{MODES[offload]} (offload={offload})" if offload in MODES else "offload not recorded"
    text = f"Memory: {mode}; peak {number(max(peaks, default=None))}"
    text += " GiB in the steps (measured)" if peaks else " in the steps"
    weights = " + ".join(_weights(e) for e in r.experts)
    need = both_resident(r.experts)
    if offload == "none" or need is None:
        return f"{text}, experts' weights {weights}."
    text += (
        f". Both resident, the steps would need {need.total_gb:.2f} GiB ({resident_parts(need)})"
    )
    vram = r.summary.vram_gb
    if not vram:
        return text + "."
    room = vram - need.total_gb
    verdict = f"fits with {room:.2f} GiB to spare" if room >= 0 else f"short by {-room:.2f} GiB"
    return f"{text} of {vram:.2f} GiB VRAM: {verdict}."


def sentences(r: Report) -> list[str]:
    """Boundary, switch, weight moves and memory, one sentence each (what was measured)."""
    if len(r.experts) != 2:
        return []
    found = (_boundary(r), _switch(r), _moves(r), _memory(r))
    return [line for line in found if line is not None]


def text_section(r: Report, width: int) -> list[str]:
    if not r.experts:
        return []
    header = (
        f"{'Expert':<10} | {'Steps':<10} | {'Time':>9} | {'Step mean':>9} | {'After 1st':>9} | "
        f"{'SM %':>5} | {'Transfers':>9} | {'Weights':>10} | {'Init':>9} | {'Peak GiB':>8}"
    )
    rule = "-" * max(len(header), width)
    lines = ["[Experts]", rule, header, rule]
    for e in r.experts:
        lines.append(
            f"{e.name:<10} | {_steps_cell(e):<10} | {duration(e.duration_s):>9} | "
            f"{duration(e.step_s_mean):>9} | {duration(e.step_s_stable):>9} | "
            f"{number(e.sm_pct, '.1f'):>5} | {duration(e.transfer_s):>9} | "
            f"{_weights(e):>10} | {duration(e.init_s):>9} | "
            f"{number(e.peak_memory_gb, '.2f'):>8}"
        )
    return [*lines, rule, *LEGEND, *sentences(r), ""]


def markdown_section(r: Report) -> list[str]:
    if not r.experts:
        return []
    out = [
        "## Experts",
        "",
        "| expert | steps | time | step mean | after first | SM % | transfers | weights | init "
        "| peak GiB |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    out += [
        f"| {e.name} | {_steps_cell(e)} | {duration(e.duration_s)} | {duration(e.step_s_mean)} | "
        f"{duration(e.step_s_stable)} | {number(e.sm_pct, '.1f')} | {duration(e.transfer_s)} | "
        f"{_weights(e)} | {duration(e.init_s)} | {number(e.peak_memory_gb)} |"
        for e in r.experts
    ]
    out += ["", " ".join(LEGEND), ""]
    out += [f"- {sentence}" for sentence in sentences(r)]
    return [*out, ""]
