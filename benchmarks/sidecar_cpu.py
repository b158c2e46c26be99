"""Sidecar CPU with a fake backend calibrated to what NVML calls cost on real GPUs.

Each configuration runs the exporter as the CLI wires it (sampler thread, snapshot collector,
the exposition encoded once per sample, HTTP server) in a process of its own, unscraped, and
reads that process's CPU time over ``--seconds``: what the issue measured on one H200 (idle, no
scrapes). The fake backend burns, per read and outside the interpreter lock as ctypes does:

- 50 us per plain call (one H200, `benchmarks/sidecar_gpu.py`: memory info 80 us, power
  37-44 us, temperature 34-41 us; the H100 probe's 3 us was a bare-metal figure);
- 200 us per GPM sample (the rest of a whole backend read without the energy counter, 745 us
  median on the H200, after ten plain calls);
- 3.3 ms per energy counter read (the H200 median, 3.3-3.5 ms).

One GPU in the configurations the H200 was measured in, to see whether the fake predicts the
GPU; then 8 GPUs, which no machine here has.

    python benchmarks/sidecar_cpu.py [--seconds 30] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path

from proc_stats import cpu_seconds, rss_mib

PLAIN_CALL_S = 50e-6
GPM_SAMPLE_S = 200e-6
ENERGY_READ_S = 3.3e-3

H200_MEASURED_PCT = {
    (0.5, 0.0, 0.0): "1.1-1.3",
    (0.5, 5.0, 0.0): "0.43-0.60",
    (1.0, 5.0, 0.0): "0.30",
}
"""One H200, idle, no scrapes, state gauges read every sample (`benchmarks/sidecar_gpu.py`,
three runs, 2026-11-29)."""

CONFIGS = (
    # (GPUs, sample interval s, energy interval s, gauge interval s)
    (1, 0.5, 0.0, 0.0),
    (1, 0.5, 5.0, 0.0),
    (1, 1.0, 5.0, 0.0),
    (1, 0.5, 5.0, 2.0),
    (8, 0.5, 5.0, 0.0),
    (8, 0.5, 5.0, 2.0),
)


def serve(
    gpus: int, interval_s: float, energy_interval_s: float, gauge_s: float, port: int
) -> None:
    from prometheus_client import CollectorRegistry

    from wan_otel.exporter.collector import SnapshotCollector
    from wan_otel.exporter.exposition import Exposition
    from wan_otel.exporter.fake import FakeBackend, FakeGpu
    from wan_otel.exporter.sampler import Sampler
    from wan_otel.exporter.server import ExporterServer, make_app

    backend = FakeBackend(
        [FakeGpu() for _ in range(gpus)],
        call_cost_s=PLAIN_CALL_S,
        gpm_cost_s=GPM_SAMPLE_S,
        energy_cost_s=ENERGY_READ_S,
        energy_interval_s=energy_interval_s,
        gauge_interval_s=gauge_s,
    )
    registry = CollectorRegistry()
    exposition = Exposition(registry)
    sampler = Sampler(backend, interval_s, on_sample=lambda _snapshot: exposition.prepare())
    registry.register(SnapshotCollector(sampler, hostname="bench"))
    sampler.start()
    server = ExporterServer(make_app(exposition, lambda: True), "127.0.0.1", port)
    server.start()
    signal.sigwait({signal.SIGTERM})
    server.stop()
    sampler.close()


def measure(
    gpus: int, interval_s: float, energy_s: float, gauge_s: float, seconds: float
) -> dict[str, float]:
    args = [str(gpus), str(interval_s), str(energy_s), str(gauge_s)]
    child = subprocess.Popen([sys.executable, __file__, "--serve", *args], cwd="/")
    try:
        time.sleep(5.0)  # imports done, first samples taken
        cpu0, t0 = cpu_seconds(child.pid), time.monotonic()
        time.sleep(seconds)
        cpu_pct = 100 * (cpu_seconds(child.pid) - cpu0) / (time.monotonic() - t0)
        rss = rss_mib(child.pid)
    finally:
        child.send_signal(signal.SIGTERM)
        child.wait(timeout=10)
    return {
        "gpus": gpus,
        "interval_s": interval_s,
        "energy_interval_s": energy_s,
        "gauge_interval_s": gauge_s,
        "cpu_pct": round(cpu_pct, 2),
        "rss_mib": round(rss, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="measured time per config")
    parser.add_argument("--json", type=Path, help="write the results here too")
    parser.add_argument("--serve", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        gpus, interval, energy, gauges = args.serve
        serve(int(gpus), float(interval), float(energy), float(gauges), 0)
        return 0
    results = [measure(g, i, e, s, args.seconds) for g, i, e, s in CONFIGS]
    print(
        f"fake costs: plain call {PLAIN_CALL_S * 1e6:.0f} us, GPM sample "
        f"{GPM_SAMPLE_S * 1e6:.0f} us, energy read {ENERGY_READ_S * 1e3:.1f} ms; "
        f"{args.seconds:.0f} s unscraped per configuration; python {platform.python_version()}"
    )
    print(
        "| GPUs | interval s | energy read every | gauges read every | CPU % of a core "
        "| H200 measured % | RSS MiB |"
    )
    print("|---:|---:|---|---|---:|---:|---:|")
    for r in results:
        every = "sample" if r["energy_interval_s"] == 0 else f"{r['energy_interval_s']:g} s"
        gauges = "sample" if r["gauge_interval_s"] == 0 else f"{r['gauge_interval_s']:g} s"
        key = (r["interval_s"], r["energy_interval_s"], r["gauge_interval_s"])
        measured = H200_MEASURED_PCT.get(key) if r["gpus"] == 1 else None
        cells = [
            str(r["gpus"]),
            f"{r['interval_s']:g}",
            every,
            gauges,
            f"{r['cpu_pct']:.2f}",
            measured or "",
            f"{r['rss_mib']:.1f}",
        ]
        print("| " + " | ".join(cells) + " |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
