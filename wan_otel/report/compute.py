"""Model FLOPs of a run's steps and VAE decode, and MFU against the GPU's dense peak.

A step's FLOPs are its transformer forwards (the ``wan.transformer.forward`` spans under it:
2 with classifier-free guidance, the conditional and the unconditional pass) times one
forward's FLOPs; a step whose forwards were not recorded counts 2 when the guidance scale is
above 1 (diffusers runs both passes then) and 1 otherwise. A multi-GPU run splits each
forward's tokens over its ranks (Ulysses, ring): the FLOPs are the same, the peak is the GPUs'
together (MFU = FLOPs / (time x peak x GPUs)), and the time is rank 0's.
"""

from __future__ import annotations

from dataclasses import dataclass

from wan_otel import semconv as sc
from wan_otel.report.flops import (
    ForwardFlops,
    ModelConfig,
    forward_flops,
    latent_grid,
    model_config,
    vae_decode_flops,
)
from wan_otel.report.gpu_peaks import gpu_peak
from wan_otel.report.limits import ComputeFigures
from wan_otel.report.model import RunConfig, SystemInfo
from wan_otel.report.spans import RunTree
from wan_otel.store.otlp_json import SpanRecord

TENSOR_DTYPES = ("bfloat16", "float16")
"""Transformer precisions whose peak is the table's BF16 one."""
PEAK_FLAG = "--peak-tflops"


@dataclass(frozen=True)
class StepFlops:
    step: SpanRecord
    forwards: int
    flops: float | None
    mfu_pct: float | None


def _mfu(flops: float | None, seconds: float | None, peak_tflops: float | None) -> float | None:
    if flops is None or not seconds or not peak_tflops:
        return None
    return 100.0 * flops / (seconds * peak_tflops * 1e12)


def _forwards(tree: RunTree, step: SpanRecord, guided: bool) -> int:
    recorded = len(tree.descendants(step, sc.SPAN_TRANSFORMER_FORWARD))
    return recorded or (2 if guided else 1)


def _peaks(
    system: SystemInfo, config: RunConfig, override: float | None, notes: list[str]
) -> tuple[float | None, str | None, float | None, str | None]:
    """(transformer peak, its source, VAE peak, the VAE's precision) of one GPU."""
    known = gpu_peak(system.gpu_name)
    dtype = config.dtypes.get("transformer")
    peak, source = None, None
    if override is not None:
        peak, source = override, f"{PEAK_FLAG} {override:g}"
    elif known is None:
        notes.append(
            f"no dense peak known for GPU {system.gpu_name or system.device or 'unknown'}: "
            f"MFU n/a (give it with {PEAK_FLAG})"
        )
    elif dtype is not None and dtype not in TENSOR_DTYPES:
        notes.append(f"{dtype} transformer: no tensor-core peak assumed; MFU n/a ({PEAK_FLAG})")
    else:
        peak, source = known.bf16_tflops, known.source
    vae_dtype = config.dtypes.get("vae", "float32")
    vae_precision = "BF16" if vae_dtype in TENSOR_DTYPES else "TF32"
    vae_peak = None
    if known is not None and vae_dtype in (*TENSOR_DTYPES, "float32"):
        vae_peak = known.bf16_tflops if vae_precision == "BF16" else known.tf32_tflops
    return peak, source, vae_peak, vae_precision


def _empty(model: ModelConfig | None, world: int, note: str) -> ComputeFigures:
    return ComputeFigures(
        model=model.name if model else None, tokens=None, token_grid=None, text_tokens=None,
        forward_flops=None, forward_parts={}, forwards=0, step_flops=None,
        denoising_flops=None, vae_decode_flops=None, gpu_family=None, peak_tflops=None,
        peak_source=None, vae_peak_tflops=None, vae_precision=None, world_size=world,
        mfu_pct=None, step_mfu_pct=None, step_s_at_peak=None, vae_mfu_pct=None, note=note,
    )  # fmt: skip


