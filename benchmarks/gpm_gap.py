"""How many GPM reads a 0.1 s sampler loses to NVML's 100 ms gap, old rule against new.

The sampler (fixed-rate ticks at the 0.1 s floor) reads a stand-in NVML (the tests' StubNvml)
whose energy counter read takes 2-4 ms, and 16 ms one time in 50, as on the H200 (2.9 ms
median, 16 ms p99): the GPM call that follows it lands a few ms early about half the time.
Counts empty windows (reads skipped as too soon) and windows over 0.15 s.

    python benchmarks/gpm_gap.py [--seconds 15]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.exporter.test_nvml import StubNvml, half_busy
from wan_otel.exporter import gpm
from wan_otel.exporter.nvml import NvmlBackend
from wan_otel.exporter.sampler import Sampler


def windows(seconds: float, wait_max_s: float) -> list[float]:
    gpm.GPM_WAIT_MAX_S = wait_max_s  # 0: the old rule, every short read skipped
    stub = StubNvml(time.monotonic, half_busy)  # type: ignore[arg-type]
    rng = random.Random(1)
    energy = stub.nvmlDeviceGetTotalEnergyConsumption

    def slow_energy(handle: Any) -> int:
        time.sleep(0.016 if rng.random() < 0.02 else rng.uniform(0.002, 0.004))
        return energy(handle)

    stub.nvmlDeviceGetTotalEnergyConsumption = slow_energy  # type: ignore[method-assign]
    found: list[float] = []

    def on_sample(snapshot: Any) -> None:
        found.extend(g.reading.activity.window_s for g in snapshot.gpus if g.reading.activity)

    sampler = Sampler(NvmlBackend(stub, time.monotonic), 0.1, processes=False, on_sample=on_sample)
    sampler.start()
    time.sleep(seconds)
    sampler.close()
    return found[1:]  # the first read primes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15.0)
    args = parser.parse_args()
    print("| rule | reads | skipped (empty window) | windows over 0.15 s | longest s |")
    print("|---|---:|---:|---:|---:|")
    for rule, wait_max in (("skip every short read (before)", 0.0), ("wait up to 20 ms", 0.02)):
        found = windows(args.seconds, wait_max)
        empty = sum(1 for w in found if w == 0)
        long = sum(1 for w in found if w > 0.15)
        print(f"| {rule} | {len(found)} | {empty} | {long} | {max(found):.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
