"""Parallel efficiency: a multi-GPU run against a one-GPU baseline of the same generation.

The step is compared by its mean after the first step: the first step of a multi-GPU run also
sets up the communicators (NCCL connects on the first collective), a one-time cost that is
not the parallel split's. The denoising stage is compared whole, when both runs ran the same
number of steps. A baseline that ran another generation (model, size, frames, guidance,
offload, transformer precision), ran on several GPUs or has no steps is refused: its speedup
would measure something else.
"""

from __future__ import annotations

import statistics

from wan_otel import semconv as sc
from wan_otel.errors import WanOtelError
from wan_otel.report.model import Efficiency, RunConfig
from wan_otel.report.run_info import run_config, system_info
from wan_otel.report.spans import RunTree, build_tree
from wan_otel.store.otlp_json import STATUS_ERROR
from wan_otel.store.run_store import RunData


def _generation(config: RunConfig) -> dict[str, object]:
    """What must match between the run and its baseline; None where a run did not record it."""
    guided = None if config.guidance_scale is None else config.guidance_scale > 1
    size = f"{config.width}x{config.height}" if config.width and config.height else None
    return {
        "model": config.model,
        "size": size,
        "frames": config.num_frames,
        "classifier-free guidance": guided,
        "offload": config.offload,
        "transformer dtype": config.dtypes.get("transformer"),
    }


def _stable_mean(tree: RunTree) -> float | None:
    """Mean step after the first (the only step's for a one-step run)."""
    steps = [s.duration_s for s in tree.steps()]
    if not steps:
        return None
    return statistics.fmean(steps[1:] if len(steps) > 1 else steps)


def efficiency(
    tree: RunTree, config: RunConfig, baseline: RunData, notes: list[str]
) -> Efficiency | None:
    """The run's speedup and efficiency against ``baseline``; None (with a note) when this run
    has no step to compare. Raises WanOtelError for a baseline that cannot be compared."""
    name = baseline.run_id
    if tree.world_size < 2:
        raise WanOtelError(
            f"--baseline compares a multi-GPU run with a one-GPU run; run "
            f"{tree.root.attributes.get(sc.RUN_ID)!r} ran on one GPU"
        )
    started = baseline.summary.attributes if baseline.summary is not None else None
    other = build_tree(name, baseline.spans, [], started)
    if other.world_size > 1:
        raise WanOtelError(
            f"baseline {name!r} ran on {other.world_size} GPUs; --baseline takes a one-GPU run"
        )
    mine, theirs = _generation(config), _generation(run_config(other.root))
    differ = [
        f"{key} {theirs[key]} against {mine[key]}"
        for key in mine
        if mine[key] is not None and theirs[key] is not None and mine[key] != theirs[key]
    ]
    if differ:
        raise WanOtelError(
            f"baseline {name!r} is another generation ({'; '.join(differ)}): compare runs of "
            "one model, size, frame count, guidance, offload and precision"
        )
    unknown = [key for key in mine if (mine[key] is None) != (theirs[key] is None)]
    if unknown:
        notes.append(
            f"baseline {name}: not compared (recorded by one run only): {', '.join(unknown)}"
        )
    base_step = _stable_mean(other)
    if base_step is None or base_step <= 0:
        raise WanOtelError(f"baseline {name!r} has no denoising steps to compare with")
    step = _stable_mean(tree)
    if step is None or step <= 0:
        notes.append(f"no denoising step on rank 0: no parallel efficiency against {name}")
        return None
    base_gpu = system_info(other.root).gpu_name
    gpu = system_info(tree.root).gpu_name
    if base_gpu and gpu and base_gpu != gpu:
        notes.append(f"baseline {name} ran on {base_gpu}, this run on {gpu}")
    if not other.root_is_real or other.root.status_code == STATUS_ERROR:
        notes.append(f"baseline {name} did not complete; its steps written are compared")
    base_loop, loop = other.first(sc.SPAN_DENOISE), tree.first(sc.SPAN_DENOISE)
    same_steps = len(other.steps()) == len(tree.steps())
    denoising = None
    if base_loop is not None and loop is not None and same_steps and loop.duration_s > 0:
        denoising = base_loop.duration_s / loop.duration_s
    elif not same_steps:
        notes.append(
            f"denoising speedup n/a: baseline {name} ran {len(other.steps())} steps, this run "
            f"{len(tree.steps())}"
        )
    world = tree.world_size
    return Efficiency(
        baseline_run_id=name,
        baseline_gpu_name=base_gpu,
        baseline_step_s=base_step,
        step_s=step,
        step_speedup=base_step / step,
        step_efficiency_pct=100.0 * base_step / step / world,
        baseline_denoising_s=base_loop.duration_s if base_loop is not None else None,
        denoising_speedup=denoising,
        denoising_efficiency_pct=None if denoising is None else 100.0 * denoising / world,
    )
