"""The HTML report's tables: system and summary figures, ranks, experts, memory and the
execution trace. Figures print by the rules of ``formatting``, as in the text report."""

from __future__ import annotations

from collections.abc import Sequence

from wan_otel.report.formatting import (
    NA,
    activity_label,
    duration,
    gib_or_mib,
    number,
    one_line,
)
from wan_otel.report.model import Report
from wan_otel.report.render_experts import sentences as expert_sentences
from wan_otel.report.render_parallel import short_uuid, summary_lines
from wan_otel.report.svg_axis import esc


def table(
    headers: Sequence[str], rows: Sequence[Sequence[str]], cls: str, numeric: Sequence[int] = ()
) -> str:
    """A table; the columns in ``numeric`` right-aligned. Cells are escaped here."""
    num = set(numeric)

    def cells(tag: str, values: Sequence[str]) -> str:
        return "".join(
            f'<{tag} class="num">{esc(v)}</{tag}>' if i in num else f"<{tag}>{esc(v)}</{tag}>"
            for i, v in enumerate(values)
        )

    head = f"<thead><tr>{cells('th', headers)}</tr></thead>" if headers else ""
    body = "".join(f"<tr>{cells('td', row)}</tr>" for row in rows)
    return f'<table class="{cls}">{head}<tbody>{body}</tbody></table>'


def system_table(r: Report) -> str:
    sy, c = r.system, r.config
    rows = [
        ("Device", sy.gpu_name or sy.device),
        ("VRAM", number(sy.vram_gb, ".2f", "GiB") if sy.vram_gb is not None else None),
        ("GPU UUID", sy.gpu_uuid),
        (
            "Software",
            ", ".join(
                f"{k} {v}"
                for k, v in (
                    ("CUDA", sy.cuda_version),
                    ("PyTorch", sy.torch_version),
                    ("diffusers", sy.diffusers_version),
                    ("driver", sy.driver_version),
                )
                if v
            )
            or None,
        ),
        ("Task", c.task),
        ("Resolution", f"{c.width}x{c.height}" if c.width and c.height else None),
        ("Frames", None if c.num_frames is None else str(c.num_frames)),
        ("Steps", None if c.num_steps is None else str(c.num_steps)),
        ("Guidance", None if c.guidance_scale is None else f"{c.guidance_scale:g}"),
        ("Offload", c.offload),
        ("Precision", ", ".join(f"{k} {v}" for k, v in c.dtypes.items()) or None),
    ]
    return table((), [(k, v or NA) for k, v in rows], "kv system")


def summary_table(r: Report) -> str:
    s = r.summary
    step = NA
    if s.step_s_mean is not None:
        step = f"{duration(s.step_s_mean)} ({number(s.steps_per_s, '.2f', 'steps/s')}, "
        step += f"{s.steps_done} steps); first {duration(s.step_s_first)}, "
        step += f"after the first {duration(s.step_s_stable)}"
    throughput = NA
    if s.frames_per_s is not None:
        throughput = f"{s.frames_per_s:.2f} frames/s, {number(s.mpx_per_s, '.2f', 'MPx/s')}"
        throughput += f" over {duration(s.throughput_window_s)}"
    peak = number(s.peak_memory_gb, ".2f", "GiB")
    if s.peak_memory_pct is not None:
        peak += f" ({s.peak_memory_pct:.1f}% of VRAM)"
    activity = f"n/a ({s.sm_note})" if s.avg_sm_pct is None else f"{s.avg_sm_pct:.1f}%"
    if s.load_sm_s is not None:
        activity += f" (load {s.load_sm_s:.2f} SM-s)"
    rows = [
        ("Total latency", duration(s.total_s)),
        ("Step time (mean)", step),
        ("Throughput", throughput),
        ("Peak memory", peak),
        (f"Avg {activity_label(s.sm_source)}", activity),
    ]
    if s.world_size > 1:
        rows.append(("GPUs", str(s.world_size)))
    if s.status != "ok":
        rows.append(("Run ended", one_line(s.ended)))
    return table((), rows, "kv figures")


