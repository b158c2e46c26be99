"""Exporter soak: RSS stays flat over 10,000 samples (83 minutes of 8 GPUs at 0.5 s).

Runs the real sampler and collector in-process over 8 fake GPUs on a manual clock (no sleeping),
with churn that could leak: a new GPU process (PID) every sample on each GPU, a GPU lost and
recovered every 500 samples, the backend down for a while every 2,500 samples, and a scrape
rendered every 10 samples. Prints RSS and traced Python heap every 1,000 samples and exits 1 if
RSS grew more than 2 MiB after the first 1,000.

    python benchmarks/exporter_soak.py [--samples 10000]
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

from proc_stats import rss_mib
from prometheus_client import CollectorRegistry, generate_latest

from wan_otel.exporter.backend import ProcessMemory
from wan_otel.exporter.collector import SnapshotCollector
from wan_otel.exporter.fake import FakeBackend, FakeGpu
from wan_otel.exporter.procinfo import ProcessResolver
from wan_otel.exporter.sampler import Sampler

GPUS = 8


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=10_000)
    args = parser.parse_args()
    logging.disable(logging.WARNING)  # the injected faults log by design; counted below

    now = [0.0]
    clock = lambda: now[0]  # noqa: E731
    backend = FakeBackend([FakeGpu() for _ in range(GPUS)], clock)
    with tempfile.TemporaryDirectory() as proc:
        resolver = ProcessResolver(Path(proc), own_pod="soak", own_namespace="bench")
        sampler = Sampler(backend, 0.5, clock=clock, resolver=resolver, backoff_max_s=2.0)
        registry = CollectorRegistry()
        registry.register(SnapshotCollector(sampler, hostname="soak", pod="soak"))
        tracemalloc.start()
        rows = []
        started = time.perf_counter()
        for i in range(1, args.samples + 1):
            for g in range(GPUS):  # a new PID on every GPU each sample
                pid = 100_000 + i * GPUS + g
                backend.set_gpu(g, FakeGpu(processes=(ProcessMemory(pid, 1 << 30),)))
            if i % 500 == 0:
                backend.lose(i // 500 % GPUS)
            if i % 500 == 5:
                backend.recover((i - 5) // 500 % GPUS)
            if i % 2500 == 0:
                backend.go_down()
            sampler.sample_once()
            if i % 10 == 0:
                generate_latest(registry)
            now[0] += 0.5
            if i % 1000 == 0:
                heap = tracemalloc.get_traced_memory()[0] / 2**20
                rows.append((i, rss_mib(), heap))
        elapsed = time.perf_counter() - started
    snapshot = sampler.snapshot
    print(
        f"{args.samples} samples of {GPUS} GPUs in {elapsed:.1f} s "
        f"({1e3 * elapsed / args.samples:.2f} ms a sample incl. scrapes every 10; "
        f"tracemalloc on)"
    )
    print("| samples | RSS MiB | traced heap MiB |")
    print("|---|---|---|")
    for i, rss, heap in rows:
        print(f"| {i} | {rss:.1f} | {heap:.2f} |")
    growth = rows[-1][1] - rows[0][1]
    print(
        f"RSS growth after the first 1,000 samples: {growth:+.2f} MiB; "
        f"PIDs cached: {len(resolver._cache)}; error counters: {dict(snapshot.errors)}"
    )
    return 0 if growth < 2.0 else 1


if __name__ == "__main__":
    sys.exit(main())
