"""Where the whole stack's time per call goes on the GPU: which part of a call grows, which
piece of the stack makes it grow, and what each piece costs on the host.

1. Segments. Bare diffusers and the stack in variants, interleaved round by round (the order
   rotates), on one pipeline object. CUDA events before the call, at each step's end (step
   callback) and after it cut each call into ``start`` (before the call to the end of step 0:
   prompt encoding, latents, the first step), ``steps`` (the later steps) and ``end`` (the
   last step's end to the call's return). The median of paired differences per segment says
   where the added time is. Variants: ``stack`` (``run_scope`` as ``wan-otel run``: store,
   span stream, metrics, GPU sampler at 0.1 s), ``no_sampler`` (the same without the GPU
   sampler), ``no_allocator`` (without allocator figures at span boundaries).
2. Host accounting of stack calls: the calling thread's time inside each guarded piece of
   our code (exclusive), the CPU time each thread of the process used during the call, and a
   cProfile of one call (the calling thread).
3. The GPU sampler's hold on the interpreter lock: a thread that only reads the clock counts
   the time it was kept from running (gaps over 20 us), sampler on and off.

    python benchmarks/call_host_cost.py [--rounds 8] [--steps 2]
    python benchmarks/call_host_cost.py --dry-run     # the tiny preset on the CPU
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import cProfile
import io
import itertools
import json
import os
import pstats
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from unittest import mock

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from overhead import bootstrap, build_pipe, in_run_scope, latent_call, set_size  # noqa: E402

from wan_otel.pipeline import instrument, uninstrument  # noqa: E402
from wan_otel.pipeline.instrumentation.guard import Guard  # noqa: E402
from wan_otel.pipeline.runner import run_scope as run_scope_module  # noqa: E402
from wan_otel.pipeline.runner.telemetry import TelemetryConfig, setup_telemetry  # noqa: E402
from wan_otel.store import RunStore  # noqa: E402

VARIANTS = ("stack", "no_sampler", "no_allocator")
SEGMENTS = ("start", "steps", "end", "call")


class Calls:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.pipe, self.device = build_pipe(args)
        self.cuda = self.device.type == "cuda"
        self.marks: list[Any] = []
        self.store = RunStore(Path(tempfile.mkdtemp()) / "store")
        self.telemetry = setup_telemetry(TelemetryConfig(store=self.store, otlp=False))

    def _mark(self) -> Any:
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            return event
        return time.perf_counter()

    def _callback(self, p: Any, step: int, t: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
        self.marks.append(self._mark())
        return kwargs

    def _seconds(self, a: Any, b: Any) -> float:
        return a.elapsed_time(b) / 1e3 if self.cuda else b - a

    def timed(self) -> dict[str, float]:
        """One call cut into segments (seconds)."""
        if self.cuda:
            torch.cuda.synchronize()
        self.marks = [self._mark()]
        latent_call(self.pipe, self.args, self._callback)
        self.marks.append(self._mark())
        if self.cuda:
            torch.cuda.synchronize()
        m = self.marks
        return {
            "start": self._seconds(m[0], m[1]),
            "steps": self._seconds(m[1], m[-2]),
            "end": self._seconds(m[-2], m[-1]),
            "call": self._seconds(m[0], m[-1]),
        }

    @contextlib.contextmanager
    def stack(self, variant: str) -> Iterator[None]:
        """Within the block, the pipeline's calls run in a run scope as ``wan-otel run``'s."""
        telemetry = self.telemetry
        no_allocator = (
            mock.patch.object(run_scope_module, "memory_for", lambda device: None)
            if variant == "no_allocator"
            else contextlib.nullcontext()
        )
        instrument(self.pipe, telemetry.tracer_provider, telemetry.meter_provider)
        try:
            with no_allocator, in_run_scope(self.pipe, self.device, telemetry, self.store,
                                            samples=variant != "no_sampler"):  # fmt: skip
                yield
        finally:
            uninstrument(self.pipe)

    def call(self, mode: str) -> dict[str, float]:
        if mode == "bare":
            return self.timed()
        with self.stack(mode):
            return self.timed()


def segments(calls: Calls, rounds: int) -> dict[str, Any]:
    modes = ("bare", *VARIANTS)
    seen: dict[str, list[dict[str, float]]] = {m: [] for m in modes}
    for index in range(rounds):
        shift = index % len(modes)
        for mode in modes[shift:] + modes[:shift]:
            seen[mode].append(calls.call(mode))
        print(f"  round {index + 1}/{rounds}: " + ", ".join(
            f"{m} {seen[m][-1]['call']:.4f}" for m in modes), flush=True)  # fmt: skip
    out: dict[str, Any] = {"rounds": rounds, "bare_s": {}}
    for segment in SEGMENTS:
        out["bare_s"][segment] = statistics.median(c[segment] for c in seen["bare"])
    for variant in VARIANTS:
        added = {}
        for segment in SEGMENTS:
            diffs = [v[segment] - b[segment] for v, b in zip(seen[variant], seen["bare"])]
            low, high = bootstrap(diffs, rounds=5000)
            added[segment] = {"median_ms": 1e3 * statistics.median(diffs),
                              "ci95_ms": [1e3 * low, 1e3 * high]}  # fmt: skip
        out[variant] = added
    out["raw"] = seen
    return out


class GuardTimer:
    """The calling thread's exclusive time inside each ``Guard.call`` site."""

    def __init__(self) -> None:
        self.seconds: collections.Counter[str] = collections.Counter()
        self.counts: collections.Counter[str] = collections.Counter()
        self._thread = threading.get_ident()
        self._stack: list[list[float]] = []

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        original = Guard.call
        timer = self

        def call(guard: Guard, fn: Callable[..., Any], *args: object) -> Any:
            if threading.get_ident() != timer._thread:
                return original(guard, fn, *args)
            frame = [time.perf_counter(), 0.0]  # start, time in nested sites
            timer._stack.append(frame)
            try:
                return original(guard, fn, *args)
            finally:
                timer._stack.pop()
                spent = time.perf_counter() - frame[0]
                site = getattr(fn, "__qualname__", type(fn).__qualname__)
                timer.seconds[site] += spent - frame[1]
                timer.counts[site] += 1
                if timer._stack:
                    timer._stack[-1][1] += spent

        Guard.call = call  # type: ignore[method-assign]
        try:
            yield
        finally:
            Guard.call = original  # type: ignore[method-assign]


