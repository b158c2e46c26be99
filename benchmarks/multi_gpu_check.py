"""GPU check of multi-GPU runs: one generation on N GPUs against one GPU, and what telemetry costs.

On a machine with N GPUs (``--gpus``, default all), about 5 minutes for N = 2:

1. A one-GPU baseline: ``wan-otel run --preset ti2v-5b-random`` at 1280x704, 121 frames, 10
   steps (the real command, GPU sampler on).
2. The same with Ulysses over N GPUs: ``wan-otel run --gpus N`` (torchrun underneath).
3. Overhead, under torchrun with the same parallel configuration: the pipeline called bare and
   instrumented (the SDK providers, the run store, the span stream, the collective proxy),
   interleaved, 4 steps a call, latents only; wall time per call on rank 0 and GPU time per
   step (CUDA events from a step callback); host synchronizations per step counted with
   torch's sync debug mode at 2 and 4 steps, bare and instrumented.

Writes the runs to ``--store``, ``multi_gpu_check.json`` to ``$OUT`` when set, prints a table.
``--dry-run``: the tiny preset over gloo processes on the CPU (checks the script).

    python benchmarks/multi_gpu_check.py --store /tmp/store
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PROMPT = "A red fox trots through fresh snow at dawn, cinematic."


def _env() -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return dict(os.environ, PYTHONPATH=path)


def _size(args: argparse.Namespace) -> list[str]:
    return ["--height", str(args.height), "--width", str(args.width), "--frames", str(args.frames)]


def _wan_otel(argv: list[str]) -> tuple[int, float]:
    started = time.monotonic()
    code = subprocess.run(
        [sys.executable, "-m", "wan_otel", *argv], cwd=ROOT, env=_env()
    ).returncode
    return code, time.monotonic() - started


def drive(args: argparse.Namespace) -> int:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    kind = "cpu" if args.dry_run else "h200"
    common = ["--preset", args.preset, "--steps", str(args.steps), "--seed", "0", "--prompt",
              PROMPT, "--store", str(args.store), *_size(args)]  # fmt: skip
    if args.dry_run:
        common += ["--device", "cpu"]
    result: dict[str, Any] = {"gpus": args.gpus, "preset": args.preset, "steps": args.steps}
    base = f"{kind}-{args.preset}-1gpu-{args.steps}steps-{stamp}"
    many = f"{kind}-{args.preset}-ulysses{args.gpus}-{args.steps}steps-{stamp}"
    result["baseline"] = dict(
        zip(("exit", "wall_s"), _wan_otel(["run", *common, "--run-id", base]))
    )
    multi = ["run", *common, "--run-id", many, "--gpus", str(args.gpus)]
    result["parallel"] = dict(zip(("exit", "wall_s"), _wan_otel(multi)))
    result["run_ids"] = [base, many]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                "--nproc-per-node", str(args.gpus), str(Path(__file__).resolve()), "--overhead",
                "--store", str(args.store), *(["--dry-run"] if args.dry_run else [])]  # fmt: skip
    out = Path(os.environ.get("OUT", "/tmp")) / "overhead.json"
    code = subprocess.run([*torchrun, "--result", str(out)], cwd=ROOT, env=_env()).returncode
    result["overhead_exit"] = code
    if out.is_file():
        result["overhead"] = json.loads(out.read_text())
    for name in ("baseline", "parallel"):
        if result[name]["exit"] == 0:
            result[name].update(_figures(args.store, result["run_ids"][name == "parallel"]))
    _print(result)
    target = os.environ.get("OUT")
    if target:
        (Path(target) / "multi_gpu_check.json").write_text(json.dumps(result, indent=2) + "\n")
    ok = result["baseline"]["exit"] == 0 and result["parallel"]["exit"] == 0 and code == 0
    return 0 if ok else 1


def _figures(store: Path, run_id: str) -> dict[str, Any]:
    from wan_otel import semconv as sc
    from wan_otel.store import RunStore

    spans = RunStore(store).read(run_id).spans
    steps = [
        s for s in spans if s.name == sc.SPAN_DENOISE_STEP and s.attributes.get(sc.RANK, 0) == 0
    ]
    step_s = sorted((s.start_ns, s.duration_s) for s in steps)
    comm = [float(s.attributes.get(sc.STEP_COMM_S, 0.0)) for s in steps]  # type: ignore[arg-type]
    return {
        "step_s_mean_after_first": statistics.fmean(d for _, d in step_s[1:])
        if len(step_s) > 1
        else None,
        "comm_share_rank0": sum(comm) / sum(d for _, d in step_s) if step_s else None,
        "traces": len({s.trace_id for s in spans}),
        "ranks": sorted({int(s.attributes.get(sc.RANK, 0)) for s in spans}),  # type: ignore[arg-type]
    }


def overhead(args: argparse.Namespace) -> int:
    """Under torchrun: bare against instrumented calls with the same parallel configuration."""
    import torch

    from wan_otel.pipeline import instrument, uninstrument
    from wan_otel.pipeline.runner.parallel import (
        WEIGHT_SEED,
        close_group,
        device_for,
        enable_context_parallel,
        init_group,
        plan_from_env,
    )
    from wan_otel.pipeline.runner.presets import build_preset
    from wan_otel.pipeline.runner.telemetry import TelemetryConfig, setup_telemetry
    from wan_otel.store import RunStore

    plan = plan_from_env(None, None)
    device = device_for(plan, torch.device("cpu" if args.dry_run else "cuda"))
    init_group(plan, device, 300.0)
    cuda = device.type == "cuda"
    torch.manual_seed(WEIGHT_SEED)
    dtype = torch.bfloat16 if cuda else torch.float32
    pipe = build_preset(args.preset, device=device, dtype=dtype).pipe
    pipe.set_progress_bar_config(disable=True)
    enable_context_parallel([pipe.transformer], plan)
    telemetry = setup_telemetry(
        TelemetryConfig(
            store=RunStore(args.store / "overhead"), store_writer=plan.writer, otlp=False
        )
    )
    events: list[Any] = []

    def callback(p: Any, step: int, timestep: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
        if cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            events.append(event)
        return kwargs

    def call(steps: int, size: tuple[int, int, int], timed: bool = True) -> float:
        import torch.distributed as dist

        if cuda:
            torch.cuda.synchronize()
        dist.barrier()
        started = time.perf_counter()
        pipe(prompt=PROMPT, height=size[0], width=size[1], num_frames=size[2],
             num_inference_steps=steps, guidance_scale=5.0, output_type="latent",
             max_sequence_length=16 if args.dry_run else 512,
             generator=torch.Generator().manual_seed(0),
             callback_on_step_end=callback if timed else None)  # fmt: skip
        if cuda:
            torch.cuda.synchronize()
        return time.perf_counter() - started

    full = (args.height, args.width, args.frames)
    call(1, full, timed=False)  # warm-up
    walls: dict[str, list[float]] = {"bare": [], "instrumented": []}
    gpu_steps: dict[str, list[float]] = {"bare": [], "instrumented": []}
    for _ in range(args.repeats):
        for mode in ("bare", "instrumented"):
            if mode == "instrumented":
                instrument(pipe, telemetry.tracer_provider, telemetry.meter_provider)
            events.clear()
            walls[mode].append(call(4, full))
            if cuda and len(events) > 1:
                gpu_steps[mode] += [a.elapsed_time(b) / 1e3 for a, b in itertools.pairwise(events)]
            if mode == "instrumented":
                uninstrument(pipe)
    result: dict[str, Any] = {"rank": plan.rank, "world_size": plan.world_size}
    for mode in walls:
        result[f"{mode}_call_s"] = statistics.median(walls[mode])
        result[f"{mode}_gpu_step_s"] = (
            statistics.median(gpu_steps[mode]) if gpu_steps[mode] else None
        )
    result["added_pct"] = 100 * (result["instrumented_call_s"] / result["bare_call_s"] - 1)
    if cuda:
        result["syncs"] = _syncs(pipe, call, telemetry, instrument, uninstrument, args)
    telemetry.shutdown()
    if plan.rank == 0 and args.result:
        Path(args.result).write_text(json.dumps(result, indent=2) + "\n")
    close_group()
    return 0


def _syncs(pipe: Any, call: Any, telemetry: Any, instrument: Any, uninstrument: Any,
           args: argparse.Namespace) -> dict[str, Any]:  # fmt: skip
    import torch

    small = (256, 448, 17)

    def count(steps: int) -> int:
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("warn")
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                call(steps, small, timed=False)
        finally:
            torch.cuda.set_sync_debug_mode(0)
        return sum("synchroniz" in str(w.message) for w in caught)

    call(1, small, timed=False)
    bare = (count(2), count(4))
    instrument(pipe, telemetry.tracer_provider, telemetry.meter_provider)
    try:
        count(1)
        observed = (count(2), count(4))
    finally:
        uninstrument(pipe)
    added = ((observed[1] - observed[0]) - (bare[1] - bare[0])) / 2
    return {"bare": bare, "instrumented": observed, "added_per_step": added}


def _print(result: dict[str, Any]) -> None:
    print(f"\n== {result['preset']}, {result['steps']} steps, 1 GPU against {result['gpus']}")
    for name in ("baseline", "parallel"):
        r = result[name]
        print(
            f"{name:<9} exit {r['exit']} wall {r['wall_s']:.1f} s | mean step after first "
            f"{r.get('step_s_mean_after_first')} s | comm share (rank 0) "
            f"{r.get('comm_share_rank0')} | traces {r.get('traces')} ranks {r.get('ranks')}"
        )
    base, many = result["baseline"], result["parallel"]
    if base.get("step_s_mean_after_first") and many.get("step_s_mean_after_first"):
        speedup = base["step_s_mean_after_first"] / many["step_s_mean_after_first"]
        print(f"speedup per step {speedup:.2f}x, efficiency {100 * speedup / result['gpus']:.1f} %")
    over = result.get("overhead")
    if over:
        print(f"overhead (rank 0): bare {over['bare_call_s']:.3f} s, instrumented "
              f"{over['instrumented_call_s']:.3f} s ({over['added_pct']:+.3f} %); GPU step "
              f"{over['bare_gpu_step_s']} vs {over['instrumented_gpu_step_s']}; syncs "
              f"{over.get('syncs')}")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, required=True)
    parser.add_argument("--gpus", type=int, default=0, help="default: every GPU (2 dry)")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dry-run", action="store_true")
    parser.add_argument("--overhead", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.preset = "tiny" if args.dry_run else "ti2v-5b-random"
    args.height, args.width, args.frames = (64, 64, 9) if args.dry_run else (704, 1280, 121)
    if args.dry_run:
        args.steps, args.repeats = min(args.steps, 3), 2
    if args.overhead:
        return overhead(args)
    if not args.gpus:
        import torch

        args.gpus = 2 if args.dry_run else torch.cuda.device_count()
    return drive(args)


if __name__ == "__main__":
    sys.exit(main())
