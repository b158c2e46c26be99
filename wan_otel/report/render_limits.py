"""How far from the limits, in text and in Markdown: the summary's FLOPs, MFU, energy and
known-baseline lines, and the compute-and-energy section (each stage's FLOPs, MFU, energy and
mean power)."""

from __future__ import annotations

from wan_otel.report.baselines import AS_EXPECTED_PCT, STEP_S
from wan_otel.report.compute import PEAK_FLAG
from wan_otel.report.costs import NO_SPAN
from wan_otel.report.energy import TOO_SHORT
from wan_otel.report.formatting import NA, duration, number
from wan_otel.report.limits import ComputeFigures, EnergyFigures, KnownBaseline, StageCost
from wan_otel.report.model import Report

_FLOP_UNITS = ((1e18, "EFLOP"), (1e15, "PFLOP"), (1e12, "TFLOP"), (1e9, "GFLOP"), (1e6, "MFLOP"))
_PART_NAMES = {
    "self_attention": "self-attention",
    "cross_attention": "cross-attention",
    "mlp": "MLP",
    "embeddings": "embeddings",
}


def flops_text(flops: float | None) -> str:
    """``10.41 PFLOP``, ``520.7 TFLOP``, ``0.89 MFLOP``: three significant digits or more."""
    if flops is None:
        return NA
    for scale, unit in _FLOP_UNITS:
        if flops >= scale:
            value = flops / scale
            return f"{value:.1f} {unit}" if value >= 100 else f"{value:.2f} {unit}"
    return f"{flops:.0f} FLOP"


def energy_text(joules: float | None) -> str:
    """``23.32 kJ``, ``256.7 J``, ``1.20 MJ``."""
    if joules is None:
        return NA
    if joules >= 1e6:
        return f"{joules / 1e6:.2f} MJ"
    if joules >= 1e3:
        return f"{joules / 1e3:.2f} kJ"
    return f"{joules:.1f} J"


def power_text(watts: float | None) -> str:
    return NA if watts is None else f"{watts:.0f} W"


def _tolerance(joules: float | None, of: float | None = None) -> str:
    """``±0.12 kJ``: in the unit of ``of`` (the figure it belongs to) where given."""
    if joules is None:
        return ""
    if of is not None and of >= 1e3:
        scale, unit = (1e6, "MJ") if of >= 1e6 else (1e3, "kJ")
        return f"±{joules / scale:.2f} {unit}"
    return f"±{energy_text(joules)}"


def _mfu_line(c: ComputeFigures) -> str:
    if c.peak_tflops is None:
        return f"n/a ({c.note or 'no peak known'})"
    parts = [f"{c.mfu_pct:.1f}% over denoising" if c.mfu_pct is not None else "n/a"]
    if c.step_mfu_pct is not None:
        parts.append(f"{c.step_mfu_pct:.1f}% after the first step")
    gpus = f" x {c.world_size} GPUs" if c.world_size > 1 else ""
    flagged = (c.peak_source or "").startswith(PEAK_FLAG)
    where = c.peak_source if flagged or not c.gpu_family else f"{c.gpu_family}, dense BF16"
    line = f"{', '.join(parts)}, of {c.peak_tflops:g} TFLOP/s{gpus} ({where})"
    if c.step_s_at_peak is not None:
        line += f"; a step at 100% takes {duration(c.step_s_at_peak)}"
    return line


def _flops_line(c: ComputeFigures, steps: int) -> str:
    if c.step_flops is None:
        return f"n/a ({c.note})" if c.note else NA
    forwards = f"{c.forwards / steps:g} forwards" if steps else "forwards"
    return (
        f"{flops_text(c.step_flops)}/step ({forwards} of {flops_text(c.forward_flops)}), "
        f"{flops_text(c.denoising_flops)} over {steps} steps"
    )


