"""Two runs side by side: run B against run A, figure by figure, and which figures got worse by
more than a tolerance (a pure function of two Reports; ``compare`` is the command).

Gated figures, each with the direction that is better: the total latency and every stage's
duration, the step statistics (mean, p50, p95, first, mean after the first), the memory peaks,
the GPU energy (of the generation, of denoising, of a step after the first) and the MFU. A
figure is a regression when B is worse than A by more than ``tolerance_pct`` of A *and* by
more than the figure's noise floor: ``NOISE_FLOOR`` for its unit, and for energy the two
windows' measurement tolerances added (a difference inside them is not measured). SM activity
is shown but not gated: it is not a cost (faster kernels can be more or less busy). A run that
completed (A) against one that did not (B) is a regression too.

Runs of different configurations (model, size, frames, steps, guidance, GPU, offload,
parallelism, transformer precision) are not comparable: ``differences`` names them and the
command refuses them unless forced.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field

from wan_otel.report.limits import StageCost
from wan_otel.report.model import Report

LOWER, HIGHER = "lower", "higher"
NOISE_FLOOR = {"s": 0.005, "GiB": 0.01, "J": 1.0, "%": 0.1}
"""Differences at or below these are never regressions (timer, allocator and rounding noise)."""


@dataclass(frozen=True)
class Row:
    key: str
    label: str
    unit: str
    """``s``, ``GiB``, ``J`` or ``%``."""
    a: float | None
    b: float | None
    better: str | None
    """``lower`` or ``higher``; None for a figure that is shown, not gated."""
    change_pct: float | None
    """(b - a) / a in percent; None when either is missing or a is 0."""
    regression: bool
    improved: bool
    """Better by more than the tolerance and the noise floor."""


@dataclass(frozen=True)
class Comparison:
    run_a: str
    run_b: str
    status_a: str
    status_b: str
    tolerance_pct: float
    config_a: dict[str, str]
    config_b: dict[str, str]
    differences: list[str]
    """``steps 10 -> 50``: the configuration keys that differ."""
    forced: bool
    rows: list[Row] = field(default_factory=list)

    @property
    def regressions(self) -> list[Row]:
        return [r for r in self.rows if r.regression]

    @property
    def status_regressed(self) -> bool:
        return self.status_a == "ok" and self.status_b != "ok"


def configuration(r: Report) -> dict[str, str]:
    """What must match between two compared runs, in words ("n/a" where not recorded)."""
    c, p = r.config, r.parallel
    split = f"Ulysses {p.ulysses_degree} x ring {p.ring_degree}" if p is not None else "none"
    values = {
        "model": c.model,
        "size": f"{c.width}x{c.height}" if c.width and c.height else None,
        "frames": c.num_frames,
        "steps": c.num_steps,
        "guidance": f"{c.guidance_scale:g}" if c.guidance_scale is not None else None,
        "GPU": r.system.gpu_name or r.system.device,
        "offload": c.offload,
        "GPUs": r.summary.world_size,
        "parallelism": split,
        "transformer dtype": c.dtypes.get("transformer"),
    }
    return {k: "n/a" if v is None else str(v) for k, v in values.items()}


def _percentile(values: list[float], q: float) -> float | None:
    """The q-th percentile by linear interpolation between closest ranks."""
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _row(key: str, label: str, unit: str, a: float | None, b: float | None, better: str | None,
         tolerance_pct: float, noise: float = 0.0) -> Row:  # fmt: skip
    change = 100.0 * (b - a) / a if a is not None and b is not None and a != 0 else None
    worse = better_by = False
    if better is not None and a is not None and b is not None and change is not None:
        floor = max(NOISE_FLOOR.get(unit, 0.0), noise)
        delta = b - a if better == LOWER else a - b
        worse = delta > floor and abs(change) > tolerance_pct
        better_by = -delta > floor and abs(change) > tolerance_pct
    return Row(key, label, unit, a, b, better, change, worse, better_by)


def _stage(r: Report, key: str) -> StageCost | None:
    return next((s for s in r.costs.stages if s.key == key), None)


def _denoising_sm(r: Report) -> float | None:
    return next((s.sm_pct for s in r.stages if s.key == "denoising"), None)


def _noise(a: StageCost | None, b: StageCost | None) -> float:
    """The two windows' energy tolerances added: a difference inside them is not measured."""
    return sum(s.energy_tolerance_j or 0.0 for s in (a, b) if s is not None)


