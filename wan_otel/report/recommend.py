"""Recommendations: rules over the measured figures, each quantified, silent without data.

Every rule states what the issue costs in this run and what changing it would save or need.
A rule whose inputs were not measured says nothing rather than guess.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from wan_otel import semconv as sc
from wan_otel.report.formatting import duration, rounded_shares
from wan_otel.report.model import MemoryFigures, Recommendation, RunConfig, StageLine, Summary
from wan_otel.report.spans import RunTree
from wan_otel.report.stages import OTHER_KEY, UNTRACED_MEMORY_GIB, largest_gap, stage_key

IDLE_STAGE_SM_PCT = 20.0
IDLE_STAGE_MIN_SHARE = 5.0
UNATTRIBUTED_MIN_SHARE = 5.0
INIT_MIN_SHARE = 10.0
COMPUTE_BOUND_SM_PCT = 90.0
WARMUP_RATIO = 1.2
MEMORY_HEADROOM_PCT = 90.0
NEGLIGIBLE_PCT = 0.05
"""A cost under this share of the run prints as 0.0 %: nothing worth a recommendation."""

Rule = Callable[
    [Summary, dict[str, StageLine], MemoryFigures, RunConfig, RunTree], "Recommendation | None"
]


def _offload(
    summary: Summary,
    stages: dict[str, StageLine],
    memory: MemoryFigures,
    config: RunConfig,
    tree: RunTree,
) -> Recommendation | None:
    if not memory.offload or memory.offload == "none" or summary.total_s <= 0:
        return None
    transfer_s = sum(line.transfer_s for line in stages.values())
    if 100 * transfer_s / summary.total_s < NEGLIGIBLE_PCT:
        return None  # offload cost this run nothing measurable: nothing to save
    text = (
        f"Offload={memory.offload}: weight transfers took {duration(transfer_s)} "
        f"({100 * transfer_s / summary.total_s:.1f}% of the run)."
    )
    if memory.weights_gb and memory.run_peak_gb is not None and summary.vram_gb:
        activation = max(
            (memory.dit_activation_peak_gb or 0.0),
            (memory.vae_peak_gb - memory.vae_baseline_gb)
            if memory.vae_peak_gb is not None and memory.vae_baseline_gb is not None
            else 0.0,
        )
        resident = sum(memory.weights_gb.values()) + activation
        known = ", ".join(sorted(memory.weights_gb))
        missing = [config for config in ("text_encoder", "vae") if config not in memory.weights_gb]
        # A decode whose peak is the weights moved away at its start: its working set unknown.
        hidden = memory.vae_peak_gb is not None and memory.vae_baseline_gb is None
        bound = "at least " if missing or hidden else ""
        room = summary.vram_gb - resident
        if room < 0:
            verdict = f"does not fit (short by {-room:.2f} GiB): keep offload"
        elif missing:
            verdict = (
                f"fits only if the {' and '.join(missing)} weights (not recorded) take "
                f"under {room:.2f} GiB"
            )
        elif hidden:
            verdict = (
                "fits only if the VAE decode's working set (not measured: its peak is that of "
                f"the weights moved away at its start) stays under {activation + room:.2f} GiB"
            )
        else:
            verdict = f"fits with {room:.2f} GiB to spare, saving the transfer time"
        text += (
            f" Without offload every component stays resident: {bound}{resident:.2f} GiB "
            f"(weights of {known} + {activation:.2f} GiB peak activations) of "
            f"{summary.vram_gb:.2f} GiB VRAM: {verdict}."
        )
    return Recommendation("offload", text)


def _idle_stages(
    summary: Summary,
    stages: dict[str, StageLine],
    memory: MemoryFigures,
    config: RunConfig,
    tree: RunTree,
) -> Recommendation | None:
    idle = [
        line
        for line in stages.values()
        if line.sm_pct is not None
        and line.share_pct is not None
        and line.duration_s
        and line.sm_pct < IDLE_STAGE_SM_PCT
        and line.share_pct >= IDLE_STAGE_MIN_SHARE
        and line.key != stage_key(sc.SPAN_INITIALIZE)
    ]
    if not idle:
        return None
    parts = [
        f"{line.label} {duration(line.duration_s)} ({line.share_pct:.1f}%) at SM {line.sm_pct:.1f}%"
        for line in idle
        if line.duration_s is not None
    ]
    hint = ""
    if (
        any(line.key == stage_key(sc.SPAN_TEXT_ENCODE) for line in idle)
        and memory.text_encoder_peak_gb is not None
        and memory.text_encoder_baseline_gb is not None
        and memory.text_encoder_peak_gb - memory.text_encoder_baseline_gb < 0.05
    ):
        hint = (
            " Text encoding allocated no GPU memory: the encoder ran on the CPU; on the GPU it "
            "needs its weights in VRAM"
            + (
                f" ({memory.weights_gb['text_encoder']:.2f} GiB)"
                if "text_encoder" in memory.weights_gb
                else ""
            )
            + "."
        )
    return Recommendation(
        "idle_gpu",
        "The GPU idles through "
        + "; ".join(parts)
        + ": that time is CPU- or transfer-bound."
        + hint,
    )


def _unattributed(
    summary: Summary,
    stages: dict[str, StageLine],
    memory: MemoryFigures,
    config: RunConfig,
    tree: RunTree,
) -> Recommendation | None:
    other = stages.get(OTHER_KEY)
    if other is None or other.share_pct is None or other.share_pct < UNATTRIBUTED_MIN_SHARE:
        return None
    gap = largest_gap(tree)
    where = ""
    if gap is not None:
        where = (
            f"; the longest gap is {duration(gap.seconds)} between {gap.after_label} and "
            f"{gap.before_label}"
        )
        change = gap.memory_change_gib()
        if change is not None and abs(change) >= UNTRACED_MEMORY_GIB:
            where += f", where allocated memory changed by {change:+.2f} GiB outside any span"
    return Recommendation(
        "unattributed",
        f"{duration(other.duration_s)} ({other.share_pct:.1f}%) of the run lies outside every "
        f"stage span{where}: instrument that code to see where the time goes.",
    )


def _initialization(
    summary: Summary,
    stages: dict[str, StageLine],
    memory: MemoryFigures,
    config: RunConfig,
    tree: RunTree,
) -> Recommendation | None:
    init = stages.get(stage_key(sc.SPAN_INITIALIZE))
    if init is None or init.share_pct is None or init.share_pct < INIT_MIN_SHARE:
        return None
    return Recommendation(
        "initialization",
        f"Initialization took {duration(init.duration_s)} ({init.share_pct:.1f}% of the run). "
        f"A server that loads the model once (wan-otel serve) saves {duration(init.duration_s)} "
        "on every request after the first.",
    )


def _compute_bound(
    summary: Summary,
    stages: dict[str, StageLine],
    memory: MemoryFigures,
    config: RunConfig,
    tree: RunTree,
) -> Recommendation | None:
    den = stages.get(stage_key(sc.SPAN_DENOISE))
    if den is None or den.sm_pct is None or den.sm_pct < COMPUTE_BOUND_SM_PCT:
        return None
    if den.duration_s is None or den.share_pct is None or summary.step_s_mean is None:
        return None
    saving = 0.1 * den.duration_s
    return Recommendation(
        "compute_bound",
        f"Denoising is {den.share_pct:.1f}% of the run at SM {den.sm_pct:.1f}%: compute-bound at "
        f"{duration(summary.step_s_mean)}/step. Only faster kernels shorten it (FlashAttention-3 / "
        f"SageAttention, FP8 weights, torch.compile): every 10% off the step saves "
        f"{duration(saving)} per video.",
    )


def _warmup(
    summary: Summary,
    stages: dict[str, StageLine],
    memory: MemoryFigures,
    config: RunConfig,
    tree: RunTree,
) -> Recommendation | None:
    if summary.step_s_first is None or not summary.step_s_stable or summary.steps_done < 2:
        return None
    if summary.step_s_first < WARMUP_RATIO * summary.step_s_stable:
        return None
    extra = summary.step_s_first - summary.step_s_stable
    if summary.total_s <= 0 or 100 * extra / summary.total_s < NEGLIGIBLE_PCT:
        return None
    return Recommendation(
        "warmup",
        f"The first step took {duration(summary.step_s_first)} against "
        f"{duration(summary.step_s_stable)} for the rest: {duration(extra)} of warm-up "
        "(kernel selection, compilation, first "
        "transfers) a server pays once if it warms up at start.",
    )


def _memory_headroom(
    summary: Summary,
    stages: dict[str, StageLine],
    memory: MemoryFigures,
    config: RunConfig,
    tree: RunTree,
) -> Recommendation | None:
    if summary.peak_memory_pct is None or summary.peak_memory_pct < MEMORY_HEADROOM_PCT:
        return None
    where = (
        "VAE decode"
        if memory.vae_peak_gb is not None and memory.vae_peak_gb == memory.run_peak_gb
        else "the run"
    )
    return Recommendation(
        "memory_headroom",
        f"Peak memory {summary.peak_memory_gb:.2f} GiB is {summary.peak_memory_pct:.1f}% of VRAM, "
        f"reached in {where}: a larger resolution or frame count will not fit"
        + (
            "; VAE tiling (vae.enable_tiling()) bounds the decode peak."
            if where == "VAE decode"
            else "."
        ),
    )


RULES: tuple[Rule, ...] = (
    _offload,
    _idle_stages,
    _unattributed,
    _initialization,
    _compute_bound,
    _warmup,
    _memory_headroom,
)


def recommend(
    summary: Summary,
    stages: list[StageLine],
    memory: MemoryFigures,
    config: RunConfig,
    tree: RunTree,
) -> list[Recommendation]:
    # The rules quote stage shares as the breakdown prints them (largest-remainder rounded),
    # so a sentence never says 6.1 % where the table says 6.2 %.
    printed = rounded_shares([line.share_pct for line in stages])
    by_key = {
        line.key: dataclasses.replace(line, share_pct=share)
        for line, share in zip(stages, printed, strict=True)
    }
    found = (rule(summary, by_key, memory, config, tree) for rule in RULES)
    return [r for r in found if r is not None]
