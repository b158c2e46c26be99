"""Render a Report as the terminal text analysis (UTF-8 by default, ``ascii=True`` for plain).

Layout follows the reference analysis: system context, executive summary, the error of a
failed run, detailed pipeline latency, memory telemetry, recommendations, execution trace
table, notes. Figures print by the rules of ``formatting``.
"""

from __future__ import annotations

from wan_otel import semconv as sc
from wan_otel.report.build import iso_time
from wan_otel.report.formatting import (
    NA,
    activity_label,
    duration,
    number,
    one_line,
    rounded_shares,
    to_ascii,
)
from wan_otel.report.model import Report, TraceRow
from wan_otel.report.render_experts import text_section as experts_section
from wan_otel.report.render_limits import summary_lines as limits_lines
from wan_otel.report.render_limits import text_section as limits_section
from wan_otel.report.render_parallel import text_section
from wan_otel.report.stages import stage_key

WIDTH = 80
NO_ALLOCATOR = "n/a (no torch allocator figures in the spans)"


class _Glyphs:
    def __init__(self, ascii_only: bool) -> None:
        plain = ascii_only
        self.ok = "" if plain else "✅ "
        self.fail = "" if plain else "❌ "
        self.speed = "" if plain else "⚡ "
        self.video = "" if plain else "📹 "
        self.memory = "" if plain else "💾 "
        self.sm = "" if plain else "🔥 "
        self.limits = ("", "", "", "") if plain else ("🧮 ", "📈 ", "🔋 ", "📏 ")
        self.tip = "-" if plain else "›"
        self.delta = "Mem delta" if plain else "Mem Δ"


def _header(r: Report, g: _Glyphs) -> list[str]:
    s, c, sysinfo = r.summary, r.config, r.system
    device = sysinfo.gpu_name or sysinfo.device or NA
    if sysinfo.vram_gb is not None:
        device += f" ({sysinfo.vram_gb:.2f} GiB)"
    software = (
        " | ".join(
            f"{label} {value}"
            for label, value in (
                ("CUDA", sysinfo.cuda_version),
                ("PyTorch", sysinfo.torch_version),
                ("diffusers", sysinfo.diffusers_version),
                ("driver", sysinfo.driver_version),
            )
            if value
        )
        or NA
    )
    size = f"{c.width}x{c.height}" if c.width and c.height else NA
    task = " | ".join(
        [c.task or NA, size]
        + ([f"{c.num_frames} frames"] if c.num_frames is not None else [])
        + ([f"{c.num_steps} steps"] if c.num_steps is not None else [])
        + ([f"guidance {c.guidance_scale:g}"] if c.guidance_scale is not None else [])
    )
    dtypes = ", ".join(f"{k} {v}" for k, v in c.dtypes.items()) or NA
    return [
        "=" * WIDTH,
        r.title,
        f"Run {r.run_id} | started {iso_time(s.started_ns)} | status {s.status}",
        "=" * WIDTH,
        "",
        "[System Context]",
        f"Device:       {device}" + (f" | {sysinfo.gpu_uuid}" if sysinfo.gpu_uuid else ""),
        f"Software:     {software}",
        f"Task Config:  {task}",
        f"Optimization: Offload={c.offload or NA} | Precision={dtypes}",
        "",
    ]


