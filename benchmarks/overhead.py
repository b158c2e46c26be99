"""What the whole ``wan-otel run`` stack costs a generation, with a confidence interval.

The same pipeline object is called bare and inside the whole stack, paired and interleaved
(bare, stack, bare, stack, ...; the order inside a pair alternates), at least 20 pairs: the
stack is ``run_scope`` exactly as ``wan-otel run`` uses it (the SDK providers, the run store
behind its batch processor, the span stream's thread, the generation metrics, the in-process
GPU sampler at 0.1 s) with the call under ``use_generation``. Each pair gives a difference;
the report is the median of the paired differences and a bootstrap 95 % interval of that
median, per call and per step (GPU time per step from CUDA events recorded by a step
callback). A second configuration adds OTLP export to a local HTTP endpoint (a process of
its own). The time only the scope takes around a run (its folder, summary, sampler start
and stop) is reported apart.

    python benchmarks/overhead.py --pairs 20 [--otlp-pairs 8] [--steps 2]   # --pairs 0: OTLP only
    python benchmarks/overhead.py --dry-run      # the tiny preset on the CPU, to check it
"""

from __future__ import annotations

import argparse
import contextlib
import http.server
import itertools
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from wan_otel import __version__  # noqa: E402
from wan_otel.pipeline import instrument, uninstrument, use_generation  # noqa: E402
from wan_otel.pipeline.instrumentation.generation_metrics import PipelineMetrics  # noqa: E402
from wan_otel.pipeline.instrumentation.guard import Guard  # noqa: E402
from wan_otel.pipeline.instrumentation.instrument import TRACER_NAME  # noqa: E402
from wan_otel.pipeline.instrumentation.span_stream import SpanStream  # noqa: E402
from wan_otel.pipeline.runner.presets import build_preset  # noqa: E402
from wan_otel.pipeline.runner.run_scope import RunPlan, run_scope  # noqa: E402
from wan_otel.pipeline.runner.telemetry import TelemetryConfig, setup_telemetry  # noqa: E402
from wan_otel.store import RunStore, new_run_id  # noqa: E402

PROMPT = "A red fox trots through fresh snow at dawn, cinematic."


class _Sink(http.server.BaseHTTPRequestHandler):
    """A local OTLP/HTTP endpoint that accepts everything."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        return None


def bootstrap(diffs: list[float], rounds: int = 10_000, seed: int = 0) -> tuple[float, float]:
    """95 % interval of the median of ``diffs`` by resampling pairs."""
    rng = random.Random(seed)
    medians = sorted(statistics.median(rng.choices(diffs, k=len(diffs))) for _ in range(rounds))
    return medians[int(0.025 * rounds)], medians[int(0.975 * rounds) - 1]


def set_size(args: argparse.Namespace) -> None:
    """The issue's workload (TI2V-5B random at 1280x704, 121 frames) on the GPU; the tiny
    preset with ``--dry-run``, to check a script on the CPU."""
    args.preset = "tiny" if args.dry_run else "ti2v-5b-random"
    args.height, args.width, args.frames = (32, 32, 9) if args.dry_run else (704, 1280, 121)
    args.max_len = 16 if args.dry_run else 512


def build_pipe(args: argparse.Namespace) -> tuple[Any, torch.device]:
    device = torch.device("cpu" if args.dry_run else "cuda")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    torch.manual_seed(0)
    pipe = build_preset(args.preset, device=device, dtype=dtype).pipe
    pipe.set_progress_bar_config(disable=True)
    return pipe, device


def latent_call(pipe: Any, args: argparse.Namespace, callback: Callable[..., Any]) -> None:
    """One call at ``args``' size to latents (no decode), ``callback`` at each step's end."""
    pipe(prompt=PROMPT, height=args.height, width=args.width, num_frames=args.frames,
         num_inference_steps=args.steps, guidance_scale=5.0, output_type="latent",
         max_sequence_length=args.max_len, generator=torch.Generator().manual_seed(0),
         callback_on_step_end=callback)  # fmt: skip


@contextlib.contextmanager
def in_run_scope(
    pipe: Any, device: torch.device, telemetry: Any, store: RunStore, *, samples: bool = True
) -> Iterator[None]:
    """Within the block, ``pipe``'s calls run in a run scope exactly as ``wan-otel run``'s
    (``samples``: with the in-process GPU sampler). ``pipe`` must be instrumented."""
    metrics = PipelineMetrics(telemetry.meter_provider)
    plan = RunPlan(new_run_id(), device, store, records_samples=samples)
    stream = SpanStream(telemetry.tracer_provider.get_tracer(TRACER_NAME, __version__))
    scope = run_scope(
        plan,
        stream,
        guard=Guard(metrics.instrumentation_error),
        flush=telemetry.flush_store,
        metrics=metrics,
    )
    with scope as generation, use_generation(pipe, generation):
        yield


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.pipe, self.device = build_pipe(args)
        self.cuda = self.device.type == "cuda"
        self.events: list[Any] = []

    def _callback(self, p: Any, step: int, t: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            self.events.append(event)
        return kwargs

    def _call(self) -> None:
        latent_call(self.pipe, self.args, self._callback)

    def _timed(self, body: Callable[[], None]) -> tuple[float, list[float]]:
        self.events.clear()
        if self.cuda:
            torch.cuda.synchronize()
        started = time.perf_counter()
        body()
        if self.cuda:
            torch.cuda.synchronize()
        wall = time.perf_counter() - started
        steps = [a.elapsed_time(b) / 1e3 for a, b in itertools.pairwise(self.events)]
        return wall, steps

    def bare(self) -> tuple[float, list[float], float]:
        wall, steps = self._timed(self._call)
        return wall, steps, 0.0

    def stack(self, telemetry: Any, store: RunStore) -> tuple[float, list[float], float]:
        """One call inside the run scope, as ``wan-otel run`` does it; also the scope's own time."""
        outer = time.perf_counter()
        with in_run_scope(self.pipe, self.device, telemetry, store):
            wall, steps = self._timed(self._call)
        return wall, steps, time.perf_counter() - outer - wall

    def pairs(self, count: int, telemetry: Any, store: RunStore) -> dict[str, Any]:
        instrument(self.pipe, telemetry.tracer_provider, telemetry.meter_provider)
        uninstrument(self.pipe)  # the stack instruments inside; here only warm its code paths
        instrument(self.pipe, telemetry.tracer_provider, telemetry.meter_provider)
        bare_walls, stack_walls, bare_steps, stack_steps, scopes = [], [], [], [], []
        try:
            self.stack(telemetry, store)  # warm-up of the stack's own code
            for index in range(count):
                order = ("bare", "stack") if index % 2 == 0 else ("stack", "bare")
                for mode in order:
                    if mode == "bare":
                        uninstrument(self.pipe)
                        wall, steps, _ = self.bare()
                        bare_walls.append(wall)
                        bare_steps.append(steps)
                        instrument(self.pipe, telemetry.tracer_provider, telemetry.meter_provider)
                    else:
                        wall, steps, scope = self.stack(telemetry, store)
                        stack_walls.append(wall)
                        stack_steps.append(steps)
                        scopes.append(scope)
                print(f"  pair {index + 1}/{count}: bare {bare_walls[-1]:.4f} s, "
                      f"stack {stack_walls[-1]:.4f} s", flush=True)  # fmt: skip
        finally:
            uninstrument(self.pipe)
        return _summary(bare_walls, stack_walls, bare_steps, stack_steps, scopes)


