"""Render a Report as Markdown (for issues, pull requests and docs)."""

from __future__ import annotations

from wan_otel.report.build import iso_time
from wan_otel.report.model import Report
from wan_otel.report.render_text import num


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}%"


def render_markdown(r: Report) -> str:
    s, c, sy, m = r.summary, r.config, r.system, r.memory
    out = [
        f"# {r.title}",
        "",
        f"Run `{r.run_id}`, started {iso_time(s.started_ns)}, status **{s.status}**",
        "",
    ]
    if s.error:
        out += [f"> Failed: {s.error}", ""]
    out += ["## System context", "", "| | |", "|---|---|"]
    out += [
        f"| {k} | {v if v is not None else 'n/a'} |"
        for k, v in (
            ("Device", sy.gpu_name or sy.device),
            ("VRAM (GiB)", num(sy.vram_gb)),
            ("GPU UUID", sy.gpu_uuid),
            ("CUDA", sy.cuda_version),
            ("PyTorch", sy.torch_version),
            ("diffusers", sy.diffusers_version),
            ("Driver", sy.driver_version),
            ("Task", c.task),
            ("Resolution", f"{c.width}x{c.height}"),
            ("Frames", c.num_frames),
            ("Steps", c.num_steps),
            ("Guidance", c.guidance_scale),
            ("Offload", c.offload),
            ("Precision", ", ".join(f"{k} {v}" for k, v in c.dtypes.items()) or None),
        )
    ]
    out += [
        "",
        "## Executive summary",
        "",
        "| figure | value |",
        "|---|---|",
        f"| Total latency | {s.total_s:.2f} s |",
        f"| Step time (mean) | {num(s.step_s_mean)} s ({num(s.steps_per_s)} steps/s) |",
        f"| Throughput | {num(s.frames_per_s)} frames/s, {num(s.mpx_per_s)} MPx/s |",
        f"| Peak memory | {num(s.peak_memory_gb)} GiB ({num(s.peak_memory_pct, '.1f')}% of VRAM) |",
        f"| Avg SM activity | {num(s.avg_sm_pct, '.1f')}% (load {num(s.load_sm_s)} SM-s) |",
        "",
    ]
    if s.avg_sm_pct is None:
        out += [f"SM figures n/a: {s.sm_note}", ""]
    out += [
        "## Pipeline latency",
        "",
        "| stage | seconds | share | SM % | transfers (s) |",
        "|---|---:|---:|---:|---:|",
    ]
    out += [
        f"| {st.label} | {num(st.duration_s)} | {_pct(st.share_pct)} | "
        f"{num(st.sm_pct, '.1f')} | {st.transfer_s:.2f} |"
        for st in r.stages
    ]
    out += [
        "",
        f"First step {num(s.step_s_first)} s; mean step after the first {num(s.step_s_stable)} s.",
        "",
        "## Memory",
        "",
        "| figure | GiB |",
        "|---|---:|",
    ]
    out += [f"| {comp} weights | {gib:.2f} |" for comp, gib in m.weights_gb.items()]
    out += [
        f"| {label} | {num(value)} |"
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
        "| name | s | SM % | load | mem start | mem end | peak | Δ | comment |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    out += [
        f"| {'&nbsp;&nbsp;' * t.depth}{t.name} | {t.duration_s:.2f} | {num(t.sm_pct, '.1f')} | "
        f"{num(t.load)} | {num(t.mem_start_gb)} | {num(t.mem_end_gb)} | {num(t.peak_mem_gb)} | "
        f"{num(t.mem_delta_gb, '+.2f')} | {t.comment} |"
        for t in r.trace
    ]
    if r.notes:
        out += ["", "## Notes", ""] + [f"- {n}" for n in r.notes]
    return "\n".join(out) + "\n"
