"""GPU check of the instrumented pipeline: real runs for the store, and what telemetry costs.

One script for one GPU (H100 or H200; about 6 minutes; budget 9):

1. Two ``wan-otel run`` generations through the real command code path (GPU sampler on):
   ``ti2v-5b-random`` at 1280x704, 121 frames, 10 steps, offload ``none`` then ``model``,
   stored under ``--store`` (copy them back and commit their reports). A watcher reads the
   store while each runs: step spans must be on disk before the run ends (streaming).
2. A run killed with SIGKILL in the middle of its denoising loop (a subprocess, small size):
   the steps that ended before the kill are in the store and the report says ``killed``.
3. Instrumentation overhead: the same pipeline called bare and instrumented, interleaved in
   one process (full size, latents only, a few steps). Instrumented is the whole stack of
   ``wan-otel run``: the SDK providers, the run store behind a batch processor, the span
   stream's thread. Wall time per call and GPU time per step from CUDA events recorded by a
   step callback.
4. Host synchronizations added per step: torch's sync debug mode counts synchronizing calls
   on every thread (the span stream's included), bare vs instrumented, at N and 2N steps
   (smaller frames: it is a property of the code path). Expected: 0.

Prints a short table, writes ``pipeline_gpu_check.json`` to ``$OUT`` when set, and exits 1
if a check failed. ``--dry-run`` does all of it with the tiny preset on the CPU (no sync
counting) to check the script itself.

    python benchmarks/pipeline_gpu_check.py --store "$OUT/store" --video-dir /tmp/videos
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import itertools
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def _import_source_tree() -> None:
    """Run from a checkout: ``wan_otel`` from the source folder (its ``__init__`` resolves the
    mapped ``pipeline/`` and ``exporter/`` folders)."""
    sys.path.insert(0, str(ROOT))


_import_source_tree()

import torch  # noqa: E402
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (  # noqa: E402
    InMemorySpanExporter,
)

from wan_otel import semconv as sc  # noqa: E402
from wan_otel.cli import main as wan_otel_main  # noqa: E402
from wan_otel.pipeline import instrument, uninstrument  # noqa: E402
from wan_otel.pipeline.runner.presets import (  # noqa: E402
    TI2V_5B_RANDOM,
    TINY,
    TINY_A14B,
    build_preset,
    spec_for,
)
from wan_otel.pipeline.runner.telemetry import TelemetryConfig, setup_telemetry  # noqa: E402
from wan_otel.store.run_store import RunStore  # noqa: E402

STEP_SPAN_TEXT = f'"name":"{sc.SPAN_DENOISE_STEP}"'
"""A step span as the store writes it (the step index attribute has the same name)."""
PROMPT = "A red fox trots through fresh snow at dawn, cinematic."


class Checks:
    def __init__(self) -> None:
        self.results: list[dict[str, Any]] = []

    def check(self, name: str, ok: bool, detail: Any = "") -> None:
        self.results.append({"check": name, "ok": bool(ok), "detail": str(detail)})
        print(f"  [{'PASS' if ok else 'FAIL'}] {name} {detail}", flush=True)

    @property
    def failed(self) -> list[str]:
        return [r["check"] for r in self.results if not r["ok"]]


def _free_gpu() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
        torch.cuda.empty_cache()


def _size_args(args: argparse.Namespace) -> list[str]:
    return ["--height", str(args.height), "--width", str(args.width), "--frames", str(args.frames)]


# -- 1. runs through `wan-otel run` --------------------------------------------------------


def stored_runs(args: argparse.Namespace, checks: Checks) -> list[dict[str, Any]]:
    runs = []
    can_export = all(importlib.util.find_spec(m) for m in ("imageio", "imageio_ffmpeg"))
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    gpu = "cpu" if args.dry_run else torch.cuda.get_device_name(0).split()[-1].lower()
    for offload in args.offloads:
        run_id = f"{gpu}-{args.preset}-{offload}-{args.steps}steps-{stamp}"
        watcher = _StoreWatcher(RunStore(args.store), run_id)
        argv = ["run", "--preset", args.preset, "--steps", str(args.steps), "--offload", offload,
                "--store", str(args.store), "--run-id", run_id, "--seed", "0", "--prompt", PROMPT,
                *_size_args(args)]  # fmt: skip
        if args.device:
            argv += ["--device", args.device]
        if can_export:
            args.video_dir.mkdir(parents=True, exist_ok=True)
            argv += ["--output", str(args.video_dir / f"{run_id}.mp4")]
        print(f"\n== wan-otel {' '.join(argv)}", flush=True)
        started = time.monotonic()
        with watcher:
            code = wan_otel_main(argv)
        wall = time.monotonic() - started
        _free_gpu()
        runs.append({"run_id": run_id, "offload": offload, "exit": code, "wall_s": wall})
        checks.check(f"run {offload}: exit 0", code == 0, f"({wall:.1f} s)")
        seen = watcher.steps_before_root
        runs[-1]["steps_on_disk_before_the_end"] = seen
        if not args.dry_run:  # the tiny run is over before the first read
            checks.check(f"run {offload}: steps streamed before the run ended", seen > 0, seen)
        if code == 0:
            runs[-1].update(_inspect_run(args, run_id, offload, checks))
    if not can_export:
        print("  (imageio / imageio-ffmpeg missing: runs made no mp4 and no export span)")
    return runs


class _StoreWatcher:
    """Reads a run's spans file every 0.5 s while it runs: the most step spans seen on disk
    before the root span was (what a kill at that moment would have kept)."""

    def __init__(self, store: RunStore, run_id: str) -> None:
        self.store, self.run_id = store, run_id
        self.steps_before_root = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        while not self._stop.wait(0.5):
            path = self.store.folder(self.run_id).spans()
            if not path.is_file():
                continue
            text = path.read_text(errors="replace")
            if f'"name":"{sc.SPAN_GENERATE}"' in text:
                return
            self.steps_before_root = max(self.steps_before_root, text.count(STEP_SPAN_TEXT))

    def __enter__(self) -> _StoreWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def killed_run(args: argparse.Namespace, checks: Checks) -> dict[str, Any]:
    """``wan-otel run`` in a subprocess, SIGKILLed once 5 steps are on disk."""
    run_id = f"killed-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"
    store = RunStore(args.store)
    command = [sys.executable, "-m", "wan_otel", "run", "--preset", args.preset, "--steps",
               "1000", "--store", str(args.store), "--run-id", run_id, "--seed", "0",
               "--height", str(args.sync_height), "--width", str(args.sync_width),
               "--frames", str(args.sync_frames)]  # fmt: skip
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    child = subprocess.Popen(command, cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
    seen, deadline = 0, time.monotonic() + 240
    try:
        while seen < 5 and time.monotonic() < deadline and child.poll() is None:
            time.sleep(0.2)
            path = store.folder(run_id).spans()
            seen = path.read_text(errors="replace").count(STEP_SPAN_TEXT) if path.is_file() else 0
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait(60)
    stderr = child.stderr.read() if child.stderr else ""
    steps = [
        int(s.attributes[sc.DENOISE_STEP])  # type: ignore[arg-type]
        for s in store.read(run_id).spans
        if s.name == sc.SPAN_DENOISE_STEP
    ]
    checks.check("killed: SIGKILL", child.returncode == -signal.SIGKILL, child.returncode)
    checks.check(
        "killed: the steps before the kill are stored, in order",
        len(steps) >= 5 and sorted(steps) == list(range(len(steps))),
        f"{len(steps)} steps" + ("" if steps else f"; stderr: {stderr[-500:]}"),
    )
    report = subprocess.run(
        [sys.executable, "-m", "wan_otel", "report", "--run-id", run_id, "--store",
         str(args.store)], cwd=ROOT, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    checks.check("killed: the report says so", "status killed" in report.stdout, report.returncode)
    return {"run_id": run_id, "steps_stored": len(steps), "report_exit": report.returncode}


def _inspect_run(
    args: argparse.Namespace, run_id: str, offload: str, checks: Checks
) -> dict[str, Any]:
    data = RunStore(args.store).read(run_id)
    spans = data.spans
    root = next(s for s in spans if s.name == sc.SPAN_GENERATE)
    steps = sorted((s for s in spans if s.name == sc.SPAN_DENOISE_STEP), key=lambda s: s.start_ns)
    step_s = [(s.end_ns - s.start_ns) / 1e9 for s in steps]
    stages = {
        s.name: (s.end_ns - s.start_ns) / 1e9
        for s in spans
        if s.parent_span_id == root.span_id and s.name in sc.STAGE_SPANS
    }
    transfers = [s for s in spans if s.name == sc.SPAN_WEIGHT_TRANSFER]
    transfer_s = sum((s.end_ns - s.start_ns) / 1e9 for s in transfers)
    peak = max((int(s.attributes.get(sc.MEMORY_ALLOCATED_PEAK, 0)) for s in spans), default=0)  # type: ignore[arg-type]
    checks.check(f"run {offload}: {args.steps} step spans", len(steps) == args.steps, len(steps))
    experts = [str(s.attributes.get(sc.DENOISE_EXPERT)) for s in steps]
    if spec_for(args.preset).two_experts:
        (loop,) = [s for s in spans if s.name == sc.SPAN_DENOISE]
        switch = loop.attributes.get(sc.DENOISE_SWITCH_STEP)
        checks.check(
            f"run {offload}: both experts ran, the switch is on the loop",
            set(experts) == {"transformer", "transformer_2"} and isinstance(switch, int),
            f"experts {experts}, switch at step {switch}",
        )
    checks.check(
        f"run {offload}: run id on every span",
        all(s.attributes.get(sc.RUN_ID) == run_id for s in spans),
    )
    if not args.dry_run:
        uuid = str(root.attributes.get(sc.GPU_UUID, ""))
        checks.check(f"run {offload}: GPU UUID as NVML writes it", uuid.startswith("GPU-"), uuid)
        checks.check(
            f"run {offload}: CUDA event timing",
            all(s.attributes.get(sc.TIMING_SOURCE) == "cuda_event" for s in spans),
        )
        checks.check(
            f"run {offload}: allocator figures on every span",
            all(sc.MEMORY_ALLOCATED_PEAK in s.attributes for s in spans),
        )
        checks.check(
            f"run {offload}: GPU samples recorded",
            len(data.samples) > 0,
            f"{len(data.samples)} samples",
        )
        sample_uuids = sorted({sample.uuid for sample in data.samples})
        checks.check(
            f"run {offload}: span GPU UUID joins the samples", uuid in sample_uuids, sample_uuids
        )
    if offload != "none" and not args.dry_run:  # on a CPU nothing moves
        checks.check(
            f"run {offload}: transfer spans",
            len(transfers) > 0,
            f"{len(transfers)} spans, {transfer_s:.2f} s",
        )
    return {
        "total_s": (root.end_ns - root.start_ns) / 1e9,
        "stages_s": stages,
        "step_s_mean": statistics.fmean(step_s) if step_s else None,
        "step_s_first": step_s[0] if step_s else None,
        "transfer_spans": len(transfers),
        "transfer_s": transfer_s,
        "peak_allocated_gib": peak / 2**30,
        "samples": len(data.samples),
        "spans": len(spans),
    }  # fmt: skip


# -- 2. overhead, 3. syncs ------------------------------------------------------------------


def _step_timer() -> tuple[Callable[..., dict[str, Any]], Callable[[], list[float]]]:
    """A step callback recording a CUDA event per step end (no host sync), and a reader."""
    events: list[Any] = []

    def callback(pipe: Any, step: int, timestep: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
        if torch.cuda.is_available():
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            events.append(event)
        return kwargs

    def read() -> list[float]:
        if len(events) < 2:
            return []
        torch.cuda.synchronize()
        gaps = [a.elapsed_time(b) / 1e3 for a, b in itertools.pairwise(events)]
        events.clear()
        return gaps

    return callback, read


def overhead(args: argparse.Namespace, device: torch.device, checks: Checks) -> dict[str, Any]:
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    pipe = build_preset(args.preset, device=device, dtype=dtype).pipe
    pipe.set_progress_bar_config(disable=True)
    # The whole stack of `wan-otel run`: SDK providers, the run store behind a batch
    # processor (streamed spans), plus an in-memory copy to count what was made.
    exporter = InMemorySpanExporter()
    telemetry = setup_telemetry(
        TelemetryConfig(
            store=RunStore(args.store / "overhead"),
            otlp=False,
            span_processors=[SimpleSpanProcessor(exporter)],
        )
    )
    provider, meters = telemetry.tracer_provider, telemetry.meter_provider
    callback, read_steps = _step_timer()
    max_len = spec_for(args.preset).defaults.max_sequence_length

    def call(steps: int, height: int, width: int, frames: int, **extra: Any) -> float:
        if device.type == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        pipe(
            prompt=PROMPT,
            height=height,
            width=width,
            num_frames=frames,
            num_inference_steps=steps,
            guidance_scale=5.0,
            max_sequence_length=max_len,
            output_type="latent",
            generator=torch.Generator().manual_seed(0),
            **extra,
        )
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - started

    full = (args.height, args.width, args.frames)
    call(1, *full)  # warm-up: the first 5B forward at this size is slow (cold kernels)
    walls: dict[str, list[float]] = {"bare": [], "instrumented": []}
    steps_s: dict[str, list[float]] = {"bare": [], "instrumented": []}
    for _ in range(args.repeats):
        for mode in ("bare", "instrumented"):
            if mode == "instrumented":
                instrument(pipe, provider, meters)
            walls[mode].append(call(args.overhead_steps, *full, callback_on_step_end=callback))
            steps_s[mode].extend(read_steps())
            if mode == "instrumented":
                uninstrument(pipe)
    result: dict[str, Any] = {"steps_per_call": args.overhead_steps, "size": full}
    for mode in walls:
        result[f"{mode}_call_s"] = statistics.median(walls[mode])
        result[f"{mode}_gpu_step_s"] = statistics.median(steps_s[mode]) if steps_s[mode] else None
    delta = result["instrumented_call_s"] - result["bare_call_s"]
    result["added_per_call_s"] = delta
    result["added_per_step_s"] = delta / args.overhead_steps
    result["added_pct"] = 100.0 * delta / result["bare_call_s"]
    spans_made = len(exporter.get_finished_spans())
    checks.check("overhead: instrumented calls made spans", spans_made > 0, spans_made)
    if device.type == "cuda":
        checks.check(
            "overhead: <= 0.5% of a call",
            result["added_pct"] <= 0.5,
            f"{result['added_pct']:.3f} %",
        )
        result["syncs"] = _syncs(pipe, provider, call, args, checks)
    telemetry.shutdown()
    return result  # the pipeline goes with this frame; main frees the GPU memory


def _syncs(
    pipe: Any,
    provider: TracerProvider,
    call: Callable[..., float],
    args: argparse.Namespace,
    checks: Checks,
) -> dict[str, Any]:
    small = (args.sync_height, args.sync_width, args.sync_frames)

    def count(steps: int) -> int:
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("warn")
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                call(steps, *small)
        finally:
            torch.cuda.set_sync_debug_mode(0)
        return sum("synchroniz" in str(w.message) for w in caught)

    n = args.sync_steps
    call(1, *small)  # warm-up at this size
    bare = (count(n), count(2 * n))
    instrument(pipe, provider)
    try:
        count(1)
        observed = (count(n), count(2 * n))
    finally:
        uninstrument(pipe)
    added = ((observed[1] - observed[0]) - (bare[1] - bare[0])) / n
    checks.check(
        "syncs: none added per step",
        added == 0,
        f"bare {bare}, instrumented {observed} at {n}/{2 * n} steps",
    )
    # Stricter: sync debug mode "error" from the end of step 0 to the end of the last step.
    strict_bare = _loop_sync_free(pipe, call, small, n)
    strict_observed = None
    if strict_bare:
        instrument(pipe, provider)
        try:
            strict_observed = _loop_sync_free(pipe, call, small, n)
        finally:
            uninstrument(pipe)
        checks.check("syncs: instrumented loop runs under sync-debug 'error'", strict_observed)
    return {
        "steps": [n, 2 * n],
        "bare": bare,
        "instrumented": observed,
        "added_per_step": added,
        "added_per_call": observed[0] - bare[0],
        "loop_sync_free_bare": strict_bare,
        "loop_sync_free_instrumented": strict_observed,
    }


def _loop_sync_free(
    pipe: Any, call: Callable[..., float], size: tuple[int, int, int], n: int
) -> bool:
    def strict(p: Any, step: int, timestep: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
        torch.cuda.set_sync_debug_mode("error" if step < n - 1 else 0)
        return kwargs

    try:
        call(n, *size, callback_on_step_end=strict)
    except RuntimeError as exc:
        if "synchronizing" not in str(exc):
            raise
        print(f"  (loop not sync-free: {exc})")
        return False
    finally:
        torch.cuda.set_sync_debug_mode(0)
    return True


# -- main -----------------------------------------------------------------------------------


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--store", type=Path, required=True, help="run store for the two runs")
    parser.add_argument("--video-dir", type=Path, default=Path("/tmp/wan-otel-videos"))
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--offloads", nargs="+", default=["none", "model"])
    parser.add_argument("--overhead-steps", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--sync-steps", type=int, default=4)
    parser.add_argument("--skip-runs", action="store_true")
    parser.add_argument("--skip-overhead", action="store_true")
    parser.add_argument("--skip-killed", action="store_true")
    parser.add_argument(
        "--preset", default=TI2V_5B_RANDOM, help="full-size preset (t2v-a14b-random: two experts)"
    )
    parser.add_argument("--dry-run", action="store_true", help="the preset's toy twin on the CPU")
    args = parser.parse_args(argv)
    two = spec_for(args.preset).two_experts
    if args.dry_run:
        args.preset, args.device = (TINY_A14B if two else TINY), "cpu"
    else:
        args.device = None
    defaults = spec_for(args.preset).defaults
    args.height, args.width, args.frames = defaults.height, defaults.width, defaults.frames
    args.sync_height, args.sync_width, args.sync_frames = (
        (32, 32, 9) if args.dry_run else (256, 448, 17)
    )
    if args.dry_run:
        args.steps, args.overhead_steps, args.repeats = min(args.steps, 3), 2, 2
        args.offloads = ["group" if o in ("model", "sequential") else o for o in args.offloads]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type != "cuda" and not args.dry_run:
        print("no CUDA device: use --dry-run to check the script on a CPU", file=sys.stderr)
        return 2
    checks = Checks()
    report: dict[str, Any] = {
        "device": torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "preset": args.preset,
    }
    phases: list[tuple[str, Callable[[], Any]]] = []
    if not args.skip_runs:
        phases.append(("runs", lambda: stored_runs(args, checks)))
    if not args.skip_killed:
        phases.append(("killed", lambda: killed_run(args, checks)))
    if not args.skip_overhead:
        phases.append(("overhead", lambda: overhead(args, device, checks)))
    for name, phase in phases:
        started = time.monotonic()
        try:
            report[name] = phase()
        except Exception as exc:
            traceback.print_exc()
            checks.check(f"{name}: completed", False, f"{type(exc).__name__}: {exc}")
            report[name] = {"error": f"{type(exc).__name__}: {exc}"}
        report[f"{name}_wall_s"] = time.monotonic() - started
        _free_gpu()
    report["checks"] = checks.results
    _print_table(report)
    out = os.environ.get("OUT")
    if out:
        path = Path(out) / "pipeline_gpu_check.json"
        path.write_text(json.dumps(report, indent=2, sort_keys=True, default=str) + "\n")
        print(f"\nwrote {path}")
    if checks.failed:
        print(f"\nFAILED: {', '.join(checks.failed)}")
        return 1
    return 0


def _print_table(report: dict[str, Any]) -> None:
    print(f"\n== {report['device']} | torch {report['torch']} | {report['preset']}")
    runs = report.get("runs")
    if isinstance(runs, list):
        columns = ("total", "init", "text", "denoise", "step", "vae", "transfer", "peak GiB")
        print(f"{'offload':<8}" + "".join(f"{c:>10}" for c in columns))
        for r in runs:
            stages = r.get("stages_s", {})
            values = (
                r.get("total_s"),
                stages.get(sc.SPAN_INITIALIZE),
                stages.get(sc.SPAN_TEXT_ENCODE),
                stages.get(sc.SPAN_DENOISE),
                r.get("step_s_mean"),
                stages.get(sc.SPAN_VAE_DECODE),
                r.get("transfer_s"),
                r.get("peak_allocated_gib"),
            )
            cells = "".join(f"{v:10.3f}" if v is not None else f"{'-':>10}" for v in values)
            print(f"{r['offload']:<8}{cells}")
        print("(seconds from the stored spans; step = mean denoising step)")
    over = report.get("overhead")
    if isinstance(over, dict) and "bare_call_s" in over:
        print(f"\noverhead ({over['steps_per_call']} steps, latents only, median of calls):")
        print(
            f"  call  bare {over['bare_call_s']:.3f} s | instrumented "
            f"{over['instrumented_call_s']:.3f} s | +{over['added_per_call_s'] * 1e3:.1f} ms "
            f"({over['added_pct']:.3f} %)"
        )
        if over.get("bare_gpu_step_s"):
            print(
                f"  step  bare {over['bare_gpu_step_s']:.4f} s | instrumented "
                f"{over['instrumented_gpu_step_s']:.4f} s (GPU time, CUDA events)"
            )
        syncs = over.get("syncs")
        if syncs:
            print(
                f"  host syncs added per step: {syncs['added_per_step']} "
                f"(per call: {syncs['added_per_call']})"
            )


if __name__ == "__main__":
    sys.exit(main())