def compute_figures(
    tree: RunTree, config: RunConfig, system: SystemInfo, peak_tflops: float | None = None
) -> tuple[ComputeFigures, list[StepFlops]]:
    """The run's FLOPs and MFU, and each of rank 0's steps' (in step order)."""
    world = tree.world_size
    steps = tree.steps()
    model = model_config(config.model)
    if model is None:
        why = f"no model configuration known for {config.model or 'an unnamed model'}"
        return _empty(None, world, f"{why}: FLOPs and MFU n/a"), [
            StepFlops(s, 0, None, None) for s in steps
        ]
    if not (config.width and config.height and config.num_frames):
        note = "the request's size is not recorded: FLOPs and MFU n/a"
        return _empty(model, world, note), [StepFlops(s, 0, None, None) for s in steps]
    grid = latent_grid(model, config.width, config.height, config.num_frames)
    forward: ForwardFlops = forward_flops(model.dit, grid.tokens)
    notes: list[str] = []
    peak, source, vae_peak, vae_precision = _peaks(system, config, peak_tflops, notes)
    all_peak = peak * world if peak else None
    guided = config.guidance_scale is None or config.guidance_scale > 1
    step_lines = []
    for step in steps:
        n = _forwards(tree, step, guided)
        flops = n * forward.total
        step_lines.append(StepFlops(step, n, flops, _mfu(flops, step.duration_s, all_peak)))
    total = sum(s.flops or 0.0 for s in step_lines)
    later = step_lines[1:] or step_lines
    later_flops = sum(s.flops or 0.0 for s in later)
    later_s = sum(s.step.duration_s for s in later)
    loop = tree.first(sc.SPAN_DENOISE)
    vae_span = tree.first(sc.SPAN_VAE_DECODE)
    vae = vae_decode_flops(model, config.width, config.height, config.num_frames)
    mean_step = total / len(step_lines) if step_lines else None
    vae_mfu = _mfu(vae, vae_span.duration_s if vae_span else None, vae_peak)
    over = [f"step {i} at {s.mfu_pct:.0f}%" for i, s in enumerate(step_lines)
            if s.mfu_pct is not None and s.mfu_pct > 100.0]  # fmt: skip
    if vae_mfu is not None and vae_mfu > 100.0:
        over.append(f"the VAE decode at {vae_mfu:.0f}%")
    if over:
        # Not clipped: a figure over the peak says the durations are not this model's at this
        # size on this GPU (a synthetic run, a wrong model name or GPU), which the reader must see.
        notes.append(
            f"over the GPU's peak ({', '.join(over[:3])}{', ...' if len(over) > 3 else ''}): "
            "those durations cannot be this model's at this size on this GPU (a synthetic run, "
            "or another model, size or GPU recorded)"
        )
    figures = ComputeFigures(
        model=model.name,
        tokens=grid.tokens,
        token_grid=list(grid.token_grid),
        text_tokens=model.dit.text_tokens,
        forward_flops=forward.total,
        forward_parts={
            "self_attention": forward.self_attention,
            "cross_attention": forward.cross_attention,
            "mlp": forward.mlp,
            "embeddings": forward.embeddings,
        },
        forwards=sum(s.forwards for s in step_lines),
        step_flops=mean_step,
        denoising_flops=total if step_lines else None,
        vae_decode_flops=vae,
        gpu_family=(known.family if (known := gpu_peak(system.gpu_name)) else None),
        peak_tflops=peak,
        peak_source=source,
        vae_peak_tflops=vae_peak,
        vae_precision=vae_precision,
        world_size=world,
        mfu_pct=_mfu(total, loop.duration_s if loop else None, all_peak) if step_lines else None,
        step_mfu_pct=_mfu(later_flops, later_s, all_peak) if step_lines else None,
        step_s_at_peak=mean_step / (all_peak * 1e12) if mean_step and all_peak else None,
        vae_mfu_pct=vae_mfu,
        note="; ".join(notes) or None,
    )
    return figures, step_lines
