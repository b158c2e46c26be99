"""GPU-machine check of the exporter (H100): accuracy, NVML call costs, least privilege, join key.

Run on the device machine from the repository root (needs torch with CUDA and nvidia-ml-py;
wan-otel need not be installed)::

    python benchmarks/gpu_exporter_check.py            # about 2 minutes; JSON to $OUT if set

(a) Accuracy. A child process runs a bf16 8192^3 matmul loop on cuda:0 busy for 0, 25, 50, 75
    and 100 % of every 100 ms (CUDA events measure the busy spans: the ground truth). Three real
    samplers read the same GPU: GPM every 0.1 s, GPM every 0.5 s, and NVML utilization every
    0.1 s (the non-Hopper fallback). Reported: each counter's mean over the 10 s window and the
    spread of its 1 s windows, next to the duty cycle.
(b) Cost. Each NVML call the backend makes, timed (median and p99 over repeats), plus a whole
    ``NvmlBackend.read`` and a whole ``Sampler.sample_once`` over every GPU.
(c) Least privilege. As root, the same calls (and two backend reads) run again as uid 1001 with
    no capabilities (``setpriv``, else ``runuser -u nobody``) from a self-contained copy of
    pynvml and the backend modules in a temporary folder.
(d) Join key. torch's device UUID next to NVML's, so spans and metrics join on ``uuid``.
(e) End to end. ``wan-otel exporter --backend nvml``: /readyz, series present, scrape latency,
    SIGTERM exit time.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import multiprocessing as mp
import os
import re
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import wan_otel  # noqa: E402

if importlib.util.find_spec("wan_otel.exporter") is None:  # not installed: use the source tree
    wan_otel.__path__.append(str(ROOT))

import pynvml  # noqa: E402

from wan_otel.exporter.nvml import NvmlBackend  # noqa: E402
from wan_otel.exporter.sampler import Sampler  # noqa: E402
from wan_otel.exporter.snapshot import Snapshot  # noqa: E402

DUTIES = (0.0, 0.25, 0.5, 0.75, 1.0)
PERIOD_S = 0.1
SETTLE_S = 1.5
WINDOW_S = 10.0


# -- (a) load -------------------------------------------------------------------------------


def load_worker(duty: Any, busy_s: Any, stop: Any, info: Any) -> None:
    """Busy ``duty`` of every 100 ms on cuda:0; adds GPU-busy seconds (CUDA events) to busy_s."""
    import torch

    props = torch.cuda.get_device_properties(0)
    info.put({"torch_uuid": str(props.uuid), "torch_name": props.name})
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    c = torch.empty_like(a)
    for _ in range(20):
        torch.matmul(a, b, out=c)
    torch.cuda.synchronize()
    info.put({"ready": True})
    start = torch.cuda.Event(enable_timing=True)  # type: ignore[no-untyped-call]
    end = torch.cuda.Event(enable_timing=True)  # type: ignore[no-untyped-call]
    next_t = time.perf_counter()
    while not stop.is_set():
        busy_until = next_t + duty.value * PERIOD_S
        if time.perf_counter() < busy_until:
            start.record()
            while time.perf_counter() < busy_until:
                torch.matmul(a, b, out=c)
                torch.cuda.synchronize()
            end.record()
            end.synchronize()
            with busy_s.get_lock():
                busy_s.value += start.elapsed_time(end) / 1000.0
        next_t += PERIOD_S
        time.sleep(max(0.0, next_t - time.perf_counter()))


def nvml_index_of(uuid: str) -> int:
    pynvml.nvmlInit()
    try:
        for i in range(pynvml.nvmlDeviceGetCount()):
            nvml_uuid = pynvml.nvmlDeviceGetUUID(pynvml.nvmlDeviceGetHandleByIndex(i))
            if uuid in (nvml_uuid, nvml_uuid.removeprefix("GPU-")):
                return i
    finally:
        pynvml.nvmlShutdown()
    return 0


def counters_at(snapshot: Snapshot, index: int) -> dict[str, float | None] | None:
    for gpu in snapshot.gpus:
        if gpu.device.index == index and gpu.counters is not None:
            c = gpu.counters
            return {
                "t": snapshot.taken_s,
                "sm": c.sm_active_s,
                "occ": c.sm_occupancy_s,
                "tensor": c.tensor_active_s,
                "dram": c.dram_active_s,
            }
    return None


def mean_rate(a: dict[str, Any], b: dict[str, Any], key: str) -> float | None:
    if a is None or b is None or a.get(key) is None or b.get(key) is None:
        return None
    return float((b[key] - a[key]) / (b["t"] - a["t"]))


def accuracy(index: int, duty: Any, busy_s: Any) -> list[dict[str, Any]]:
    samplers = {
        "gpm_0.1s": Sampler(NvmlBackend(), 0.1, processes=False),
        "gpm_0.5s": Sampler(NvmlBackend(), 0.5, processes=False),
        "nvml_util_0.1s": Sampler(NvmlBackend(use_gpm=False), 0.1, processes=False),
    }
    for sampler in samplers.values():
        sampler.start()
    rows = []
    try:
        for level in DUTIES:
            duty.value = level
            time.sleep(SETTLE_S)
            ticks = []  # one per second: ground truth and each sampler's counters
            for _ in range(int(WINDOW_S) + 1):
                ticks.append(
                    {
                        "t": time.monotonic(),
                        "busy": busy_s.value,
                        **{name: counters_at(s.snapshot, index) for name, s in samplers.items()},
                    }
                )
                time.sleep(1.0)
            row: dict[str, Any] = {"duty": level}
            first, last = ticks[0], ticks[-1]
            row["events_busy"] = (last["busy"] - first["busy"]) / (last["t"] - first["t"])
            for name in samplers:
                row[name] = {
                    "mean_10s": mean_rate(first[name], last[name], "sm"),
                    "windows_1s": [
                        mean_rate(x[name], y[name], "sm") for x, y in itertools.pairwise(ticks)
                    ],
                }
                for key in ("occ", "tensor", "dram"):
                    row[name][key + "_10s"] = mean_rate(first[name], last[name], key)
            rows.append(row)
    finally:
        for sampler in samplers.values():
            sampler.close()
    return rows


# -- (b) cost -------------------------------------------------------------------------------


def timed(fn: Any, repeats: int) -> dict[str, Any]:
    times = []
    error = None
    for _ in range(repeats):
        started = time.perf_counter()
        try:
            fn()
        except pynvml.NVMLError as exc:
            error = str(exc)
            break
        times.append(time.perf_counter() - started)
    if not times:
        return {"error": error}
    times.sort()
    return {
        "median_us": 1e6 * statistics.median(times),
        "p99_us": 1e6 * times[min(len(times) - 1, int(0.99 * len(times)))],
        "n": len(times),
        **({"error": error} if error else {}),
    }


def costs(index: int) -> dict[str, Any]:
    n = pynvml
    n.nvmlInit()
    h = n.nvmlDeviceGetHandleByIndex(index)
    out: dict[str, Any] = {}
    calls = {
        "nvmlDeviceGetMemoryInfo_v2": lambda: n.nvmlDeviceGetMemoryInfo(h, version=n.nvmlMemory_v2),
        "nvmlDeviceGetPowerUsage": lambda: n.nvmlDeviceGetPowerUsage(h),
        "nvmlDeviceGetTotalEnergyConsumption": lambda: n.nvmlDeviceGetTotalEnergyConsumption(h),
        "nvmlDeviceGetTemperature": lambda: n.nvmlDeviceGetTemperature(h, n.NVML_TEMPERATURE_GPU),
        "nvmlDeviceGetClockInfo(SM)": lambda: n.nvmlDeviceGetClockInfo(h, n.NVML_CLOCK_SM),
        "nvmlDeviceGetClockInfo(MEM)": lambda: n.nvmlDeviceGetClockInfo(h, n.NVML_CLOCK_MEM),
        "nvmlDeviceGetCurrentClocksEventReasons": lambda: n.nvmlDeviceGetCurrentClocksEventReasons(
            h
        ),
        "nvmlDeviceGetTotalEccErrors": lambda: n.nvmlDeviceGetTotalEccErrors(
            h, n.NVML_MEMORY_ERROR_TYPE_CORRECTED, n.NVML_VOLATILE_ECC
        ),
        "nvmlDeviceGetComputeRunningProcesses": lambda: n.nvmlDeviceGetComputeRunningProcesses(h),
        "nvmlDeviceGetUtilizationRates": lambda: n.nvmlDeviceGetUtilizationRates(h),
    }
    for name, fn in calls.items():
        out[name] = timed(fn, 300)
    out["nvmlDeviceGetPcieThroughput"] = timed(
        lambda: n.nvmlDeviceGetPcieThroughput(h, n.NVML_PCIE_UTIL_TX_BYTES), 5
    )
    try:
        s1, s2 = n.nvmlGpmSampleAlloc(), n.nvmlGpmSampleAlloc()
        out["nvmlGpmSampleGet"] = timed(lambda: n.nvmlGpmSampleGet(h, s1), 100)
        time.sleep(0.15)
        n.nvmlGpmSampleGet(h, s2)
        mg = n.c_nvmlGpmMetricsGet_t()

        def metrics_get() -> None:
            mg.version, mg.numMetrics = n.NVML_GPM_METRICS_GET_VERSION, 6
            mg.sample1, mg.sample2 = s1, s2
            for i, m in enumerate((2, 3, 5, 10, 20, 21)):
                mg.metrics[i].metricId = m
            n.nvmlGpmMetricsGet(mg)

        out["nvmlGpmMetricsGet(6 metrics)"] = timed(metrics_get, 100)
        n.nvmlGpmSampleFree(s1)
        n.nvmlGpmSampleFree(s2)
    except n.NVMLError as exc:
        out["gpm"] = {"error": str(exc)}
    n.nvmlShutdown()

    backend = NvmlBackend()
    system = backend.init()
    reads = []
    for _ in range(21):  # spaced past GPM's 100 ms floor so every read samples GPM
        started = time.perf_counter()
        backend.read(index)
        reads.append(time.perf_counter() - started)
        time.sleep(0.11)
    backend.shutdown()
    out["NvmlBackend.read (one GPU, incl. processes)"] = {
        "median_us": 1e6 * statistics.median(reads[1:]),
        "max_us": 1e6 * max(reads[1:]),
        "n": len(reads) - 1,
    }
    sampler = Sampler(NvmlBackend(), 0.1)
    durations = []
    for _ in range(11):
        snap = sampler.sample_once()
        if snap.duration_s is not None:
            durations.append(snap.duration_s)
        time.sleep(0.11)
    sampler.close()
    out[f"Sampler.sample_once ({len(system.devices)} GPUs)"] = {
        "median_us": 1e6 * statistics.median(durations[1:]),
        "n": len(durations) - 1,
    }
    return out


# -- (c) least privilege --------------------------------------------------------------------

CHILD = r"""
import json, os, sys, time
out = {"uid": os.getuid(), "euid": os.geteuid()}
for line in open("/proc/self/status"):
    if line.startswith(("CapEff", "CapPrm")):
        out[line.split(":")[0]] = line.split()[1]