def _summary(r: Report, g: _Glyphs) -> list[str]:
    s = r.summary
    lines = ["[Executive Summary]", "-" * WIDTH]
    mark = g.ok if s.status == "ok" else g.fail
    if s.status != "ok":
        lines.append(f"{g.fail}Run Ended:           {s.ended}")
    whole = "root span" if s.status in ("ok", "error", "interrupted") else "spans written"
    lines.append(f"{mark}Total Latency:       {duration(s.total_s)} ({whole})")
    speed = f"{NA} ({s.steps_done} steps)"
    if s.step_s_mean is not None:
        speed = (
            f"{duration(s.step_s_mean)}/step "
            f"({number(s.steps_per_s, '.2f', 'steps/s')}, {s.steps_done} steps)"
        )
    lines.append(f"{g.speed}Generation Speed:    {speed}")
    window = (
        f" over text encoding + denoising + VAE decode ({duration(s.throughput_window_s)})"
        if s.throughput_window_s
        else ""
    )
    throughput = NA
    if s.frames_per_s is not None:
        throughput = f"{s.frames_per_s:.2f} frames/s ({number(s.mpx_per_s, '.2f', 'MPx/s')})"
    lines.append(f"{g.video}Video Throughput:    {throughput}" + window)
    peak = f"{s.peak_memory_gb:.2f} GiB" if s.peak_memory_gb is not None else NO_ALLOCATOR
    if s.peak_memory_pct is not None:
        peak += f" ({s.peak_memory_pct:.1f}% of VRAM)"
    lines.append(f"{g.memory}Peak Memory:         {peak}")
    if s.avg_sm_pct is not None:
        lines.append(
            f"{g.sm}{'Avg ' + activity_label(s.sm_source, title_case=True) + ':':<21}"
            f"{s.avg_sm_pct:.1f}% over the run (load {number(s.load_sm_s, '.2f', 'SM-s')})"
        )
    else:
        lines.append(f"{g.sm}{'Avg SM Activity:':<21}n/a ({s.sm_note})")
    lines += limits_lines(r, g.limits)
    return [*lines, ""]


def _error(r: Report, g: _Glyphs) -> list[str]:
    """The failed run's error, whole and on one line: the one place it is printed in full."""
    if not r.summary.error:
        return []
    return ["[Error]", "-" * WIDTH, one_line(r.summary.error), ""]


def _share(pct: float | None) -> str:
    return f"({pct:5.1f}%)" if pct is not None else f"({NA})"


def _latency(r: Report, g: _Glyphs) -> list[str]:
    lines = ["[Detailed Pipeline Latency]", "-" * WIDTH]
    shares = rounded_shares([st.share_pct for st in r.stages])
    for index, (st, share) in enumerate(zip(r.stages, shares, strict=True), start=1):
        label = f"{index}. {st.label}"
        if st.duration_s is None:
            lines.append(f"{label:<26}:       no span")
            continue
        sm = f" SM {st.sm_pct:5.1f}%" if st.sm_pct is not None else ""
        lines.append(f"{label:<26}: {duration(st.duration_s):>10} {_share(share)}{sm}")
        if st.key == stage_key(sc.SPAN_DENOISE):
            s = r.summary
            lines.append(f"   - First Step           : {duration(s.step_s_first):>10}")
            lines.append(f"   - Mean Step after first: {duration(s.step_s_stable):>10}")
        if st.transfer_s > 0:
            lines.append(f"   - Weight transfers     : {duration(st.transfer_s):>10}")
    present = [share for share in shares if share is not None]
    total = round(sum(present), 1) if present else None
    lines.append(f"{'   Total':<26}: {duration(r.summary.total_s):>10} {_share(total)}")
    return [*lines, ""]


def _memory(r: Report, g: _Glyphs) -> list[str]:
    m = r.memory
    lines = ["[Memory Telemetry]", "-" * WIDTH, f"Allocation Strategy: offload={m.offload or NA}"]
    names = {"transformer": "DiT", "text_encoder": "Text encoder", "vae": "VAE"}
    if r.experts:
        names.update({e.component: f"DiT {e.name}" for e in r.experts})
    for comp, gib in m.weights_gb.items():
        lines.append(f"- {names.get(comp, comp) + ' weights':<26}: {size(gib)}")
    if m.dit_activation_peak_gb is not None:
        lines.append(
            f"- {'DiT activation peak':<26}: {m.dit_activation_peak_gb:6.2f} GiB "
            f"(step {m.dit_activation_step} peak minus memory when its work began)"
        )
    for label, peak, start in (
        ("Text encoder peak", m.text_encoder_peak_gb, m.text_encoder_baseline_gb),
        ("VAE decode peak", m.vae_peak_gb, m.vae_baseline_gb),
    ):
        if peak is not None:
            growth = (
                f" ({peak - start:+.2f} GiB over {start:.2f} GiB when its work began)"
                if start is not None
                else ""
            )
            lines.append(f"- {label:<26}: {peak:6.2f} GiB{growth}")
    run_peak = NO_ALLOCATOR if m.run_peak_gb is None else f"{m.run_peak_gb:6.2f} GiB"
    lines.append(f"- {'Run peak (allocated)':<26}: {run_peak}")
    if m.reserved_peak_gb is not None:
        lines.append(f"- {'Run peak (reserved)':<26}: {m.reserved_peak_gb:6.2f} GiB")
    for change in m.untraced_changes:
        lines.append(f"- Untraced: {change}")
    return [*lines, ""]


