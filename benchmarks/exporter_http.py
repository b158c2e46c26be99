"""Exporter HTTP under load: one scraper, 50 concurrent scrapers, 1,000 idle connections.

The exporter runs in its own process as the CLI builds it (8 fake GPUs sampled every 0.5 s,
each fake read burning the CPU an NVML call costs on the H100, plus prometheus_client's process
collector, read at most once a second as the CLI now does; every scrape with an older server);
``--server-file`` serves it with another ``server.py`` (the same ``make_app`` /
``ExporterServer`` API), so an older server can be measured side by side:

    git show HEAD:exporter/server.py > /tmp/old_server.py
    python benchmarks/exporter_http.py --server-file /tmp/old_server.py --json old.json
    python benchmarks/exporter_http.py --json new.json

Phases, in order, on one exporter process:

1. idle: RSS and threads after a 3 s warm-up;
2. single: one scraper, 5 scrapes a second for ``--single-seconds``, first with a fresh
   connection per scrape (as HTTP/1.0 peers do), then on one kept-alive connection (as
   Prometheus does): p50, p99, max; then ``/healthz`` the same way, the machine's floor;
3. load: ``--scrapers`` scrapers (threads spread over ``--client-processes`` processes, real
   ``http.client`` connections, a fresh one per scrape) for ``--load-seconds``; each scrapes
   every ``--period`` seconds, all on the same ticks (bursts of 50 connections at once): errors
   (refused, reset, timed out after 10 s, status other than 200), p50, p99, max, RSS and threads
   sampled every 0.5 s; then RSS 30 s after the scrapers leave, and CPU over those 30 s;
4. idle connections: 1,000 connections opened and held 5 s without a request (threads, RSS, and
   one scrape meanwhile), then closed; RSS 30 s later.
"""

from __future__ import annotations

import argparse
import http.client
import importlib.util
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import ModuleType
from typing import Any

from proc_stats import cpu_seconds

GPUS = 8
INTERVAL_S = 0.5
CALL_COST_S = 3e-6  # h100-probe.md, as in exporter_overhead.py
GPM_COST_S = 39e-6
SETTLE_S = 30.0


# -- the exporter (child process) ------------------------------------------------------------


def load_server(path: str | None) -> ModuleType:
    if path is None:
        from wan_otel.exporter import server

        return server
    spec = importlib.util.spec_from_file_location("bench_server", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it loads
    spec.loader.exec_module(module)
    return module


def serve(port: int, server_file: str | None) -> None:
    from prometheus_client import CollectorRegistry
    from prometheus_client.process_collector import ProcessCollector

    from wan_otel.exporter.collector import SnapshotCollector
    from wan_otel.exporter.fake import FakeBackend, FakeGpu
    from wan_otel.exporter.sampler import Sampler

    server_module = load_server(server_file)
    backend = FakeBackend(
        [FakeGpu() for _ in range(GPUS)], call_cost_s=CALL_COST_S, gpm_cost_s=GPM_COST_S
    )
    registry = CollectorRegistry()
    metrics: Any = registry
    on_sample = None
    if server_file is None:  # wired as the CLI wires it: each sample encoded once, after it
        from wan_otel.exporter.exposition import Exposition

        metrics = exposition = Exposition(registry)
        on_sample = lambda _snapshot: exposition.prepare()  # noqa: E731
    sampler = Sampler(backend, INTERVAL_S, on_sample=on_sample)
    registry.register(SnapshotCollector(sampler, hostname="bench"))
    if server_file is None:
        from wan_otel.exporter.exposition import Throttled

        registry.register(Throttled(ProcessCollector(registry=None), max_age_s=1.0))
    else:
        ProcessCollector(registry=registry)
    server = server_module.ExporterServer(
        server_module.make_app(metrics, sampler.ready), "127.0.0.1", port
    )
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    server.start()
    sampler.start()
    signal.sigwait({signal.SIGTERM})
    server.stop()
    sampler.close()


# -- scrapers (client processes) -------------------------------------------------------------


def scrape(port: int, timeout_s: float = 10.0, path: str = "/metrics") -> tuple[float, str]:
    """(seconds, "" or the error) of one GET on a fresh connection."""
    started = time.perf_counter()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout_s)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        body = response.read()
        error = "" if response.status == 200 and body else f"status {response.status}"
    except OSError as exc:
        error = type(exc).__name__
    except http.client.HTTPException as exc:
        error = type(exc).__name__
    finally:
        connection.close()
    return time.perf_counter() - started, error


