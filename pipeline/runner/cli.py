"""``wan-otel run``: flags, their defaults per model, and the run's one-line outcome.

Defaults follow the model: TI2V-5B's reference settings (1280x704, 121 frames, 24 fps, 50
steps, guidance 5.0) for ``ti2v-5b-random`` and checkpoints, toy sizes for ``tiny``. Every flag
is checked before any work: a bad one raises ``WanOtelError`` (one line, exit 2, from
``wan_otel.cli``). A failed generation prints one line naming the run, which is in the store
all the same, and exits 1; SIGTERM or SIGINT stop it with its spans written and exit
``128 + signal``.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import sys
from dataclasses import replace
from pathlib import Path

import torch

from wan_otel.errors import ExitStatus, WanOtelError
from wan_otel.pipeline.runner import presets
from wan_otel.pipeline.runner.interrupt import RunInterrupted, signals_interrupt
from wan_otel.pipeline.runner.launch import launch
from wan_otel.pipeline.runner.model_flags import (
    ModelChoice,
    add_model_arguments,
    check_port,
    check_port_free,
    max_frames,
    model_from_args,
    size_rule,
)
from wan_otel.pipeline.runner.parallel import (
    DEFAULT_TIMEOUT_S,
    ParallelPlan,
    close_group,
    device_for,
    init_group,
    plan_from_env,
)
from wan_otel.pipeline.runner.progress import ProgressBar
from wan_otel.pipeline.runner.run import ONE_GPU, RunRequest, run
from wan_otel.pipeline.runner.telemetry import TelemetryConfig, setup_telemetry
from wan_otel.pipeline.runner.trace_ids import MintedTraceIds
from wan_otel.store.run_store import RunStore, check_run_id, default_store_root, new_run_id

DEFAULT_PROMPT = "A cat walks on the grass, realistic style."
MAX_STEPS = 10_000
MAX_FPS = 240
MAX_GUIDANCE = 100.0
MAX_SEED = 2**63 - 1


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser)
    parser.add_argument("--prompt", default=DEFAULT_PROMPT)
    parser.add_argument("--negative-prompt", default=None)
    parser.add_argument(
        "--image", type=Path, help="first frame: image-to-video (TI2V; required for I2V)"
    )
    parser.add_argument("--height", type=int, help="pixels (TI2V-5B: multiple of 32; A14B: 16)")
    parser.add_argument("--width", type=int, help="pixels (TI2V-5B: multiple of 32; A14B: 16)")
    parser.add_argument("--frames", type=int, help="frames (4k+1)")
    parser.add_argument("--steps", type=int, help="denoising steps")
    parser.add_argument("--guidance", type=float, help="classifier-free guidance scale")
    parser.add_argument(
        "--guidance-2", type=float, help="two-expert models: the low-noise expert's guidance"
    )
    parser.add_argument("--seed", type=int)
    parser.add_argument("--fps", type=int, help="frames per second of the mp4")
    parser.add_argument("--output", type=Path, help="write the video here (mp4)")
    parser.add_argument("--run-id", help="default: time-based with a random suffix")
    parser.add_argument(
        "--store", type=Path, help="run store (default: $WAN_OTEL_STORE or ./wan-otel-runs)"
    )
    parser.add_argument("--no-store", action="store_true", help="do not write the run store")
    parser.add_argument(
        "--prometheus-port", type=int, help="serve the run's OTel metrics for Prometheus here"
    )
    multi = parser.add_argument_group("several GPUs (one generation, context parallelism)")
    multi.add_argument(
        "--gpus",
        type=int,
        metavar="N",
        help="launch the run on N GPUs (torchrun, one process each)",
    )
    multi.add_argument("--ulysses", type=int, metavar="N", help="Ulysses degree (default: N GPUs)")
    multi.add_argument("--ring", type=int, metavar="N", help="ring-attention degree")
    multi.add_argument(
        "--collective-timeout",
        type=float,
        default=DEFAULT_TIMEOUT_S,
        metavar="S",
        help=f"seconds a collective waits for a peer (default {DEFAULT_TIMEOUT_S:g})",
    )


def request_from_args(args: argparse.Namespace, parallel: ParallelPlan = ONE_GPU) -> RunRequest:
    """Resolve defaults and check the flags; bad input raises ``WanOtelError``."""
    model = model_from_args(args)
    model = replace(model, device=device_for(parallel, model.device))
    defaults = presets.defaults_for(model.source, model.model_dir)
    height = _pick(args.height, defaults.height)
    width = _pick(args.width, defaults.width)
    _check_size(model, height, width)
    frames = _pick(args.frames, defaults.frames)
    longest = max_frames(model)
    if not 1 <= frames <= longest or (frames - 1) % presets.TEMPORAL_FACTOR:
        raise WanOtelError(f"--frames {frames}: must be 4k+1 from 1 to {longest} (1, 5, 9, ...)")
    steps = _pick(args.steps, defaults.steps)
    _check_range("--steps", steps, 1, MAX_STEPS)
    fps = _pick(args.fps, defaults.fps)
    _check_range("--fps", fps, 1, MAX_FPS)
    guidance = _guidance("--guidance", defaults.guidance, args.guidance)
    spec = presets.spec_for(model.source, model.model_dir)
    guidance_2 = None
    if spec.two_experts:
        guidance_2 = _guidance("--guidance-2", defaults.guidance_2 or guidance, args.guidance_2)
    elif args.guidance_2 is not None:
        raise WanOtelError(f"--guidance-2: {spec.name} has one transformer, one guidance scale")
    if spec.needs_image and args.image is None:
        raise WanOtelError(f"--image: {spec.name} generates from a first frame; give one")
    if args.seed is not None:
        _check_range("--seed", args.seed, 0, MAX_SEED)
    seed = 0 if args.seed is None and parallel.parallel else args.seed  # the same latents
    _check_image(args.image)
    if args.output is not None and args.output.is_dir():
        raise WanOtelError(f"--output {args.output}: a folder; name the mp4 file")
    check_port("--prometheus-port", args.prometheus_port)
    if args.prometheus_port is not None:
        check_port_free("--prometheus-port", "0.0.0.0", args.prometheus_port)
    store = None
    if not args.no_store:
        store = RunStore(args.store or default_store_root())
        store.check_writable()
    return RunRequest(
        model=model,
        run_id=check_run_id(args.run_id) if args.run_id is not None else new_run_id(),
        prompt=args.prompt,
        negative_prompt=args.negative_prompt,
        height=height,
        width=width,
        frames=frames,
        steps=steps,
        guidance=guidance,
        guidance_2=guidance_2,
        fps=fps,
        seed=seed,
        max_sequence_length=model.max_sequence_length or defaults.max_sequence_length,
        image=args.image,
        output=args.output,
        store=store,
        record_prompt=args.record_prompt,
    )


def _pick(value: int | None, default: int) -> int:
    return default if value is None else value


def _check_range(flag: str, value: int, low: int, high: int) -> None:
    if not low <= value <= high:
        raise WanOtelError(f"{flag} {value}: must be {low} to {high}")


def _guidance(flag: str, default: float, given: float | None) -> float:
    value = default if given is None else given
    if not math.isfinite(value) or not 0 <= value <= MAX_GUIDANCE:
        raise WanOtelError(f"{flag} {value}: must be 0 to {MAX_GUIDANCE:g}")
    return value


def _check_size(model: ModelChoice, height: int, width: int) -> None:
    multiple, largest = size_rule(model)
    for flag, value in (("--height", height), ("--width", width)):
        if value <= 0 or value % multiple or value > largest:
            raise WanOtelError(
                f"{flag} {value}: must be a multiple of {multiple} from {multiple} to {largest}"
            )


def _check_image(image: Path | None) -> None:
    if image is None:
        return
    if not image.is_file():
        raise WanOtelError(f"--image {image}: no such file")
    if importlib.util.find_spec("ftfy") is None:
        # diffusers' WanImageToVideoPipeline cleans prompts with ftfy unconditionally.
        raise WanOtelError("--image needs the ftfy package: pip install ftfy")


def main(args: argparse.Namespace) -> int:
    if args.gpus is not None:
        return _launch(args)
    if not math.isfinite(args.collective_timeout) or args.collective_timeout <= 0:
        raise WanOtelError(f"--collective-timeout {args.collective_timeout}: must be positive")
    parallel = plan_from_env(args.ulysses, args.ring)
    request = request_from_args(args, parallel)
    init_group(parallel, request.model.device, args.collective_timeout)
    try:
        return _run(args, request, parallel)
    finally:
        close_group()


def _launch(args: argparse.Namespace) -> int:
    """``--gpus N``: check every flag here, then start the ranks under torchrun."""
    gpus = args.gpus
    devices = torch.cuda.device_count() if torch.cuda.is_available() else 0
    on_cpu = args.device is not None and args.device.startswith("cpu")
    if gpus < 1 or (not on_cpu and gpus > devices) or gpus > 64:
        have = "the CPU (--device cpu): up to 64" if on_cpu else f"{devices} CUDA device(s)"
        raise WanOtelError(f"--gpus {gpus}: this machine has {have}")
    degrees = (args.ulysses or 1) * (args.ring or 1)
    given = args.ulysses is not None or args.ring is not None
    if given and degrees != gpus:
        raise WanOtelError(f"--ulysses x --ring = {degrees}, but --gpus is {gpus}")
    request = request_from_args(args)
    if request.store is not None and request.store.folder(request.run_id).path.exists():
        raise WanOtelError(
            f"run {request.run_id!r} already exists in {request.store.root}: choose another run id"
        )
    return launch(getattr(args, "argv", []), gpus, request.run_id, given)


def _run(args: argparse.Namespace, request: RunRequest, parallel: ParallelPlan) -> int:
    lead = parallel.rank == 0
    ids = MintedTraceIds()
    telemetry = setup_telemetry(
        TelemetryConfig(
            store=request.store,
            store_writer=parallel.writer,
            prometheus_port=args.prometheus_port if lead else None,
            id_generator=ids,
        )
    )
    progress = ProgressBar(request.steps) if lead else None
    failure: tuple[int, str] | None = None
    with signals_interrupt() as signals:
        try:
            outcome = run(
                request,
                telemetry,
                listeners=[progress] if progress is not None else [],
                signals=signals,
                parallel=parallel,
                ids=ids,
            )
        except RunInterrupted as exc:
            failure = exc.exit_code, f"{_interrupted(request, exc)} ({_where(request)})"
        except WanOtelError:  # bad input found late (a checkpoint folder): one line, exit 2
            raise
        except Exception as exc:
            if getattr(args, "traceback", False):
                raise
            failure = (
                ExitStatus.ERROR,
                (
                    f"generation failed{_on_rank(parallel)}: {type(exc).__name__}: "
                    f"{_one_line(exc)} (run {request.run_id}; {_where(request)})"
                ),
            )
        finally:
            if progress is not None:
                progress.close()
            loss = telemetry.shutdown()
    if failure is not None:
        print(f"wan-otel: {failure[1]}", file=sys.stderr)
        return failure[0]
    if lead:
        print(f"run {outcome.run_id}: {outcome.duration_s:.2f} s")
        if request.output is not None:
            print(f"video: {request.output}")
        if request.store is not None:
            print(f"report: {_report_hint(request)}")
    if loss.dropped:
        print(f"telemetry not delivered to OTLP: {loss.dropped}")
    if signals.exit_code is not None:  # a signal came while the finished run was written
        return signals.exit_code
    return ExitStatus.OK


def _on_rank(parallel: ParallelPlan) -> str:
    return f" on rank {parallel.rank}" if parallel.parallel else ""


def _interrupted(request: RunRequest, exc: RunInterrupted) -> str:
    """The signal and where it stopped the run, as the run's summary says."""
    summary = request.store.summary(request.run_id) if request.store is not None else None
    if summary is not None and summary.detail is not None:
        return f"run {request.run_id} interrupted by {summary.detail}"
    return f"run {request.run_id} interrupted by {exc.signal_name}"


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300]


def _where(request: RunRequest) -> str:
    if request.store is None:
        return "not stored (--no-store)"
    return _report_hint(request)


def _report_hint(request: RunRequest) -> str:
    assert request.store is not None
    return f"wan-otel report --run-id {request.run_id} --store {request.store.root}"