def _energy_line(e: EnergyFigures) -> str:
    if e.total_j is None:
        return f"n/a ({e.note})" if e.note else NA
    line = f"{energy_text(e.total_j)} {_tolerance(e.tolerance_j, e.total_j)} per video"
    line += f" ({power_text(e.mean_power_w)} mean"
    line += f", {len(e.gpus)} GPUs)" if len(e.gpus) > 1 else ")"
    extra = []
    if e.j_per_frame is not None:
        extra.append(f"{energy_text(e.j_per_frame)}/frame")
    if e.j_per_video_s is not None:
        extra.append(f"{energy_text(e.j_per_video_s)} per second of video")
    return line + (": " + ", ".join(extra) if extra else "")


def baseline_line(k: KnownBaseline) -> str:
    """``2.37 s/step after the first: +0.0% against 2.37 s (NAME), as expected``."""
    what = "/step after the first" if k.figure == STEP_S else " total minus initialization"
    verdict = (
        "as expected"
        if abs(k.delta_pct) <= AS_EXPECTED_PCT
        else ("slower" if k.delta_pct > 0 else "faster")
    )
    delta = round(k.delta_pct, 1) + 0.0  # never "-0.0%"
    return (
        f"{duration(k.measured)}{what}: {delta:+.1f}% against {duration(k.expected)} "
        f"({k.name}), {verdict}"
    )


def summary_lines(r: Report, glyphs: tuple[str, str, str, str]) -> list[str]:
    """The executive summary's lines, each led by its glyph (empty in ASCII)."""
    flops, mfu, energy, known = glyphs
    out = []
    if r.compute is not None:
        line = _flops_line(r.compute, r.summary.steps_done)
        out.append(f"{flops}{'Model FLOPs:':<21}{line}")
        out.append(f"{mfu}{'MFU:':<21}{_mfu_line(r.compute)}")
    if r.energy is not None:
        out.append(f"{energy}{'GPU Energy:':<21}{_energy_line(r.energy)}")
    if r.known_baseline is not None:
        out.append(f"{known}{'Known Baseline:':<21}{baseline_line(r.known_baseline)}")
    return out


def _stage_row(label: str, s: StageCost, vae_precision: str | None) -> str:
    mfu = number(s.mfu_pct, ".1f", "%")
    if s.key == "vae_decode" and s.mfu_pct is not None and vae_precision:
        mfu += f" {vae_precision}"
    energy = energy_text(s.energy_j)
    if s.energy_j is None and s.energy_note in (NO_SPAN, TOO_SHORT):
        energy = s.energy_note
    elif s.energy_j is None and (s.energy_note or "").startswith(TOO_SHORT):
        energy = TOO_SHORT
    return (
        f"{label:<26}| {flops_text(s.flops):>12} | {mfu:>10} | {energy:>10} | "
        f"{_tolerance(s.energy_tolerance_j, s.energy_j):>10} | "
        f"{power_text(s.power_w) if s.power_w else '':>6}"
    ).rstrip(" |")


def text_section(r: Report, width: int) -> list[str]:
    c, e = r.compute, r.energy
    if c is None or e is None:
        return []
    lines = ["[Compute and Energy]", "-" * width]
    if c.tokens is not None and c.token_grid:
        grid = " x ".join(str(n) for n in c.token_grid)
        lines.append(
            f"Model:   {c.model}: {c.tokens:,} video tokens ({grid}), {c.text_tokens} text tokens"
        )
        total = sum(c.forward_parts.values()) or 1.0
        parts = sorted(c.forward_parts.items(), key=lambda kv: -kv[1])
        split = ", ".join(f"{_PART_NAMES[k]} {100 * v / total:.1f}%" for k, v in parts)
        lines.append(f"Forward: {flops_text(c.forward_flops)}: {split}")
    if c.peak_tflops is not None:
        vae = f", VAE {c.vae_peak_tflops:g} {c.vae_precision}" if c.vae_peak_tflops else ""
        lines.append(f"Peak:    {c.peak_tflops:g} TFLOP/s dense BF16 per GPU{vae}")
        lines.append(f"Source:  {c.peak_source}")
    if c.note:
        lines.append(f"Note:    {c.note}")
    header = (
        f"{'Stage':<26}| {'FLOPs':>12} | {'MFU':>10} | {'Energy':>10} | {'±':>10} | {'Power':>6}"
    )
    lines += [header, "-" * len(header)]
    number_of = {key: i for i, key in enumerate((s.key for s in r.stages), start=1)}
    for s in r.costs.stages:
        label = "   Total" if s.key == "total" else f"{number_of.get(s.key, 0)}. {s.label}"
        lines.append(_stage_row(label, s, c.vae_precision))
        if s.key == "denoising":
            lines.append(_step_row(r))
    lines.append("-" * len(header))
    lines += _legend(r)
    return [*lines, ""]


