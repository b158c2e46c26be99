"""The sidecar on real GPUs, side by side with nvitop-exporter: CPU, memory, scrape latency.

Each exporter runs as users run it, in a process of its own, one after the other (never two
at once: they would share NVML's locks): ``wan-otel exporter --backend nvml`` at 0.5 s with its
defaults (energy counter every 5 s, state gauges every 2 s), with the state gauges or the
energy counter read every sample, at 1 s, and with sampling off; ``nvitop-exporter`` at 0.5 s
and 1 s. Per configuration: CPU % of a core over ``--seconds`` unscraped, resident memory split
as the kernel reports it (anonymous, file-backed, shared),
then ``/metrics`` scraped at 5 Hz on one kept-alive connection (as Prometheus does) for
``--scrape-seconds``: latency p50 / p99 and CPU under scrapes. Two floors beside them: a
Python that only sleeps, and one that loaded NVML and holds its device handles. Then what each
NVML call of a sample costs on these GPUs (the fake backend's calibration).

    python benchmarks/sidecar_gpu.py [--seconds 20] [--scrape-seconds 10] [--nvitop-path DIR]

``--nvitop-path``: a folder holding nvitop-exporter and its packages (it is not a project
dependency). Writes ``sidecar_gpu.json`` to ``$OUT`` when set.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from proc_stats import cpu_seconds

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # wan_otel from the checkout (it maps exporter/ itself)
SCRAPE_HZ = 5.0
SETTLE_S = 5.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def memory_mib(pid: int) -> dict[str, float]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "RssAnon", "RssFile", "RssShmem"):
            out[key] = round(int(value.split()[0]) / 1024, 1)
    return out


def _wait_ready(port: int, child: subprocess.Popen[bytes], timeout_s: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and child.poll() is None:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", "/metrics")
            if connection.getresponse().status == 200:
                return True
        except OSError:
            time.sleep(0.2)
    return False


def scrape(port: int, seconds: float) -> dict[str, Any]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    latencies, size = [], 0
    next_at = time.monotonic()
    end = next_at + seconds
    while next_at < end:
        time.sleep(max(0.0, next_at - time.monotonic()))
        started = time.perf_counter()
        connection.request("GET", "/metrics")
        response = connection.getresponse()
        body = response.read()
        latencies.append(time.perf_counter() - started)
        size = len(body)
        next_at += 1 / SCRAPE_HZ
    connection.close()
    latencies.sort()
    series = sum(1 for line in body.decode().splitlines() if line and not line.startswith("#"))
    return {
        "scrapes": len(latencies),
        "p50_ms": round(1e3 * statistics.median(latencies), 2),
        "p99_ms": round(1e3 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))], 2),
        "bytes": size,
        "series": series,
    }


def measure(name: str, command: list[str], env: dict[str, str], port: int | None,
            args: argparse.Namespace) -> dict[str, Any]:  # fmt: skip
    child = subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE)  # fmt: skip
    result: dict[str, Any] = {"name": name}
    try:
        if port is not None and not _wait_ready(port, child):
            result["error"] = (child.stderr.read() if child.poll() is not None and child.stderr
                               else b"not ready").decode(errors="replace")[-500:]  # fmt: skip
            return result
        time.sleep(SETTLE_S)
        cpu0, t0 = cpu_seconds(child.pid), time.monotonic()
        time.sleep(args.seconds)
        result["cpu_pct_idle"] = round(100 * (cpu_seconds(child.pid) - cpu0) /
                                       (time.monotonic() - t0), 3)  # fmt: skip
        result["memory_mib"] = memory_mib(child.pid)
        if port is not None:
            cpu0, t0 = cpu_seconds(child.pid), time.monotonic()
            result["scrape"] = scrape(port, args.scrape_seconds)
            result["cpu_pct_scraped"] = round(100 * (cpu_seconds(child.pid) - cpu0) /
                                              (time.monotonic() - t0), 3)  # fmt: skip
            result["memory_mib_after_scrapes"] = memory_mib(child.pid)
    finally:
        child.send_signal(signal.SIGTERM)
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
    print(json.dumps(result), flush=True)
    return result


FLOOR_NVML = """
import time, pynvml
pynvml.nvmlInit()
handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
time.sleep(3600)
"""


def nvml_costs(repeats: int = 60) -> dict[str, Any]:
    """Median / p99 microseconds of each NVML call a sample makes, on GPU 0, and whole reads."""
    import pynvml

    from wan_otel.exporter.nvml import NvmlBackend

    pynvml.nvmlInit()
    handle = pynvml.nvmlDeviceGetHandleByIndex(0)

    def timed(fn: Any) -> dict[str, float]:
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            fn()
            times.append(time.perf_counter() - started)
            time.sleep(0.01)
        times.sort()
        return {"median_us": round(1e6 * statistics.median(times), 1),
                "p99_us": round(1e6 * times[int(0.99 * (len(times) - 1))], 1)}  # fmt: skip

    out: dict[str, Any] = {
        "gpus": pynvml.nvmlDeviceGetCount(),
        "memory_info": timed(lambda: pynvml.nvmlDeviceGetMemoryInfo(handle)),
        "power_usage": timed(lambda: pynvml.nvmlDeviceGetPowerUsage(handle)),
        "energy_counter": timed(lambda: pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)),
        "temperature": timed(lambda: pynvml.nvmlDeviceGetTemperature(handle, 0)),
    }
    pynvml.nvmlShutdown()
    for energy_s in (0.0, 3600.0):
        backend = NvmlBackend(energy_interval_s=energy_s)
        backend.init()
        backend.read(0)
        time.sleep(0.2)
        key = "backend_read_energy_every_sample" if energy_s == 0 else "backend_read_no_energy"
        reads = []
        for _ in range(20):
            started = time.perf_counter()
            backend.read(0)
            reads.append(time.perf_counter() - started)
            time.sleep(0.11)
        out[key] = {"median_us": round(1e6 * statistics.median(reads), 1),
                    "max_us": round(1e6 * max(reads), 1)}  # fmt: skip
        backend.shutdown()
    return out


def sample_costs(samples: int = 40) -> dict[str, Any]:
    """CPU milliseconds (this thread's clock) of one sample of every GPU and of encoding the
    exposition after it, as the exporter does them every ``--interval`` (its defaults: energy
    every 5 s, state gauges every 2 s)."""
    from prometheus_client import CollectorRegistry

    from wan_otel.exporter.collector import SnapshotCollector
    from wan_otel.exporter.exposition import Exposition
    from wan_otel.exporter.nvml import NvmlBackend
    from wan_otel.exporter.sampler import Sampler

    backend = NvmlBackend(energy_interval_s=5.0, gauge_interval_s=2.0)
    registry = CollectorRegistry()
    exposition = Exposition(registry)
    sampler = Sampler(backend, 0.5, on_sample=lambda _snapshot: None)
    registry.register(SnapshotCollector(sampler, hostname="bench"))
    if not sampler.try_init():
        return {"error": str(sampler.last_init_error)}
    costs: dict[str, list[float]] = {"sample_ms": [], "encode_ms": []}
    for _ in range(samples):
        started = time.thread_time()
        sampler.sample_once()
        costs["sample_ms"].append(1e3 * (time.thread_time() - started))
        started = time.thread_time()
        exposition.prepare()
        costs["encode_ms"].append(1e3 * (time.thread_time() - started))
        time.sleep(0.25)
    sampler.close()
    return {
        "gpus": len(sampler.devices) if hasattr(sampler, "devices") else None,
        **{f"{k}_median": round(statistics.median(v), 3) for k, v in costs.items()},
        **{f"{k}_mean": round(statistics.fmean(v), 3) for k, v in costs.items()},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--scrape-seconds", type=float, default=10.0)
    parser.add_argument("--nvitop-path", type=Path)
    args = parser.parse_args()
    base = dict(os.environ, PYTHONUNBUFFERED="1")
    ours = dict(base, PYTHONPATH=os.pathsep.join([str(ROOT), base.get("PYTHONPATH", "")]))
    results = [
        measure("python, sleeping", [sys.executable, "-c", "import time; time.sleep(3600)"],
                base, None, argparse.Namespace(seconds=2.0)),
        measure("python + NVML handles", [sys.executable, "-c", FLOOR_NVML], base, None,
                argparse.Namespace(seconds=2.0)),
    ]  # fmt: skip
    configs: list[tuple[str, list[str], dict[str, str]]] = []
    for interval, energy, gauges in (
        ("0.5", "5", "2"),  # the defaults
        ("0.5", "5", "0"),  # state gauges every sample (before --gauge-interval)
        ("0.5", "0", "2"),
        ("1", "5", "2"),
        ("3600", "5", "2"),  # sampling off: the server's own cost
    ):
        port = _free_port()
        command = [sys.executable, "-m", "wan_otel", "exporter", "--backend", "nvml",
                   "--host", "127.0.0.1", "--port", str(port), "--interval", interval,
                   "--energy-interval", energy, "--gauge-interval", gauges]  # fmt: skip
        name = f"wan-otel {interval} s, energy every {energy} s, gauges every {gauges} s"
        configs.append((name, command, ours))
    if args.nvitop_path:
        peer = dict(base, PYTHONPATH=os.pathsep.join([str(args.nvitop_path),
                                                      base.get("PYTHONPATH", "")]))  # fmt: skip
        for interval in ("0.5", "1"):
            port = _free_port()
            command = [sys.executable, "-m", "nvitop_exporter", "--bind", "127.0.0.1",
                       "--port", str(port), "--interval", interval]  # fmt: skip
            configs.append((f"nvitop-exporter {interval} s", command, peer))
    for name, command, env in configs:
        port = int(command[command.index("--port") + 1])
        results.append(measure(name, command, env, port, args))
    report: dict[str, Any] = {"exporters": results}
    try:
        report["nvml_costs"] = nvml_costs()
    except Exception as exc:  # the table above stands without it
        report["nvml_costs"] = {"error": repr(exc)}
    print(json.dumps(report["nvml_costs"]), flush=True)
    try:
        report["sample_costs"] = sample_costs()
    except Exception as exc:
        report["sample_costs"] = {"error": repr(exc)}
    print(json.dumps(report["sample_costs"]), flush=True)
    out = os.environ.get("OUT")
    if out:
        (Path(out) / "sidecar_gpu.json").write_text(json.dumps(report, indent=2) + "\n")
    print("\n| exporter | CPU % idle | CPU % 5 Hz scrapes | RSS MiB (anon/file/shmem) | "
          "p50 ms | p99 ms | series |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in results:
        m, s = r.get("memory_mib", {}), r.get("scrape", {})
        print(f"| {r['name']} | {r.get('cpu_pct_idle', '')} | {r.get('cpu_pct_scraped', '')} | "
              f"{m.get('VmRSS', '')} ({m.get('RssAnon', '')}/{m.get('RssFile', '')}/"
              f"{m.get('RssShmem', '')}) | {s.get('p50_ms', '')} | {s.get('p99_ms', '')} | "
              f"{s.get('series', '')} |{' ' + r['error'] if 'error' in r else ''}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