def _summary(
    bare: list[float],
    stack: list[float],
    bare_steps: list[list[float]],
    stack_steps: list[list[float]],
    scopes: list[float],
) -> dict[str, Any]:
    diffs = [s - b for s, b in zip(stack, bare, strict=True)]
    low, high = bootstrap(diffs)
    base = statistics.median(bare)
    out: dict[str, Any] = {
        "pairs": len(diffs),
        "bare_call_s_median": base,
        "stack_call_s_median": statistics.median(stack),
        "added_call_s_median": statistics.median(diffs),
        "added_call_pct_median": 100 * statistics.median(diffs) / base,
        "added_call_pct_ci95": [100 * low / base, 100 * high / base],
        "scope_s_median": statistics.median(scopes) if scopes else None,
    }
    step_diffs = [
        statistics.fmean(s) - statistics.fmean(b)
        for s, b in zip(stack_steps, bare_steps, strict=True)
        if s and b
    ]
    if step_diffs:
        step_base = statistics.median(statistics.fmean(b) for b in bare_steps if b)
        low, high = bootstrap(step_diffs)
        out["bare_step_s_median"] = step_base
        out["added_step_pct_median"] = 100 * statistics.median(step_diffs) / step_base
        out["added_step_pct_ci95"] = [100 * low / step_base, 100 * high / step_base]
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=20)
    parser.add_argument("--otlp-pairs", type=int, default=8)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--dry-run", action="store_true")
    parser.add_argument("--sink", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.sink:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
        print(server.server_port, flush=True)
        server.serve_forever()
        return 0
    set_size(args)
    if args.dry_run:
        args.pairs, args.otlp_pairs = min(args.pairs, 4), min(args.otlp_pairs, 2)
    bench = Bench(args)
    bench.bare()  # warm-up: first calls at this size are slow (cold kernels, allocator)
    result: dict[str, Any] = {
        "device": torch.cuda.get_device_name(0) if bench.cuda else "cpu",
        "torch": torch.__version__,
        "preset": args.preset,
        "size": [args.width, args.height, args.frames],
        "steps_per_call": args.steps,
    }
    with tempfile.TemporaryDirectory() as folder:
        store = RunStore(Path(folder) / "store")
        telemetry = setup_telemetry(TelemetryConfig(store=store, otlp=False))
        if args.pairs:
            result["stack"] = bench.pairs(args.pairs, telemetry, store)
        telemetry.shutdown()
        if args.otlp_pairs:
            # The endpoint in a process of its own, as a Collector is: in this one, its
            # request handling would take the interpreter lock from the calls measured.
            sink = subprocess.Popen([sys.executable, __file__, "--sink"], stdout=subprocess.PIPE)
            try:
                port = int(sink.stdout.readline()) if sink.stdout else 0
                os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = f"http://127.0.0.1:{port}"
                telemetry = setup_telemetry(TelemetryConfig(store=store))
                result["stack_otlp"] = bench.pairs(args.otlp_pairs, telemetry, store)
                telemetry.shutdown()
            finally:
                sink.terminate()
                sink.wait(10)
    print(json.dumps(result, indent=2))
    out = os.environ.get("OUT")
    if out:
        (Path(out) / "overhead.json").write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
