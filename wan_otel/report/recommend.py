"""Recommendations: rules over the measured figures, each quantified, silent without data.

Every rule states what the issue costs in this run and what changing it would save or need.
A rule whose inputs were not measured says nothing rather than guess.
"""

from __future__ import annotations

from collections.abc import Callable

from wan_otel.report.model import MemoryFigures, Recommendation, RunConfig, StageLine, Summary
from wan_otel.report.spans import RunTree
from wan_otel.report.stages import largest_gap

IDLE_STAGE_SM_PCT = 20.0
IDLE_STAGE_MIN_SHARE = 5.0
UNATTRIBUTED_MIN_SHARE = 5.0
INIT_MIN_SHARE = 10.0
COMPUTE_BOUND_SM_PCT = 90.0
WARMUP_RATIO = 1.2
MEMORY_HEADROOM_PCT = 90.0

Rule = Callable[
    [Summary, dict[str, StageLine], MemoryFigures, RunConfig, RunTree], "Recommendation | None"
]


def _offload(
    s: Summary, st: dict[str, StageLine], m: MemoryFigures, c: RunConfig, t: RunTree
) -> Recommendation | None:
    if not m.offload or m.offload == "none":
        return None
    transfer_s = sum(line.transfer_s for line in st.values())
    text = (
        f"Offload={m.offload}: weight transfers took {transfer_s:.2f} s "
        f"({100 * transfer_s / s.total_s:.1f}% of the run)."
    )
    if m.weights_gb and m.run_peak_gb is not None and s.vram_gb:
        activation = max(
            (m.dit_activation_peak_gb or 0.0),
            (m.vae_peak_gb - m.vae_baseline_gb)
            if m.vae_peak_gb is not None and m.vae_baseline_gb is not None
            else 0.0,
        )
        resident = sum(m.weights_gb.values()) + activation
        known = ", ".join(sorted(m.weights_gb))
        missing = [c for c in ("text_encoder", "vae") if c not in m.weights_gb]
        bound = "at least " if missing else ""
        room = s.vram_gb - resident
        if room < 0:
            verdict = f"does not fit (short by {-room:.2f} GiB): keep offload"
        elif missing:
            verdict = (
                f"fits only if the {' and '.join(missing)} weights (not recorded) take "
                f"under {room:.2f} GiB"
            )
        else:
            verdict = f"fits with {room:.2f} GiB to spare, saving the transfer time"
        text += (
            f" Without offload every component stays resident: {bound}{resident:.2f} GiB "
            f"(weights of {known} + {activation:.2f} GiB peak activations) of {s.vram_gb:.2f} GiB "
            f"VRAM: {verdict}."
        )
    return Recommendation("offload", text)


def _idle_stages(
    s: Summary, st: dict[str, StageLine], m: MemoryFigures, c: RunConfig, t: RunTree
) -> Recommendation | None:
    idle = [
        line
        for line in st.values()
        if line.sm_pct is not None
        and line.share_pct is not None
        and line.duration_s
        and line.sm_pct < IDLE_STAGE_SM_PCT
        and line.share_pct >= IDLE_STAGE_MIN_SHARE
        and line.key != "initialization"
    ]
    if not idle:
        return None
    parts = [
        f"{line.label} {line.duration_s:.2f} s ({line.share_pct:.1f}%) at SM {line.sm_pct:.1f}%"
        for line in idle
        if line.duration_s is not None
    ]
    hint = ""
    if (
        any(line.key == "text_encoding" for line in idle)
        and m.text_encoder_peak_gb is not None
        and m.text_encoder_baseline_gb is not None
        and m.text_encoder_peak_gb - m.text_encoder_baseline_gb < 0.05
    ):
        hint = (
            " Text encoding allocated no GPU memory: the encoder ran on the CPU; on the GPU it "
            "needs its weights in VRAM"
            + (
                f" ({m.weights_gb['text_encoder']:.2f} GiB)"
                if "text_encoder" in m.weights_gb
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
    s: Summary, st: dict[str, StageLine], m: MemoryFigures, c: RunConfig, t: RunTree
) -> Recommendation | None:
    other = st.get("other")
    if other is None or other.share_pct is None or other.share_pct < UNATTRIBUTED_MIN_SHARE:
        return None
    gap = largest_gap(t)
    where = f"; the longest gap is {gap[0]:.2f} s between {gap[1]} and {gap[2]}" if gap else ""
    memory = f" ({'; '.join(m.untraced_changes)})" if m.untraced_changes else ""
    return Recommendation(
        "unattributed",
        f"{other.duration_s:.2f} s ({other.share_pct:.1f}%) of the run lies outside every stage "
        f"span{where}{memory}: instrument that code to see where the time goes.",
    )


def _initialization(
    s: Summary, st: dict[str, StageLine], m: MemoryFigures, c: RunConfig, t: RunTree
) -> Recommendation | None:
    init = st.get("initialization")
    if init is None or init.share_pct is None or init.share_pct < INIT_MIN_SHARE:
        return None
    return Recommendation(
        "initialization",
        f"Initialization took {init.duration_s:.2f} s ({init.share_pct:.1f}% of the run). A "
        f"server that loads the model once (wan-otel serve) saves {init.duration_s:.2f} s on "
        "every request after the first.",
    )


def _compute_bound(
    s: Summary, st: dict[str, StageLine], m: MemoryFigures, c: RunConfig, t: RunTree
) -> Recommendation | None:
    den = st.get("denoising")
    if den is None or den.sm_pct is None or den.sm_pct < COMPUTE_BOUND_SM_PCT:
        return None
    if den.duration_s is None or den.share_pct is None or s.step_s_mean is None:
        return None
    saving = 0.1 * den.duration_s
    return Recommendation(
        "compute_bound",
        f"Denoising is {den.share_pct:.1f}% of the run at SM {den.sm_pct:.1f}%: compute-bound at "
        f"{s.step_s_mean:.2f} s/step. Only faster kernels shorten it (FlashAttention-3 / "
        f"SageAttention, FP8 weights, torch.compile): every 10% off the step saves "
        f"{saving:.2f} s per video.",
    )


def _warmup(
    s: Summary, st: dict[str, StageLine], m: MemoryFigures, c: RunConfig, t: RunTree
) -> Recommendation | None:
    if s.step_s_first is None or not s.step_s_stable or s.steps_done < 2:
        return None
    if s.step_s_first < WARMUP_RATIO * s.step_s_stable:
        return None
    extra = s.step_s_first - s.step_s_stable
    return Recommendation(
        "warmup",
        f"The first step took {s.step_s_first:.2f} s against {s.step_s_stable:.2f} s for the "
        f"rest: {extra:.2f} s of warm-up (kernel selection, compilation, first transfers) a "
        "server pays once if it warms up at start.",
    )


def _memory_headroom(
    s: Summary, st: dict[str, StageLine], m: MemoryFigures, c: RunConfig, t: RunTree
) -> Recommendation | None:
    if s.peak_memory_pct is None or s.peak_memory_pct < MEMORY_HEADROOM_PCT:
        return None
    where = (
        "VAE decode" if m.vae_peak_gb is not None and m.vae_peak_gb == m.run_peak_gb else "the run"
    )
    return Recommendation(
        "memory_headroom",
        f"Peak memory {s.peak_memory_gb:.2f} GiB is {s.peak_memory_pct:.1f}% of VRAM, reached in "
        f"{where}: a larger resolution or frame count will not fit"
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
    by_key = {line.key: line for line in stages}
    found = (rule(summary, by_key, memory, config, tree) for rule in RULES)
    return [r for r in found if r is not None]