def scrapers(
    port: int, threads: int, start_at: float, seconds: float, period: float, out: Path
) -> None:
    """Runs ``threads`` paced scrapers from wall time ``start_at``; writes their results to
    ``out`` (a file, not a pipe: a pipe would fill while the driver samples the server)."""
    latencies: list[float] = []
    errors: dict[str, int] = {}
    lock = threading.Lock()

    def one() -> None:
        mine, my_errors = [], []
        time.sleep(max(0.0, start_at - time.time()))
        t0 = time.monotonic()
        next_at = t0
        while time.monotonic() - t0 < seconds:
            latency, error = scrape(port)
            mine.append(latency)
            if error:
                my_errors.append(error)
            next_at += period
            time.sleep(max(0.0, next_at - time.monotonic()))
        with lock:
            latencies.extend(mine)
            for e in my_errors:
                errors[e] = errors.get(e, 0) + 1

    pool = [threading.Thread(target=one) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    out.write_text(json.dumps({"latencies": latencies, "errors": errors}))


# -- the driver ------------------------------------------------------------------------------


def proc_status(pid: int) -> tuple[float, int]:
    """(RSS MiB, threads) of a process."""
    rss, threads = float("nan"), -1
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) / 1024
        elif line.startswith("Threads:"):
            threads = int(line.split()[1])
    return rss, threads


def percentiles(latencies: list[float]) -> dict[str, float]:
    ordered = sorted(latencies)
    if not ordered:
        return {"p50_ms": float("nan"), "p99_ms": float("nan"), "max_ms": float("nan")}
    return {
        "p50_ms": 1000 * statistics.median(ordered),
        "p99_ms": 1000 * ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))],
        "max_ms": 1000 * ordered[-1],
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def single(port: int, seconds: float, keep_alive: bool, path: str = "/metrics") -> dict[str, Any]:
    """One scraper at 5 Hz: a fresh connection per scrape, or one kept alive (as Prometheus)."""
    latencies, errors = [], 0
    kept = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    t0 = next_at = time.monotonic()
    while time.monotonic() - t0 < seconds:
        if keep_alive:
            started = time.perf_counter()
            kept.request("GET", path)
            response = kept.getresponse()
            ok = response.status == 200 and response.read()
            latency, error = time.perf_counter() - started, "" if ok else "failed"
        else:
            latency, error = scrape(port, path=path)
        latencies.append(latency)
        errors += bool(error)
        next_at += 0.2
        time.sleep(max(0.0, next_at - time.monotonic()))
    kept.close()
    return {"scrapes": len(latencies), "errors": errors, **percentiles(latencies)}