def _step_row(r: Report) -> str:
    c, e = r.compute, r.energy
    assert c is not None and e is not None
    later = r.costs.steps[1:] or r.costs.steps
    power = None
    seconds = sum(s.duration_s for s in later)
    joules = [s.energy_j for s in later]
    if seconds and joules and all(j is not None for j in joules):
        power = sum(j or 0.0 for j in joules) / seconds
    tolerance = [s.energy_tolerance_j for s in later]
    tol = (
        sum(t or 0.0 for t in tolerance) / len(tolerance)
        if tolerance and all(t is not None for t in tolerance)
        else None
    )
    row = StageCost("step", "", c.step_flops, c.step_mfu_pct, e.step_j_stable, tol, power, None)
    return _stage_row("   - Mean step after first", row, None)


def _legend(r: Report) -> list[str]:
    c, e = r.compute, r.energy
    assert c is not None and e is not None
    out = [
        "FLOPs: matrix products and convolutions (torch's FlopCounterMode's count) of the "
        "transformer forwards and the VAE decode; the text encoder's are not counted. MFU = "
        "FLOPs / (time x peak" + (" x GPUs)." if c.world_size > 1 else ")."),
    ]
    if e.total_j is not None and e.edge_s is not None:
        gpus = f"{len(e.gpus)} GPUs summed" if len(e.gpus) > 1 else "1 GPU"
        out.append(
            f"Energy: NVML energy counter ({gpus}); ± = 2 x {e.edge_s:.2f} s (the counter's "
            "update period or the sample interval) at the window's power; windows under 1 s "
            "are too short."
        )
    elif e.note:
        out.append(f"Energy n/a: {e.note}.")
    k = r.known_baseline
    if k is not None:
        out.append(f"Known baseline: {k.source}; matched on {k.matched_on}.")
    return out


def markdown_summary_rows(r: Report) -> list[str]:
    out = []
    if r.compute is not None:
        out.append(f"| Model FLOPs | {_flops_line(r.compute, r.summary.steps_done)} |")
        out.append(f"| MFU | {_mfu_line(r.compute)} |")
    if r.energy is not None:
        out.append(f"| GPU energy | {_energy_line(r.energy)} |")
    if r.known_baseline is not None:
        out.append(f"| Known baseline | {baseline_line(r.known_baseline)} |")
    return out


def markdown_section(r: Report) -> list[str]:
    c, e = r.compute, r.energy
    if c is None or e is None:
        return []
    out = ["## Compute and energy", ""]
    if c.tokens is not None:
        out += [
            f"{c.model}: {c.tokens:,} video tokens, {c.text_tokens} text tokens; a forward "
            f"{flops_text(c.forward_flops)}.",
            "",
        ]
    out += ["| stage | FLOPs | MFU | energy | ± | power |", "|---|---:|---:|---:|---:|---:|"]
    for s in r.costs.stages:
        mfu = number(s.mfu_pct, ".1f", "%")
        if s.key == "vae_decode" and s.mfu_pct is not None and c.vae_precision:
            mfu += f" {c.vae_precision}"
        out.append(
            f"| {s.label} | {flops_text(s.flops)} | {mfu} | "
            f"{energy_text(s.energy_j)} | {_tolerance(s.energy_tolerance_j, s.energy_j) or NA} | "
            f"{power_text(s.power_w)} |"
        )
    return [*out, "", *_legend(r), ""]