def compare(a: Report, b: Report, tolerance_pct: float, forced: bool = False) -> Comparison:
    """B against A. The caller refuses differing configurations unless ``forced``."""
    config_a, config_b = configuration(a), configuration(b)
    differences = [
        f"{key} {config_a[key]} -> {config_b[key]}"
        for key in config_a
        if config_a[key] != config_b[key]
    ]
    rows: list[Row] = []

    def add(key: str, label: str, unit: str, get: Callable[[Report], float | None],
            better: str | None, noise: float = 0.0) -> None:  # fmt: skip
        rows.append(_row(key, label, unit, get(a), get(b), better, tolerance_pct, noise))

    add("total_s", "Total latency", "s", lambda r: r.summary.total_s, LOWER)
    keys = [s.key for s in a.stages] + [s.key for s in b.stages if s.key not in
                                        {x.key for x in a.stages}]  # fmt: skip
    labels = {s.key: s.label for s in [*b.stages, *a.stages]}
    for key in keys:
        add(f"stage.{key}", labels[key], "s",
            lambda r, k=key: next((s.duration_s for s in r.stages if s.key == k), None),  # type: ignore[misc]
            LOWER if key != "other" else None)  # fmt: skip

    def steps(r: Report) -> list[float]:
        return [s.duration_s for s in r.costs.steps]

    add("step.mean", "Step mean", "s", lambda r: r.summary.step_s_mean, LOWER)
    add("step.p50", "Step p50", "s", lambda r: _percentile(steps(r), 50), LOWER)
    add("step.p95", "Step p95", "s", lambda r: _percentile(steps(r), 95), LOWER)
    add("step.first", "First step", "s", lambda r: r.summary.step_s_first, LOWER)
    add("step.stable", "Mean step after first", "s", lambda r: r.summary.step_s_stable, LOWER)
    add("sm.run", "SM % (run)", "%", lambda r: r.summary.avg_sm_pct, None)
    add("sm.denoising", "SM % (denoising)", "%", _denoising_sm, None)
    add("memory.run_peak", "Peak memory (allocated)", "GiB", lambda r: r.memory.run_peak_gb, LOWER)
    add("memory.reserved_peak", "Peak memory (reserved)", "GiB",
        lambda r: r.memory.reserved_peak_gb, LOWER)  # fmt: skip
    add("memory.dit_activation", "DiT activation peak", "GiB",
        lambda r: r.memory.dit_activation_peak_gb, LOWER)  # fmt: skip
    add("memory.vae_peak", "VAE decode peak", "GiB", lambda r: r.memory.vae_peak_gb, LOWER)
    for key, label in (("total", "Energy per video"), ("denoising", "Energy of denoising")):
        add(f"energy.{key}", label, "J",
            lambda r, k=key: (s.energy_j if (s := _stage(r, k)) else None),  # type: ignore[misc]
            LOWER, _noise(_stage(a, key), _stage(b, key)))  # fmt: skip
    step_noise = statistics.fmean(
        [t for r in (a, b) for s in r.costs.steps[1:] if (t := s.energy_tolerance_j) is not None]
        or [0.0]
    )
    add("energy.step", "Energy per step after first", "J",
        lambda r: r.energy.step_j_stable if r.energy else None, LOWER, 2 * step_noise)  # fmt: skip
    add("mfu.denoising", "MFU (denoising)", "%",
        lambda r: r.compute.mfu_pct if r.compute else None, HIGHER)  # fmt: skip
    add("mfu.step", "MFU (steps after first)", "%",
        lambda r: r.compute.step_mfu_pct if r.compute else None, HIGHER)  # fmt: skip
    return Comparison(
        run_a=a.run_id, run_b=b.run_id, status_a=a.summary.status, status_b=b.summary.status,
        tolerance_pct=tolerance_pct, config_a=config_a, config_b=config_b,
        differences=differences, forced=forced, rows=rows,
    )  # fmt: skip