import pynvml as n
def attempt(name, fn):
    try:
        value = fn()
        out[name] = "ok" if value is None else ("ok: " + str(value)[:80])
    except Exception as exc:
        out[name] = "FAILED: " + repr(exc)
attempt("nvmlInit", n.nvmlInit)
try:
    h = n.nvmlDeviceGetHandleByIndex(int(sys.argv[1]))
except Exception as exc:
    out["nvmlDeviceGetHandleByIndex"] = "FAILED: " + repr(exc)
    print(json.dumps(out))
    sys.exit(0)
attempt("uuid", lambda: n.nvmlDeviceGetUUID(h))
attempt("gpm_support", lambda: n.nvmlGpmQueryDeviceSupport(h).isSupportedDevice)
def gpm_sm_util():
    s1, s2 = n.nvmlGpmSampleAlloc(), n.nvmlGpmSampleAlloc()
    n.nvmlGpmSampleGet(h, s1); time.sleep(0.2); n.nvmlGpmSampleGet(h, s2)
    mg = n.c_nvmlGpmMetricsGet_t()
    mg.version, mg.numMetrics, mg.sample1, mg.sample2 = n.NVML_GPM_METRICS_GET_VERSION, 1, s1, s2
    mg.metrics[0].metricId = n.NVML_GPM_METRIC_SM_UTIL
    n.nvmlGpmMetricsGet(mg)
    n.nvmlGpmSampleFree(s1); n.nvmlGpmSampleFree(s2)
    return (mg.metrics[0].nvmlReturn, round(mg.metrics[0].value, 2))
