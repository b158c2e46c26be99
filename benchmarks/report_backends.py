"""Benchmark: `wan-otel report` from Prometheus + a Collector traces file vs from the store.

Takes a stored run (default: the committed H100 50-step run), backfills its GPU samples into a
real Prometheus as the exporter's counter (`promtool tsdb create-blocks-from openmetrics`),
starts Prometheus on loopback, then times the report built from the traces file + Prometheus
against the one built from the store (whole process, median of N) and counts HTTP requests.

    python benchmarks/report_backends.py [--run-dir docs/examples/runs/<id>] [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from wan_otel import semconv as sc

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_RUN = next((ROOT / "docs" / "examples" / "runs").glob("*-none-50steps-*"), None)


def openmetrics(samples_path: Path) -> str:
    family = sc.GPU_SM_ACTIVE.removesuffix("_total")
    lines = [f"# TYPE {family} counter"]
    for raw in samples_path.read_text().splitlines():
        s = json.loads(raw)
        labels = f'gpu="{s["gpu"]}",uuid="{s["uuid"]}",source="{s["source"]}",hostname="bench"'
        lines.append(f"{sc.GPU_SM_ACTIVE}{{{labels}}} {s['sm_active_s']} {s['t_ns'] / 1e9:.3f}")
    return "\n".join(lines) + "\n# EOF\n"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def timed(cmd: list[str], repeat: int) -> tuple[float, str]:
    times, out = [], ""
    for _ in range(repeat):
        start = time.perf_counter()
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--run-dir", type=Path, default=DEFAULT_RUN)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    run_dir: Path = args.run_dir
    run_id = run_dir.name
    work = Path(tempfile.mkdtemp(prefix="wan-otel-bench-prom-"))
    (work / "in.om").write_text(openmetrics(run_dir / "gpu_samples.jsonl"))
    subprocess.run(
        [
            "promtool",
            "tsdb",
            "create-blocks-from",
            "openmetrics",
            str(work / "in.om"),
            str(work / "data"),
        ],
        check=True,
        capture_output=True,
    )
    (work / "prometheus.yml").write_text("global: {}\n")
    port = free_port()
    prom = subprocess.Popen(
        [
            "prometheus",
            f"--config.file={work / 'prometheus.yml'}",
            f"--storage.tsdb.path={work / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--storage.tsdb.retention.time=100y",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(url + "/-/ready", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        base = [
            sys.executable,
            "-m",
            "wan_otel.cli",
            "report",
            "--run-id",
            run_id,
            "--format",
            "json",
        ]
        store_s, store_out = timed([*base, "--store", str(run_dir.parent)], args.repeat)
        prom_s, prom_out = timed(
            [*base, "--traces", str(run_dir / "spans.jsonl"), "--prometheus", url], args.repeat
        )
    finally:
        prom.terminate()
        prom.wait(timeout=10)
        shutil.rmtree(work, ignore_errors=True)
    a, b = json.loads(store_out), json.loads(prom_out)
    requests = next(n for n in b["notes"] if "HTTP request" in n)
    diffs = [
        abs(x["sm_pct"] - y["sm_pct"])
        for x, y in zip(a["trace"], b["trace"])
        if x["sm_pct"] is not None and y["sm_pct"] is not None
    ]
    print(f"run {run_id}: {len(a['trace'])} trace rows, {a['summary']['steps_done']} steps")
    print(f"{'source':<34} {'median s':>9}")
    print(f"{'store (spans + samples files)':<34} {store_s:9.3f}")
    print(f"{'traces file + Prometheus':<34} {prom_s:9.3f}")
    print(
        f"Prometheus: {requests}; rows with SM in both: {len(diffs)}, "
        f"max |SM store - SM Prometheus| = {max(diffs):.4f} pp"
    )
    print(
        f"avg SM: store {a['summary']['avg_sm_pct']:.2f} %, Prometheus "
        f"{b['summary']['avg_sm_pct']:.2f} %"
    )


if __name__ == "__main__":
    main()