def load(pid: int, port: int, args: argparse.Namespace) -> dict[str, Any]:
    start_at = time.time() + 2.0
    per = [args.scrapers // args.client_processes] * args.client_processes
    for i in range(args.scrapers % args.client_processes):
        per[i] += 1
    outs = [Path(tempfile.mkdtemp()) / f"scrapers-{i}.json" for i in range(len(per))]
    clients = [
        subprocess.Popen(
            [sys.executable, __file__, "--scrape-port", str(port), "--threads", str(n),
             "--start-at", repr(start_at), "--load-seconds", repr(args.load_seconds),
             "--period", repr(args.period), "--out", str(out)],
        )
        for n, out in zip(per, outs)
    ]  # fmt: skip
    samples: list[tuple[float, int]] = []
    time.sleep(max(0.0, start_at - time.time()))
    cpu0, t0 = cpu_seconds(pid), time.monotonic()
    while any(c.poll() is None for c in clients):
        samples.append(proc_status(pid))
        time.sleep(0.5)
    cpu = (cpu_seconds(pid) - cpu0) / (time.monotonic() - t0)
    latencies: list[float] = []
    errors: dict[str, int] = {}
    for c, out in zip(clients, outs):
        assert c.wait() == 0, "a scraper process failed"
        result = json.loads(out.read_text())
        shutil.rmtree(out.parent)
        latencies.extend(result["latencies"])
        for k, v in result["errors"].items():
            errors[k] = errors.get(k, 0) + v
    return {
        "scrapes": len(latencies),
        "scrapes_per_s": len(latencies) / args.load_seconds,
        "errors": sum(errors.values()),
        "error_kinds": errors,
        "server_cpu_pct": 100 * cpu,
        "rss_max_mib": max(s[0] for s in samples),
        "threads_max": max(s[1] for s in samples),
        **percentiles(latencies),
    }


def idle_connections(pid: int, port: int, count: int) -> dict[str, Any]:
    held: list[socket.socket] = []
    refused = 0
    for _ in range(count):
        sock = socket.socket()
        sock.settimeout(5)
        try:
            sock.connect(("127.0.0.1", port))
            held.append(sock)
        except OSError:
            refused += 1
            sock.close()
    time.sleep(5.0)
    rss, threads = proc_status(pid)
    latency, error = scrape(port)
    for sock in held:
        sock.close()
    time.sleep(SETTLE_S)
    rss_after, threads_after = proc_status(pid)
    return {
        "connected": len(held),
        "refused": refused,
        "rss_held_mib": rss,
        "threads_held": threads,
        "scrape_while_held_ms": 1000 * latency,
        "scrape_while_held_error": error,
        "rss_after_mib": rss_after,
        "threads_after": threads_after,
    }


def measure(args: argparse.Namespace) -> dict[str, Any]:
    port = free_port()
    command = [sys.executable, __file__, "--serve", str(port)]
    if args.server_file:
        command += ["--server-file", args.server_file]
    child = subprocess.Popen(command, cwd="/")
    try:
        deadline = time.monotonic() + 20
        while scrape(port, 1.0)[1]:
            assert time.monotonic() < deadline and child.poll() is None, "exporter did not start"
            time.sleep(0.1)
        time.sleep(3.0)
        rss_idle, threads_idle = proc_status(child.pid)
        result: dict[str, Any] = {
            "rss_idle_mib": rss_idle,
            "threads_idle": threads_idle,
            "loadavg_1m_at_start": os.getloadavg()[0],  # other work on the machine
        }
        result["single"] = single(port, args.single_seconds, keep_alive=False)
        result["single_keep_alive"] = single(port, args.single_seconds, keep_alive=True)
        # The floor: an endpoint that does no work, paced the same way on the same machine.
        result["single_healthz"] = single(port, args.single_seconds, False, "/healthz")
        result["load"] = load(child.pid, port, args)
        cpu0, t0 = cpu_seconds(child.pid), time.monotonic()
        time.sleep(SETTLE_S)  # idle, but scraped a moment ago (formats still in use)
        result["cpu_idle_after_scrapes_pct"] = (
            100 * (cpu_seconds(child.pid) - cpu0) / (time.monotonic() - t0)
        )
        result["load"]["rss_after_mib"], result["load"]["threads_after"] = proc_status(child.pid)
        result["idle_connections"] = idle_connections(child.pid, port, args.connections)
        result["loadavg_1m_at_end"] = os.getloadavg()[0]
    finally:
        child.send_signal(signal.SIGTERM)
        child.wait(timeout=30)
    return result


def report(result: dict[str, Any], args: argparse.Namespace) -> None:
    s, ka, hz = result["single"], result["single_keep_alive"], result["single_healthz"]
    ld, ic = result["load"], result["idle_connections"]
    print(
        f"server: {args.server_file or 'wan_otel.exporter.server'}; {GPUS} fake GPUs every "
        f"{INTERVAL_S} s; python {platform.python_version()}; load average (1 min) "
        f"{result['loadavg_1m_at_start']:.2f} at start, {result['loadavg_1m_at_end']:.2f} at end"
    )
    print(
        f"idle: RSS {result['rss_idle_mib']:.1f} MiB, {result['threads_idle']} threads\n"
        f"single scraper ({s['scrapes']} scrapes, {s['errors']} errors): p50 {s['p50_ms']:.2f} "
        f"ms, p99 {s['p99_ms']:.2f} ms, max {s['max_ms']:.2f} ms; kept alive: p50 "
        f"{ka['p50_ms']:.2f} ms, p99 {ka['p99_ms']:.2f} ms, max {ka['max_ms']:.2f} ms; /healthz "
        f"(fresh connections): p50 {hz['p50_ms']:.2f} ms, p99 {hz['p99_ms']:.2f} ms\n"
        f"{args.scrapers} scrapers every {args.period} s for {args.load_seconds:.0f} s: "
        f"{ld['scrapes']} scrapes ({ld['scrapes_per_s']:.0f}/s), errors {ld['errors']} "
        f"{ld['error_kinds']}, p50 {ld['p50_ms']:.2f} ms, p99 {ld['p99_ms']:.2f} ms, max "
        f"{ld['max_ms']:.2f} ms; server CPU {ld['server_cpu_pct']:.0f} % of a core; RSS max "
        f"{ld['rss_max_mib']:.1f} MiB, threads max {ld['threads_max']}; {SETTLE_S:.0f} s after: "
        f"RSS {ld['rss_after_mib']:.1f} MiB, {ld['threads_after']} threads, CPU "
        f"{result['cpu_idle_after_scrapes_pct']:.2f} % of a core\n"
        f"{args.connections} idle connections: {ic['connected']} connected, {ic['refused']} "
        f"refused; held: {ic['threads_held']} threads, RSS {ic['rss_held_mib']:.1f} MiB, a "
        f"scrape meanwhile {ic['scrape_while_held_ms']:.1f} ms "
        f"{ic['scrape_while_held_error'] or 'ok'}; {SETTLE_S:.0f} s after: RSS "
        f"{ic['rss_after_mib']:.1f} MiB, {ic['threads_after']} threads"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server-file", help="serve with this server.py instead")
    parser.add_argument("--single-seconds", type=float, default=60.0)
    parser.add_argument("--scrapers", type=int, default=50)
    parser.add_argument("--client-processes", type=int, default=5)
    parser.add_argument("--period", type=float, default=0.1, help="seconds between scrapes")
    parser.add_argument("--load-seconds", type=float, default=60.0)
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--json", type=Path, help="write the results here too")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--scrape-port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--start-at", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.server_file)
        return 0
    if args.scrape_port:
        scrapers(
            args.scrape_port, args.threads, args.start_at, args.load_seconds, args.period, args.out
        )
        return 0
    result = measure(args)
    report(result, args)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