attempt("gpm_sm_util (ret, %)", gpm_sm_util)
attempt("memory_info_v2", lambda: n.nvmlDeviceGetMemoryInfo(h, version=n.nvmlMemory_v2).used)
attempt("utilization", lambda: n.nvmlDeviceGetUtilizationRates(h).gpu)
attempt("total_energy_mJ", lambda: n.nvmlDeviceGetTotalEnergyConsumption(h))
attempt("power_mW", lambda: n.nvmlDeviceGetPowerUsage(h))
attempt("compute_processes", lambda: len(n.nvmlDeviceGetComputeRunningProcesses(h)))
attempt("clock_event_reasons", lambda: n.nvmlDeviceGetCurrentClocksEventReasons(h))
attempt("ecc_corrected", lambda: n.nvmlDeviceGetTotalEccErrors(h, 0, 0))
attempt("pcie_throughput", lambda: n.nvmlDeviceGetPcieThroughput(h, 0))
n.nvmlShutdown()
def backend_reads():
    from wan_otel.exporter.nvml import NvmlBackend
    backend = NvmlBackend()
    backend.init()
    backend.read(int(sys.argv[1])); time.sleep(0.2)
    activity = backend.read(int(sys.argv[1])).activity
    errors = backend.errors()
    backend.shutdown()
    return {"source": activity.source, "window_s": round(activity.window_s, 3),
            "sm_active": activity.sm_active, "errors": errors}