def _thread_cpu() -> dict[str, float]:
    out: dict[str, float] = {}
    for thread in threading.enumerate():
        if thread.ident is None:
            continue
        with contextlib.suppress(OSError, OverflowError):
            clock = time.pthread_getcpuclockid(thread.ident)
            out[f"{thread.name}#{thread.ident}"] = time.clock_gettime(clock)
    return out


def host_accounting(calls: Calls, count: int) -> dict[str, Any]:
    timer = GuardTimer()
    cpu: collections.Counter[str] = collections.Counter()
    walls = []
    with timer.installed():
        for _ in range(count):
            with calls.stack("stack"):
                before = _thread_cpu()
                walls.append(calls.timed()["call"])
                after = _thread_cpu()
            for name, value in after.items():
                cpu[name.split("#")[0]] += value - before.get(name, 0.0)
    per_call = {site: 1e3 * s / count for site, s in timer.seconds.most_common()}
    profile = cProfile.Profile()
    with calls.stack("stack"):
        profile.enable()
        calls.timed()
        profile.disable()
    text = io.StringIO()
    pstats.Stats(profile, stream=text).sort_stats("tottime").print_stats(30)
    return {
        "calls": count,
        "call_s_median": statistics.median(walls),
        "guarded_ms_per_call": per_call,
        "guarded_counts_per_call": {k: v / count for k, v in timer.counts.items()},
        "guarded_total_ms_per_call": sum(per_call.values()),
        "thread_cpu_ms_per_call": {k: 1e3 * v / count for k, v in cpu.most_common()},
        "cprofile_top_tottime": text.getvalue(),
    }


def gil_probe(calls: Calls, seconds: float) -> dict[str, Any]:
    """The main thread reads the clock in a loop: gaps over 20 us are time another thread
    (or the kernel) held it off. Sampler on (as in a run) against off."""
    from wan_otel.pipeline.runner.run_scope import gpu_samples

    def probe() -> dict[str, float]:
        gaps, end = [], time.perf_counter() + seconds
        last = time.perf_counter()
        while last < end:
            now = time.perf_counter()
            if now - last > 20e-6:
                gaps.append(now - last)
            last = now
        return {"gaps": len(gaps), "held_ms_per_s": 1e3 * sum(gaps) / seconds,
                "max_ms": 1e3 * max(gaps, default=0.0)}  # fmt: skip

    out = {"off": probe()}
    path = Path(tempfile.mkdtemp()) / "gpu_samples.jsonl"
    with gpu_samples(calls.device, path):
        time.sleep(0.3)
        out["sampler_0.1s"] = probe()
    out["off_again"] = probe()
    return out


