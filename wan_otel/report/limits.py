"""The Report's figures of how far a run is from the limits: model FLOPs and MFU, energy, the
cost of each stage and step, and the known baseline it is compared with.

Units: FLOPs (multiplies and adds, counted by ``report.flops``), TFLOP/s, percent (MFU),
joules, watts, seconds. ``None`` is "not measured" (n/a), with a ``note`` saying why where
the whole figure is missing.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ComputeFigures:
    """The model's FLOPs for the run's request, and the GPU's share of its peak they used."""

    model: str | None
    """The configuration the FLOPs come from (``report.flops.MODELS``); None when unknown."""
    tokens: int | None
    """Video tokens a forward sees (latent frames x latent height x width / patch)."""
    token_grid: list[int] | None
    """Latent frames, rows and columns of tokens."""
    text_tokens: int | None
    forward_flops: float | None
    forward_parts: dict[str, float]
    """``self_attention``, ``cross_attention``, ``mlp``, ``embeddings``: FLOPs of each part."""
    forwards: int
    """Transformer forwards over the steps done (2 a step with classifier-free guidance)."""
    step_flops: float | None
    """Mean FLOPs of a step (its forwards; every rank's share together)."""
    denoising_flops: float | None
    vae_decode_flops: float | None
    gpu_family: str | None
    peak_tflops: float | None
    """Dense peak of one GPU in the transformer's precision (BF16/FP16)."""
    peak_source: str | None
    vae_peak_tflops: float | None
    vae_precision: str | None
    """``TF32`` (a float32 VAE's convolutions) or ``BF16``."""
    world_size: int
    mfu_pct: float | None
    """The denoising stage's FLOPs over its time x peak x GPUs."""
    step_mfu_pct: float | None
    """The same over the steps after the first (warm-up left out)."""
    step_s_at_peak: float | None
    """What a mean step would take at 100 % MFU."""
    vae_mfu_pct: float | None
    note: str | None
    """Why FLOPs or MFU are n/a, or what was assumed."""


@dataclass(frozen=True)
class EnergyFigures:
    """GPU energy of the generation from the NVML energy counter, every GPU of the run summed."""

    total_j: float | None
    """Over the root span (each rank's over its own rank span)."""
    tolerance_j: float | None
    mean_power_w: float | None
    j_per_frame: float | None
    j_per_video_s: float | None
    """Joules per second of output video (frames / fps)."""
    video_s: float | None
    step_j_stable: float | None
    """Mean energy of a step after the first."""
    gpus: list[str]
    """UUIDs of the GPUs whose counters were summed."""
    edge_s: float | None
    """How far a window's edge can be off: the counter's update period or the sample
    interval, whichever is longer; the tolerance is twice this at the window's power."""
    note: str | None


@dataclass(frozen=True)
class StageCost:
    key: str
    label: str
    flops: float | None
    mfu_pct: float | None
    energy_j: float | None
    energy_tolerance_j: float | None
    power_w: float | None
    energy_note: str | None
    """Why the stage's energy is n/a (too short, not covered by samples)."""


@dataclass(frozen=True)
class StepCost:
    step: int
    duration_s: float
    forwards: int
    flops: float | None
    mfu_pct: float | None
    energy_j: float | None
    energy_tolerance_j: float | None
    power_w: float | None


@dataclass(frozen=True)
class Costs:
    """Per stage (in run order, then the whole run as ``total``) and per step (rank 0's)."""

    stages: list[StageCost] = field(default_factory=list)
    steps: list[StepCost] = field(default_factory=list)


@dataclass(frozen=True)
class KnownBaseline:
    """A known figure for the run's GPU and configuration, and how far the run is from it."""

    name: str
    source: str
    figure: str
    """``step_s`` (mean step after the first) or ``generation_s`` (total minus initialization)."""
    expected: float
    measured: float
    delta_pct: float
    """(measured - expected) / expected, in percent: positive is slower."""
    matched_on: str
    """The configuration both share, in words."""