def _recommendations(r: Report, g: _Glyphs) -> list[str]:
    lines = ["[Recommendations]", "-" * WIDTH]
    if not r.recommendations:
        lines.append("None: no rule found anything the measured figures support.")
    lines += [f"{g.tip} {rec.text}" for rec in r.recommendations]
    return [*lines, ""]


def size(gib: float) -> str:
    """GiB with two decimals; MiB for what would print as 0.0x GiB (tiny models)."""
    return f"{gib:6.2f} GiB" if gib >= 0.1 else f"{gib * 1024:6.2f} MiB"


def _cell(value: float | None, width: int, spec: str = ".2f") -> str:
    return f"{number(value, spec):>{width}}"


NAME_WIDTH = 26
"""The trace table's name column; wider where a name would touch the border (a two-expert
run's ``    Transfer transformer_2``), up to NAME_WIDTH_MAX."""
NAME_WIDTH_MAX = 40


def _trace(r: Report, g: _Glyphs) -> list[str]:
    longest = max((2 * t.depth + len(t.name) for t in r.trace), default=0)
    width = NAME_WIDTH if longest < NAME_WIDTH else min(longest + 1, NAME_WIDTH_MAX)
    header = (
        f"{'Stage Name':<{width}}| {'Time':>9} | {'SM %':>5} | {'Load':>7} | {'Mem Start':>9} | "
        f"{'Mem End':>9} | {'Peak Mem':>9} | {g.delta:>9} | Comment"
    )
    rule = "-" * max(len(header) + 20, WIDTH)
    lines = ["[Execution Trace Analysis]", rule, header, rule]

    def row(t: TraceRow) -> str:
        name = ("  " * t.depth + t.name)[:width]
        delta = number(t.mem_delta_gb, "+.2f")
        return (
            f"{name:<{width}}| {duration(t.duration_s):>9} | {_cell(t.sm_pct, 5, '.1f')} | "
            f"{_cell(t.load, 7)} | {_cell(t.mem_start_gb, 9)} | {_cell(t.mem_end_gb, 9)} | "
            f"{_cell(t.peak_mem_gb, 9)} | {delta:>9} | {t.comment}"
        ).rstrip()

    lines += [row(t) for t in r.trace]
    lines.append(rule)
    tolerances = [t.sm_tolerance_pct for t in r.trace if t.sm_tolerance_pct is not None]
    legend = (
        "Legend: SM % = mean SM activity over the row's window | Load = Time x SM % / 100 (SM-s)"
    )
    lines.append(legend + " | Mem in GiB (torch allocator)")
    if r.summary.avg_sm_pct is not None and tolerances:
        lines.append(f"SM %: {r.summary.sm_note}.")
        lines.append(
            f"Interpolation inside sample intervals at window edges allows at most "
            f"±{max(tolerances):.1f} pp on any row."
        )
    elif r.summary.avg_sm_pct is None:
        lines.append(f"SM % and Load are n/a: {r.summary.sm_note}.")
    return lines


def render_text(report: Report, ascii_only: bool = False) -> str:
    g = _Glyphs(ascii_only)
    lines = (
        _header(report, g)
        + _summary(report, g)
        + _error(report, g)
        + _latency(report, g)
        + limits_section(report, WIDTH)
        + experts_section(report, WIDTH)
        + text_section(report, WIDTH)
        + _memory(report, g)
        + _recommendations(report, g)
        + _trace(report, g)
    )
    if report.notes:
        lines += ["", "[Notes]"] + [f"- {note}" for note in report.notes]
    lines.append("=" * WIDTH)
    text = "\n".join(lines) + "\n"
    return to_ascii(text) if ascii_only else text