def boundary_costs(calls: Calls, repeats: int = 2000) -> dict[str, float]:
    """Microseconds each piece of a span boundary takes on the calling thread (GPU idle)."""
    if not calls.cuda:
        return {}
    from wan_otel.pipeline.instrumentation.generation import Generation
    from wan_otel.pipeline.instrumentation.memory import memory_for
    from wan_otel.pipeline.instrumentation.timing import timeline_for

    device = calls.device
    generation = Generation(timeline_for(device), run_id="boundaries",
                            memory=memory_for(device), nvtx=True)  # fmt: skip

    def open_close() -> None:
        generation.close(generation.open("wan.boundary"))

    pieces: dict[str, Callable[[], Any]] = {
        "event create + record": lambda: torch.cuda.Event(enable_timing=True).record(),
        "memory_stats_as_nested_dict": lambda: torch.cuda.memory_stats_as_nested_dict(device),
        "reset_peak_memory_stats": lambda: torch.cuda.reset_peak_memory_stats(device),
        "nvtx push + pop": lambda: (torch.cuda.nvtx.range_push("x"), torch.cuda.nvtx.range_pop()),
        "record open + close (two boundaries)": open_close,
    }
    out = {}
    for name, piece in pieces.items():
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            piece()
            times.append(time.perf_counter() - started)
        out[name] = round(1e6 * statistics.median(times), 2)
    generation.finish()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--accounting-calls", type=int, default=3)
    parser.add_argument("--probe-seconds", type=float, default=5.0)
    parser.add_argument("--dry-run", action="store_true")
    args = parser.parse_args()
    set_size(args)
    calls = Calls(args)
    calls.call("bare")  # warm-up: cold kernels, the allocator
    calls.call("stack")
    result: dict[str, Any] = {
        "device": torch.cuda.get_device_name(0) if calls.cuda else "cpu",
        "torch": torch.__version__,
        "steps_per_call": args.steps,
    }
    result["boundaries_us"] = boundary_costs(calls)
    print("boundary pieces, us:", json.dumps(result["boundaries_us"]), flush=True)
    result["segments"] = segments(calls, args.rounds)
    result["host"] = host_accounting(calls, args.accounting_calls)
    result["gil"] = gil_probe(calls, args.probe_seconds)
    calls.telemetry.shutdown()
    out = os.environ.get("OUT")
    if out:
        (Path(out) / "call_host_cost.json").write_text(json.dumps(result, indent=2) + "\n")
    _print(result)
    return 0


def _print(result: dict[str, Any]) -> None:
    host = result["host"]
    print(host["cprofile_top_tottime"][:6000])
    print("\nguarded sites, ms per call (calling thread, exclusive):")
    for site, ms in itertools.islice(host["guarded_ms_per_call"].items(), 25):
        print(f"  {ms:8.3f}  x{host['guarded_counts_per_call'][site]:6.0f}  {site}")
    print(f"  total {host['guarded_total_ms_per_call']:.3f} ms; call {host['call_s_median']:.4f} s")
    print("thread CPU ms per call:", json.dumps(host["thread_cpu_ms_per_call"]))
    print("GIL probe:", json.dumps(result["gil"]))
    seg = result["segments"]
    print(f"\nsegments (bare s): {json.dumps(seg['bare_s'])}")
    print(f"{'variant':14}" + "".join(f"{s:>26}" for s in SEGMENTS))
    for variant in VARIANTS:
        cells = "".join(
            f"{seg[variant][s]['median_ms']:+9.2f} [{seg[variant][s]['ci95_ms'][0]:+6.1f},"
            f"{seg[variant][s]['ci95_ms'][1]:+6.1f}]"
            for s in SEGMENTS
        )
        print(f"{variant:14}{cells}")


if __name__ == "__main__":
    sys.exit(main())
