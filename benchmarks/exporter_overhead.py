"""Exporter overhead: the snapshot exporter next to a naive one that reads the GPUs on every scrape.

Both serve 8 fake GPUs through the same collector and HTTP server; the only difference is when
the backend is read. The fake backend spends CPU like NVML does (busy-wait, since NVML calls are
ioctls): 3 us per plain call (h100-probe.md: memory info + utilization together took 6 us) and
39 us per GPM sample (h100-probe.md: alloc + get + free). A third exporter adds what
nvidia_gpu_exporter's ``--collect.pcie-throughput`` costs: ``nvmlDeviceGetPcieThroughput``
sleeps 20 ms per direction per GPU (gpu_exporters.md), modelled as a sleep.

Each exporter runs in its own process. Measured per exporter: CPU (percent of one core) while
idle (no scrapes) and while scraped 5 times a second, RSS, and /metrics latency (p50, p99)
over those scrapes, from a fresh connection each time as Prometheus' HTTP/1.0 peers see it.

    python benchmarks/exporter_overhead.py [--seconds 30] [--json out.json]
"""

from __future__ import annotations

import argparse
import http.client
import json
import platform
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from proc_stats import cpu_seconds, rss_mib

GPUS = 8
INTERVAL_S = 0.5
CALL_COST_S = 3e-6
GPM_COST_S = 39e-6
PCIE_SLEEP_S = 0.040  # two 20 ms windows per GPU

MODES = ("snapshot", "naive", "naive_pcie")


# -- the exporters (child processes) ---------------------------------------------------------


def serve(mode: str, port: int) -> None:
    from prometheus_client import CollectorRegistry
    from prometheus_client.registry import Collector

    from wan_otel.exporter.collector import SnapshotCollector
    from wan_otel.exporter.exposition import Exposition
    from wan_otel.exporter.fake import FakeBackend, FakeGpu
    from wan_otel.exporter.sampler import Sampler
    from wan_otel.exporter.server import ExporterServer, make_app

    backend = FakeBackend(
        [FakeGpu() for _ in range(GPUS)], call_cost_s=CALL_COST_S, gpm_cost_s=GPM_COST_S
    )
    registry = CollectorRegistry()
    metrics: CollectorRegistry | Exposition = registry
    on_sample = None
    if mode == "snapshot":  # wired as the CLI wires it: each sample encoded once, after it
        metrics = exposition = Exposition(registry)
        on_sample = lambda _snapshot: exposition.prepare()  # noqa: E731
    sampler = Sampler(backend, INTERVAL_S, on_sample=on_sample)
    snapshot = SnapshotCollector(sampler, hostname="bench")
    if mode == "snapshot":
        registry.register(snapshot)
        sampler.start()
    else:

        class Naive(Collector):
            """Reads every GPU inside the scrape, as per-scrape exporters do."""

            def collect(self) -> Iterator:  # type: ignore[type-arg]
                sampler.sample_once()
                if mode == "naive_pcie":
                    time.sleep(PCIE_SLEEP_S * GPUS)
                yield from snapshot.collect()

        registry.register(Naive())
    server = ExporterServer(make_app(metrics, lambda: True), "127.0.0.1", port)
    server.start()
    signal.sigwait({signal.SIGTERM})
    server.stop()
    sampler.close()


# -- the driver ------------------------------------------------------------------------------


def scrape(port: int) -> tuple[float, int]:
    started = time.perf_counter()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request("GET", "/metrics")
    body = connection.getresponse().read()
    connection.close()
    return time.perf_counter() - started, len(body)


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def measure(mode: str, seconds: float, idle_seconds: float) -> dict[str, float]:
    port = free_port()
    child = subprocess.Popen(
        [sys.executable, __file__, "--serve", mode, "--port", str(port)], cwd="/"
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                scrape(port)
                break
            except OSError:
                assert time.monotonic() < deadline, f"{mode} exporter did not start"
                time.sleep(0.1)
        time.sleep(2.0)  # warm up: imports done, first samples taken
        cpu0, t0 = cpu_seconds(child.pid), time.monotonic()
        time.sleep(idle_seconds)
        idle_cpu = (cpu_seconds(child.pid) - cpu0) / (time.monotonic() - t0)

        latencies, size = [], 0
        cpu0, t0 = cpu_seconds(child.pid), time.monotonic()
        next_at = t0
        while time.monotonic() - t0 < seconds:
            latency, size = scrape(port)
            latencies.append(latency)
            next_at += 0.2
            time.sleep(max(0.0, next_at - time.monotonic()))
        busy_cpu = (cpu_seconds(child.pid) - cpu0) / (time.monotonic() - t0)
        rss = rss_mib(child.pid)
    finally:
        child.send_signal(signal.SIGTERM)
        child.wait(timeout=10)
    latencies.sort()
    return {
        "cpu_idle_pct": 100 * idle_cpu,
        "cpu_scraped_5hz_pct": 100 * busy_cpu,
        "rss_mib": rss,
        "scrapes": len(latencies),
        "p50_ms": 1000 * statistics.median(latencies),
        "p99_ms": 1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))],
        "max_ms": 1000 * latencies[-1],
        "exposition_bytes": size,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="scraped phase per exporter")
    parser.add_argument("--idle-seconds", type=float, default=15.0, help="unscraped phase")
    parser.add_argument("--json", type=Path, help="write the results here too")
    parser.add_argument("--serve", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port)
        return 0

    results = {mode: measure(mode, args.seconds, args.idle_seconds) for mode in MODES}
    print(
        f"{GPUS} fake GPUs, sampled every {INTERVAL_S} s (snapshot); per-call cost "
        f"{CALL_COST_S * 1e6:.0f} us, GPM sample {GPM_COST_S * 1e6:.0f} us; "
        f"scrapes at 5 Hz for {args.seconds:.0f} s; python {platform.python_version()}"
    )
    header = ("exporter", "CPU idle %", "CPU 5 Hz %", "RSS MiB", "p50 ms", "p99 ms", "max ms")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for mode, r in results.items():
        cells = [
            mode,
            f"{r['cpu_idle_pct']:.2f}",
            f"{r['cpu_scraped_5hz_pct']:.2f}",
            f"{r['rss_mib']:.1f}",
            f"{r['p50_ms']:.2f}",
            f"{r['p99_ms']:.2f}",
            f"{r['max_ms']:.2f}",
        ]
        print("| " + " | ".join(cells) + " |")
    print(f"exposition size: {results['snapshot']['exposition_bytes']} bytes")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