attempt("NvmlBackend reads", backend_reads)
print(json.dumps(out))
"""


def least_privilege(index: int) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="wan-otel-check-"))
    try:
        # A self-contained copy: the repository or venv may not be readable by another user.
        shutil.copy(pynvml.__file__, work / "pynvml.py")
        (work / "wan_otel" / "exporter").mkdir(parents=True)
        (work / "wan_otel" / "__init__.py").write_text("")
        shutil.copy(ROOT / "wan_otel" / "semconv.py", work / "wan_otel" / "semconv.py")
        (work / "wan_otel" / "exporter" / "__init__.py").write_text("")
        for name in ("backend.py", "gpm.py", "nvml.py"):
            shutil.copy(ROOT / "exporter" / name, work / "wan_otel" / "exporter" / name)
        (work / "child.py").write_text(CHILD)
        for path in [work, *work.rglob("*")]:
            path.chmod(0o755)
        env = {"PYTHONPATH": str(work), "PATH": "/usr/bin:/bin", "HOME": str(work)}
        pythons = [getattr(sys, "_base_executable", ""), "/usr/bin/python3", sys.executable]
        wrappers: list[list[str]]
        if os.geteuid() != 0:
            wrappers = [[]]
        else:
            wrappers = []
            if shutil.which("setpriv"):
                wrappers.append(
                    ["setpriv", "--reuid=1001", "--regid=1001", "--clear-groups", "--inh-caps=-all"]
                )
            if shutil.which("runuser"):
                wrappers.append(["runuser", "-u", "nobody", "--"])
        attempts = []
        for wrapper in wrappers:
            for python in dict.fromkeys(p for p in pythons if p):
                cmd = [*wrapper, python, str(work / "child.py"), str(index)]
                result = subprocess.run(
                    cmd, capture_output=True, text=True, env=env, cwd=work, timeout=60
                )
                if result.returncode == 0 and result.stdout.strip().startswith("{"):
                    return {"command": cmd, **json.loads(result.stdout)}
                attempts.append({"command": cmd, "stderr": result.stderr[-400:]})
        return {"error": "no non-root run succeeded", "attempts": attempts}
    finally:
        shutil.rmtree(work, ignore_errors=True)


# -- (e) end to end -------------------------------------------------------------------------


def end_to_end() -> dict[str, Any]:
    root = str(ROOT)
    launcher = (
        f"import sys, importlib.util; sys.path.insert(0, {root!r}); import wan_otel\n"
        f"if importlib.util.find_spec('wan_otel.exporter') is None: "
        f"wan_otel.__path__.append({root!r})\n"
        "from wan_otel.cli import main\n"
        "sys.exit(main(['exporter', '--backend', 'nvml', '--host', '127.0.0.1', '--port', '0']))"
    )
    process = subprocess.Popen([sys.executable, "-c", launcher], stderr=subprocess.PIPE, text=True)
    assert process.stderr is not None
    out: dict[str, Any] = {}
    try:
        line, deadline = "", time.monotonic() + 30
        while time.monotonic() < deadline and "serving" not in line:
            if select.select([process.stderr], [], [], 0.2)[0]:
                line = process.stderr.readline()
        match = re.search(r":(\d+)/metrics", line)
        if not match:
            return {"error": f"did not start: {line!r}"}
        url = f"http://127.0.0.1:{match.group(1)}"
        ready_at = None
        started = time.monotonic()
        while time.monotonic() - started < 10:
            try:
                with urllib.request.urlopen(url + "/readyz", timeout=2) as response:
                    if response.status == 200:
                        ready_at = time.monotonic() - started
                        break
            except OSError:
                time.sleep(0.1)
        out["ready_after_s"] = ready_at
        time.sleep(1.2)
        latencies = []
        for _ in range(50):
            t0 = time.perf_counter()
            with urllib.request.urlopen(url + "/metrics", timeout=5) as response:
                body = response.read().decode()
            latencies.append(time.perf_counter() - t0)
        latencies.sort()
        out["scrape_p50_ms"] = 1000 * statistics.median(latencies)
        out["scrape_max_ms"] = 1000 * latencies[-1]
        out["exposition_bytes"] = len(body)
        out["families"] = sorted(set(re.findall(r"^# TYPE (wan_\w+)", body, re.M)))
        out["sm_active_series"] = re.findall(r"^wan_gpu_sm_active_seconds_total\{.*$", body, re.M)
        out["nvml_errors"] = re.findall(r"^wan_exporter_nvml_errors_total\{.*$", body, re.M)
        t0 = time.monotonic()
        process.send_signal(signal.SIGTERM)
        out["exit_code"] = process.wait(timeout=10)
        out["sigterm_exit_s"] = time.monotonic() - t0
    finally:
        if process.poll() is None:
            process.kill()
    return out


# -- main -----------------------------------------------------------------------------------


def fmt(value: float | None, spec: str = ".3f") -> str:
    return "-" if value is None else format(value, spec)


def main() -> int:
    began = time.monotonic()
    results: dict[str, Any] = {"date_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())}
    ctx = mp.get_context("spawn")
    duty, busy_s, stop, info = ctx.Value("d", 0.0), ctx.Value("d", 0.0), ctx.Event(), ctx.Queue()
    worker = ctx.Process(target=load_worker, args=(duty, busy_s, stop, info), daemon=True)
    worker.start()
    torch_info = info.get(timeout=120)
    info.get(timeout=120)  # warmed up
    index = nvml_index_of(torch_info["torch_uuid"])
    pynvml.nvmlInit()
    handle = pynvml.nvmlDeviceGetHandleByIndex(index)
    results["gpu"] = {
        "nvml_index": index,
        "name": pynvml.nvmlDeviceGetName(handle),
        "nvml_uuid": pynvml.nvmlDeviceGetUUID(handle),
        "driver": pynvml.nvmlSystemGetDriverVersion(),
        **torch_info,
    }
    pynvml.nvmlShutdown()
    g = results["gpu"]
    g["join_key_matches"] = g["nvml_uuid"] == g["torch_uuid"]
    g["join_key_matches_with_GPU_prefix"] = g["nvml_uuid"] == "GPU-" + g["torch_uuid"]
    try:
        results["accuracy"] = accuracy(index, duty, busy_s)
    finally:
        stop.set()
        worker.join(timeout=10)
    results["costs"] = costs(index)
    results["least_privilege"] = least_privilege(index)
    results["end_to_end"] = end_to_end()
    results["elapsed_s"] = time.monotonic() - began

    print(f"\n{g['name']} (NVML {index}, driver {g['driver']}), {results['date_utc']} UTC")
    print(f"UUID: NVML {g['nvml_uuid']}  torch {g['torch_uuid']}")
    print("\n(a) SM activity: 10 s mean [1 s windows min..max]")
    print(
        "| duty | CUDA-event busy | GPM 0.1 s | GPM 0.5 s | nvml_util 0.1 s | occupancy | "
        "tensor | DRAM |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for row in results["accuracy"]:
        cells = [f"{row['duty']:.2f}", fmt(row["events_busy"])]
        for name in ("gpm_0.1s", "gpm_0.5s", "nvml_util_0.1s"):
            windows = [w for w in row[name]["windows_1s"] if w is not None]
            spread = f" [{min(windows):.3f}..{max(windows):.3f}]" if windows else ""
            cells.append(fmt(row[name]["mean_10s"]) + spread)
        cells += [fmt(row["gpm_0.1s"][k + "_10s"]) for k in ("occ", "tensor", "dram")]
        print("| " + " | ".join(cells) + " |")
    print("\n(b) cost per call")
    print("| call | median us | p99 us | note |")
    print("|---|---|---|---|")
    for name, c in results["costs"].items():
        print(
            f"| {name} | {fmt(c.get('median_us'), '.1f')} | "
            f"{fmt(c.get('p99_us', c.get('max_us')), '.1f')} | {c.get('error', '')} |"
        )
    print("\n(c) non-root")
    for key, value in results["least_privilege"].items():
        print(f"  {key}: {value}")
    print("\n(e) end to end")
    for key, value in results["end_to_end"].items():
        print(f"  {key}: {value}")
    print(f"\nelapsed {results['elapsed_s']:.0f} s")
    out_dir = os.environ.get("OUT")
    if out_dir:
        path = Path(out_dir) / "gpu_exporter_check.json"
        path.write_text(json.dumps(results, indent=2, sort_keys=True, default=str) + "\n")
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
