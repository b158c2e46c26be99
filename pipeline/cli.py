"""``wan-otel run``: flags, their defaults per model, and the run's one-line outcome.

Defaults follow the model: TI2V-5B's reference settings (1280x704, 121 frames, 24 fps, 50
steps, guidance 5.0) for ``ti2v-5b-random`` and checkpoints, toy sizes for ``tiny``. Bad flags
raise ``WanOtelError`` (one line, exit 2, from ``wan_otel.cli``); a failed generation prints
one line naming the run, which is in the store all the same, and exits 1.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import torch

from wan_otel import semconv
from wan_otel.errors import ExitStatus, WanOtelError
from wan_otel.pipeline import presets
from wan_otel.pipeline.generation import new_run_id
from wan_otel.pipeline.progress import ProgressBar
from wan_otel.pipeline.run import RunConfig, run
from wan_otel.pipeline.telemetry import TelemetryConfig, setup_telemetry
from wan_otel.store.run_store import check_run_id, default_store_root

DEFAULT_PROMPT = "A cat walks on the grass, realistic style."
DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}
SPATIAL_MULTIPLE = 32
"""TI2V-5B: VAE stride 16 x patch size 2."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--preset",
        choices=presets.PRESETS,
        help="random-weight model built in code (default: tiny)",
    )
    source.add_argument(
        "--model", type=Path, metavar="DIR", help="a Wan2.2-TI2V-5B-Diffusers checkpoint folder"
    )
    parser.add_argument("--prompt", default=DEFAULT_PROMPT)
    parser.add_argument("--negative-prompt", default=None)
    parser.add_argument("--image", type=Path, help="first frame: TI2V image-to-video")
    parser.add_argument("--height", type=int, help="pixels (multiple of 32)")
    parser.add_argument("--width", type=int, help="pixels (multiple of 32)")
    parser.add_argument("--frames", type=int, help="frames (4k+1)")
    parser.add_argument("--steps", type=int, help="denoising steps")
    parser.add_argument("--guidance", type=float, help="classifier-free guidance scale")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--fps", type=int, help="frames per second of the mp4")
    parser.add_argument("--offload", choices=semconv.OFFLOAD_MODES, default="none")
    parser.add_argument("--dtype", choices=sorted(DTYPES), help="default: bfloat16 on CUDA")
    parser.add_argument("--device", help="torch device (default: cuda if available, else cpu)")
    parser.add_argument("--max-sequence-length", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--output", type=Path, help="write the video here (mp4)")
    parser.add_argument("--run-id", help="default: time-based with a random suffix")
    parser.add_argument(
        "--store", type=Path, help="run store (default: $WAN_OTEL_STORE or ./wan-otel-runs)"
    )
    parser.add_argument("--no-store", action="store_true", help="do not write the run store")
    parser.add_argument(
        "--record-prompt",
        action="store_true",
        help="record the prompt text in spans (default: only its length and SHA-256)",
    )
    parser.add_argument(
        "--prometheus-port", type=int, help="serve the run's OTel metrics for Prometheus here"
    )


def config_from_args(args: argparse.Namespace) -> RunConfig:
    """Resolve defaults and check the flags; bad input raises ``WanOtelError``."""
    source = presets.SOURCE_CHECKPOINT if args.model is not None else args.preset or presets.TINY
    if args.model is not None:
        if not args.model.is_dir():
            raise WanOtelError(f"--model {args.model}: no such folder")
        if not (args.model / "model_index.json").is_file():
            raise WanOtelError(
                f"--model {args.model}: not a diffusers model folder (no model_index.json)"
            )
    if args.image is not None:
        if not args.image.is_file():
            raise WanOtelError(f"--image {args.image}: no such file")
        if importlib.util.find_spec("ftfy") is None:
            # diffusers' WanImageToVideoPipeline cleans prompts with ftfy unconditionally.
            raise WanOtelError("--image needs the ftfy package: pip install ftfy")
    defaults = presets.defaults_for(source)
    device = resolve_device(args.device)
    dtype = (
        DTYPES[args.dtype]
        if args.dtype
        else (torch.bfloat16 if device.type == "cuda" else torch.float32)
    )
    height = _pick(args.height, defaults.height)
    width = _pick(args.width, defaults.width)
    frames = _pick(args.frames, defaults.frames)
    for flag, value in (("--height", height), ("--width", width)):
        if value <= 0 or value % SPATIAL_MULTIPLE:
            raise WanOtelError(f"{flag} {value}: must be a positive multiple of {SPATIAL_MULTIPLE}")
    if frames < 1 or (frames - 1) % 4:
        raise WanOtelError(f"--frames {frames}: must be 4k+1 (1, 5, 9, ... 121)")
    steps = _pick(args.steps, defaults.steps)
    if steps < 1:
        raise WanOtelError(f"--steps {steps}: must be at least 1")
    store = None if args.no_store else (args.store or default_store_root())
    return RunConfig(
        source=source,
        run_id=check_run_id(args.run_id) if args.run_id else new_run_id(),
        prompt=args.prompt,
        negative_prompt=args.negative_prompt,
        height=height,
        width=width,
        frames=frames,
        steps=steps,
        guidance=defaults.guidance if args.guidance is None else args.guidance,
        fps=_pick(args.fps, defaults.fps),
        seed=args.seed,
        offload=args.offload,
        device=device,
        dtype=dtype,
        max_sequence_length=_pick(args.max_sequence_length, defaults.max_sequence_length),
        model_dir=args.model,
        image=args.image,
        output=args.output,
        store=store,
        record_prompt=args.record_prompt,
    )


def _pick(value: int | None, default: int) -> int:
    return default if value is None else value


def resolve_device(name: str | None) -> torch.device:
    """``--device``: a torch device, CUDA when available by default."""
    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise WanOtelError(f"--device {name}: {exc}") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise WanOtelError(f"--device {name}: CUDA is not available")
    return device


def main(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    if config.store is not None and (config.store / config.run_id).exists():
        # Appending a second generation to a run would mix two runs' spans in one report.
        raise WanOtelError(
            f"run {config.run_id!r} already exists in {config.store}: choose another --run-id"
        )
    telemetry = setup_telemetry(
        TelemetryConfig(store=config.store, prometheus_port=args.prometheus_port)
    )
    progress = ProgressBar(config.steps)
    config.listeners.append(progress)
    try:
        outcome = run(config, telemetry)
    except WanOtelError:  # bad input found late (a checkpoint folder): one line, exit 2
        progress.close()
        telemetry.shutdown()
        raise
    except Exception as exc:
        progress.close()
        telemetry.shutdown()
        if getattr(args, "traceback", False):
            raise
        where = _report_hint(config) if config.store is not None else "not stored (--no-store)"
        print(
            f"wan-otel: generation failed: {type(exc).__name__}: {_one_line(exc)} "
            f"(run {config.run_id}; "
            f"{where})",
            file=sys.stderr,
        )
        return ExitStatus.ERROR
    except BaseException:
        progress.close()
        telemetry.shutdown()
        raise
    progress.close()
    report = telemetry.shutdown()
    print(f"run {outcome.run_id}: {outcome.duration_s:.2f} s")
    if config.output is not None:
        print(f"video: {config.output}")
    if report.dropped_spans:
        print(f"spans dropped (OTLP): {report.dropped_spans}")
    if config.store is not None:
        print(f"report: {_report_hint(config)}")
    return ExitStatus.OK


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300]


def _report_hint(config: RunConfig) -> str:
    return f"wan-otel report --run-id {config.run_id} --store {config.store}"
