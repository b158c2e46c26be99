"""Render a Report as Markdown (for issues, pull requests and docs); ``ascii_only`` for plain
ASCII, as the text format. Figures print by the rules of ``formatting``."""

from __future__ import annotations

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
from wan_otel.report.model import Report
from wan_otel.report.render_experts import markdown_section as experts_section
from wan_otel.report.render_limits import markdown_section as limits_section
from wan_otel.report.render_limits import markdown_summary_rows
from wan_otel.report.render_parallel import markdown_section


def _cell(text: str) -> str:
    """Text safe inside a table cell: one line, pipes escaped."""
    return one_line(text).replace("|", "\\|")


def _cell_row(row: str) -> str:
    """A two-cell row whose value may hold a pipe."""
    label, value = row.strip("| ").split(" | ", 1)
    return f"| {label} | {_cell(value)} |"


def render_markdown(r: Report, ascii_only: bool = False) -> str:
    s, c, sy, m = r.summary, r.config, r.system, r.memory
    out = [
        f"# {r.title}",
        "",
        f"Run `{r.run_id}`, started {iso_time(s.started_ns)}, status **{s.status}**",
        "",
    ]
    if s.status != "ok":
        out += [f"Run ended: {one_line(s.ended)}", ""]
    out += ["## System context", "", "| | |", "|---|---|"]
    out += [
        f"| {k} | {v if v is not None else NA} |"
        for k, v in (
            ("Device", sy.gpu_name or sy.device),
            ("VRAM (GiB)", number(sy.vram_gb)),
            ("GPU UUID", sy.gpu_uuid),
            ("CUDA", sy.cuda_version),
            ("PyTorch", sy.torch_version),
            ("diffusers", sy.diffusers_version),
            ("Driver", sy.driver_version),
            ("Task", c.task),
            ("Resolution", f"{c.width}x{c.height}" if c.width and c.height else None),
            ("Frames", c.num_frames),
            ("Steps", c.num_steps),
            ("Guidance", c.guidance_scale),
            ("Offload", c.offload),
            ("Precision", ", ".join(f"{k} {v}" for k, v in c.dtypes.items()) or None),
        )
    ]
    step = NA
    if s.step_s_mean is not None:
        step = f"{duration(s.step_s_mean)} ({number(s.steps_per_s, '.2f', 'steps/s')})"
    peak = number(s.peak_memory_gb, ".2f", "GiB")
    if s.peak_memory_pct is not None:
        peak += f" ({s.peak_memory_pct:.1f}% of VRAM)"
    activity = number(s.avg_sm_pct, ".1f", "%")
    if s.load_sm_s is not None:
        activity += f" (load {s.load_sm_s:.2f} SM-s)"
    throughput = NA
    if s.frames_per_s is not None:
        throughput = f"{s.frames_per_s:.2f} frames/s, {number(s.mpx_per_s, '.2f', 'MPx/s')}"
    out += [
        "",
        "## Executive summary",
        "",
        "| figure | value |",
        "|---|---|",
        f"| Total latency | {duration(s.total_s)} |",
        f"| Step time (mean) | {step} |",
        f"| Throughput | {throughput} |",
        f"| Peak memory | {peak} |",
        f"| Avg {activity_label(s.sm_source)} | {activity} |",
        *[_cell_row(row) for row in markdown_summary_rows(r)],
        "",
    ]
    if s.avg_sm_pct is None:
        out += [f"SM figures n/a: {s.sm_note}", ""]
    if s.error:
        out += ["## Error", "", "```text", one_line(s.error), "```", ""]
    shares = rounded_shares([st.share_pct for st in r.stages])
    out += [
        "## Pipeline latency",
        "",
        "| stage | time | share | SM % | transfers |",
        "|---|---:|---:|---:|---:|",
    ]
    out += [
        f"| {st.label} | {duration(st.duration_s)} | {number(share, '.1f', '%')} | "
        f"{number(st.sm_pct, '.1f')} | "
        f"{duration(st.transfer_s) if st.duration_s is not None and st.key != 'other' else NA} |"
        for st, share in zip(r.stages, shares, strict=True)
    ]
    out += [
        "",
        f"First step {duration(s.step_s_first)}; "
        f"mean step after the first {duration(s.step_s_stable)}.",
        "",
        *limits_section(r),
        *experts_section(r),
        *markdown_section(r),
        "## Memory",
        "",
        "| figure | GiB |",
        "|---|---:|",
    ]
    out += [f"| {comp} weights | {gib:.2f} |" for comp, gib in m.weights_gb.items()]
    out += [
        f"| {label} | {number(value)} |"
        for label, value in (
            ("DiT activation peak", m.dit_activation_peak_gb),
            ("Text encoder peak", m.text_encoder_peak_gb),
            ("VAE decode peak", m.vae_peak_gb),
            ("Run peak (allocated)", m.run_peak_gb),
            ("Run peak (reserved)", m.reserved_peak_gb),
        )
    ]
    out += [f"\n- Untraced: {change}" for change in m.untraced_changes]
    out += ["", "## Recommendations", ""]
    out += [f"- {rec.text}" for rec in r.recommendations] or ["None."]
    out += [
        "",
        "## Execution trace",
        "",
        "| name | time | SM % | load | mem start | mem end | peak | Δ | comment |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    out += [
        f"| {'&nbsp;&nbsp;' * t.depth}{t.name} | {duration(t.duration_s)} | "
        f"{number(t.sm_pct, '.1f')} | {number(t.load)} | {number(t.mem_start_gb)} | "
        f"{number(t.mem_end_gb)} | {number(t.peak_mem_gb)} | {number(t.mem_delta_gb, '+.2f')} | "
        f"{_cell(t.comment)} |"
        for t in r.trace
    ]
    if r.notes:
        out += ["", "## Notes", ""] + [f"- {n}" for n in r.notes]
    text = "\n".join(out) + "\n"
    return to_ascii(text) if ascii_only else text