def ranks_table(r: Report) -> str:
    rows = [
        (
            str(line.rank),
            short_uuid(line.gpu_uuid),
            str(line.steps_done),
            duration(line.step_s_mean),
            duration(line.compute_s),
            duration(line.comm_s),
            duration(line.wait_s),
            number(line.comm_pct, ".1f", "%"),
            number(line.sm_pct, ".1f"),
            number(line.peak_memory_gb),
            "ERROR" if line.status == "error" else line.status,
        )
        for line in r.ranks
    ]
    headers = (
        *("Rank", "GPU", "Steps", "Step mean", "Compute", "Comm", "Wait", "Comm %"),
        *("SM %", "Peak GiB", "Status"),
    )
    out = table(headers, rows, "data ranks", numeric=(0, 2, 3, 4, 5, 6, 7, 8, 9))
    return out + "".join(f"<p>{esc(line)}</p>" for line in summary_lines(r))


def experts_table(r: Report) -> str:
    rows = []
    for e in r.experts:
        where = "" if not e.steps else f" ({e.first_step}-{e.last_step})"
        rows.append(
            (
                e.name,
                f"{e.steps}{where}",
                duration(e.duration_s),
                duration(e.step_s_mean),
                duration(e.step_s_stable),
                number(e.sm_pct, ".1f"),
                duration(e.transfer_s),
                gib_or_mib(e.weights_gb) if e.weights_gb is not None else NA,
                duration(e.init_s),
                number(e.peak_memory_gb),
            )
        )
    headers = (
        *("Expert", "Steps", "Time", "Step mean", "After 1st", "SM %", "Transfers"),
        *("Weights", "Init", "Peak GiB"),
    )
    out = table(headers, rows, "data experts", numeric=(2, 3, 4, 5, 6, 7, 8, 9))
    return out + "".join(f"<p>{esc(line)}</p>" for line in expert_sentences(r))


def memory_table(r: Report) -> str:
    m = r.memory
    names = {"transformer": "DiT", "text_encoder": "Text encoder", "vae": "VAE"}
    names.update({e.component: f"DiT {e.name}" for e in r.experts})
    rows = [
        (f"{names.get(comp, comp)} weights", gib_or_mib(gib)) for comp, gib in m.weights_gb.items()
    ]
    figures = (
        ("DiT activation peak", m.dit_activation_peak_gb),
        ("Text encoder peak", m.text_encoder_peak_gb),
        ("VAE decode peak", m.vae_peak_gb),
        ("Run peak (allocated)", m.run_peak_gb),
        ("Run peak (reserved)", m.reserved_peak_gb),
    )
    rows += [(label, number(value, ".2f", "GiB")) for label, value in figures]
    rows += [("Untraced", change) for change in m.untraced_changes]
    return f"<p>Offload: {esc(m.offload or NA)}</p>" + table((), rows, "kv memory")


def trace_table(r: Report) -> str:
    """The execution trace, a row per stage, step and transfer, indented by depth."""
    label = activity_label(r.summary.sm_source)
    headers = ("Name", "Time", f"{label} %", "Load", "Mem start", "Mem end", "Peak", "Δ")
    body = []
    for t in r.trace:
        cells = (
            duration(t.duration_s),
            number(t.sm_pct, ".1f"),
            number(t.load),
            number(t.mem_start_gb),
            number(t.mem_end_gb),
            number(t.peak_mem_gb),
            number(t.mem_delta_gb, "+.2f"),
        )
        numbers = "".join(f'<td class="num">{esc(c)}</td>' for c in cells)
        body.append(
            f'<tr class="d{min(t.depth, 3)}"><td>{esc(t.name)}</td>{numbers}'
            f"<td>{esc(t.comment)}</td></tr>"
        )
    head = "".join(f"<th>{esc(h)}</th>" for h in (*headers, "Comment"))
    return (
        f'<table class="data trace"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table>"
    )
