"""Server overhead per request, a burst of concurrent clients, and memory under sustained load
(tiny preset, one process; uvicorn + Starlette on loopback).

Overhead: the same tiny job (32x32, 1 frame, 1 step, mp4 export) run two ways on one loaded
server, alternating so that drift hits both alike:

- direct: ``engine.run(job)`` called in this process, the worker's own call: RunConfig, the
  generation with the same instrumentation, export, span emission, store flush;
- served: ``POST /v1/videos`` then ``GET /v1/videos/{id}?wait=`` on one keep-alive
  connection, from the request's first byte to the completed record, by a client in a process
  of its own (``--client process``, as real clients are; ``--client thread`` puts it in this
  process, as before 2026-11-28, where its own parsing competes with the server for the GIL).

What the server adds is measured per request as the served time minus the wall time of that
same job's ``engine.run`` in the worker (paired: the generation's own jitter, several ms on a
small VM, cancels out): HTTP (the ASGI stack with its HTTP server span), validation on a
thread, two ``job.json`` writes, the queue hand-off to the worker thread, the long poll's
wake-up on the event loop. The unpaired difference of the medians of direct and served calls
is printed too, with the noise it carries.

Burst: ``--burst`` clients, each on its own connection, POST at once while a job holds the
worker (a full queue): every answer must be a 202 or a 429, none a reset; their latencies.

Load: ``--jobs`` requests through a full queue (POST until 429, then wait for the oldest),
RSS read every ``--every`` finished jobs.

    python benchmarks/serve_overhead.py [--rounds 60] [--burst 200] [--jobs 600] [--json out.json]
"""

from __future__ import annotations

import argparse
import collections
import http.client
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import torch

from wan_otel.pipeline.runner.model_flags import ModelChoice
from wan_otel.pipeline.serve import EngineConfig, ServeConfig, Server
from wan_otel.pipeline.serve.jobs import IN_PROGRESS, Job, describe
from wan_otel.pipeline.serve.validation import VideoRequest
from wan_otel.store.run_store import new_run_id

BODY = {"prompt": "a cat", "size": "32x32", "num_frames": 1, "num_inference_steps": 1, "seed": 1}


def rss_mib() -> float:
    with open("/proc/self/statm") as handle:
        pages = int(handle.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


class Client:
    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if data is not None else {}
        self.conn.request(method, path, body=data, headers=headers)
        response = self.conn.getresponse()
        payload = response.read()
        return response.status, json.loads(payload) if payload else None

    def generate(self) -> dict[str, Any]:
        status, record = self.call("POST", "/v1/videos", BODY)
        assert status == 202, record
        status, record = self.call("GET", f"/v1/videos/{record['id']}?wait=60")
        assert record["status"] == "completed", record
        return dict(record)


def direct(server: Server, n: int) -> float:
    """One job through ``engine.run``, as the worker calls it; seconds."""
    request = VideoRequest("a cat", None, 32, 32, 1, 1, 5.0, 8, 1)
    job = Job(
        id=new_run_id(), request=request, model=server.engine.model_name,
        trace_id=f"{n + 1:032x}", parent=None, created_ns=time.time_ns(),
        status=IN_PROGRESS, started_ns=time.time_ns(), described=describe(request),
    )  # fmt: skip

    class Quiet:
        def on_open(self, record: Any) -> None: ...
        def on_close(self, record: Any) -> None: ...

    server.files.create(job.id)  # as the queue does before the worker takes a job
    direct_ids.add(job.id)
    start = time.perf_counter()
    server.engine.run(job, Quiet(), lambda: None)
    return time.perf_counter() - start


direct_ids: set[str] = set()
"""Jobs run through ``engine.run`` here (not served), told apart from served ones."""


def timed_runs(server: Server) -> dict[str, float]:
    """Wrap the worker's ``engine.run`` to keep each job's wall time (paired differences)."""
    seconds: dict[str, float] = {}
    run = server.engine.run

    def timed(job: Job, *args: Any) -> None:
        start = time.perf_counter()
        try:
            run(job, *args)
        finally:
            seconds[job.id] = time.perf_counter() - start

    server.engine.run = timed  # type: ignore[method-assign]
    return seconds


CLIENT_PROCESS = """
import http.client, json, sys, time
conn = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=120)
body = sys.argv[2].encode()
for line in sys.stdin:
    start = time.perf_counter()
    conn.request("POST", "/v1/videos", body, {"Content-Type": "application/json"})
    job = json.loads(conn.getresponse().read())
    conn.request("GET", "/v1/videos/%s?wait=60" % job["id"])
    record = json.loads(conn.getresponse().read())
    print(json.dumps([time.perf_counter() - start, record]), flush=True)
"""
"""A client of its own process (http.client only): what it parses costs the server no GIL."""


class ProcessClient:
    def __init__(self, port: int) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", CLIENT_PROCESS, str(port), json.dumps(BODY)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip

    def generate(self) -> tuple[float, dict[str, Any]]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()
        seconds, record = json.loads(self.proc.stdout.readline())
        assert record["status"] == "completed", record
        return float(seconds), dict(record)

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(30)


class ThreadClient(Client):
    """The client in the server's own process (how this was measured before 2026-11-28)."""

    def generate_timed(self) -> tuple[float, dict[str, Any]]:
        start = time.perf_counter()
        record = self.generate()
        return time.perf_counter() - start, record


def overhead(server: Server, rounds: int, client: str) -> dict[str, Any]:
    try:
        return _overhead(server, rounds, client)
    finally:
        del server.engine.run  # the class's method again: the load test keeps no timings


def _overhead(server: Server, rounds: int, client_kind: str) -> dict[str, Any]:
    if client_kind == "process":
        process = ProcessClient(server.port)
        served, close = process.generate, process.close
    else:
        served, close = ThreadClient(server.port).generate_timed, lambda: None
    runs = timed_runs(server)
    try:
        for i in range(5):  # warm both paths
            served()
            direct(server, 90000 + i)
        served_s, direct_s, paired_s, queue_s = [], [], [], []
        for i in range(rounds):
            direct_s.append(direct(server, i))
            seconds, record = served()
            served_s.append(seconds)
            paired_s.append(seconds - runs[record["id"]])
            queue_s.append(record["timings"]["queue_wait_s"])
    finally:
        close()
    med = statistics.median

    def ms(value: float) -> float:
        return round(1000 * value, 2)

    return {
        "rounds": rounds,
        "client": client_kind,
        "overhead_paired_median_ms": ms(med(paired_s)),
        "overhead_paired_p90_ms": ms(statistics.quantiles(paired_s, n=10)[-1]),
        "direct_median_ms": ms(med(direct_s)),
        "served_median_ms": ms(med(served_s)),
        "worker_run_median_ms": ms(med(runs[k] for k in runs if k not in direct_ids)),
        "overhead_unpaired_median_ms": ms(med(served_s) - med(direct_s)),
        "server_queue_wait_median_ms": ms(med(queue_s)),
    }


def burst(server: Server, clients: int) -> dict[str, Any]:
    """``clients`` POSTs at once, each on its own connection, while the queue is full."""
    hold = threading.Event()
    run = server.engine.run

    def held(job: Job, *args: Any) -> None:
        hold.wait(120)
        run(job, *args)

    server.engine.run = held  # type: ignore[method-assign]
    results: list[Any] = [None] * clients
    barrier = threading.Barrier(clients + 1)

    def post(index: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)
        try:
            barrier.wait(60)
            start = time.perf_counter()
            conn.request(
                "POST", "/v1/videos", json.dumps(BODY), {"Content-Type": "application/json"}
            )
            response = conn.getresponse()
            response.read()
            results[index] = (response.status, time.perf_counter() - start)
        except Exception as exc:
            results[index] = exc
        finally:
            conn.close()

    try:
        threads = [threading.Thread(target=post, args=(i,)) for i in range(clients)]
        for thread in threads:
            thread.start()
        barrier.wait(60)
        started = time.perf_counter()
        for thread in threads:
            thread.join(120)
        elapsed = time.perf_counter() - started
    finally:
        hold.set()
        del server.engine.run
        assert server.queue.wait_idle(300)
    answered = [r for r in results if isinstance(r, tuple)]
    seconds = sorted(s for _, s in answered)
    statuses: dict[str, int] = collections.Counter(str(code) for code, _ in answered)

    def ms(q: float) -> float:
        return round(1000 * seconds[min(len(seconds) - 1, int(q * len(seconds)))], 1)

    return {
        "clients": clients,
        "statuses": dict(sorted(statuses.items())),
        "errors": [repr(r) for r in results if not isinstance(r, tuple)],
        "all_answered_s": round(elapsed, 3),
        "latency_ms_p50_p99_max": [ms(0.5), ms(0.99), round(1000 * seconds[-1], 1)],
    }


def load(server: Server, jobs: int, every: int) -> dict[str, Any]:
    client = Client(server.port)
    waiting: collections.deque[str] = collections.deque()
    done, submitted, rejected, samples = 0, 0, 0, []
    start = time.perf_counter()
    while done < jobs:
        while submitted < jobs:
            status, record = client.call("POST", "/v1/videos", BODY)
            if status == 429:
                rejected += 1
                break
            assert status == 202, record
            waiting.append(record["id"])
            submitted += 1
        status, record = client.call("GET", f"/v1/videos/{waiting.popleft()}?wait=60")
        assert record["status"] == "completed", record
        done += 1
        if done % every == 0:
            samples.append((done, round(rss_mib(), 1)))
    elapsed = time.perf_counter() - start
    xs, ys = [d for d, _ in samples], [r for _, r in samples]
    half = len(xs) // 2

    def kib_per_job(lo: int) -> float:
        return round(statistics.linear_regression(xs[lo:], ys[lo:]).slope * 1024, 3)

    return {
        "jobs": jobs,
        "seconds": round(elapsed, 1),
        "jobs_per_s": round(jobs / elapsed, 1),
        "rejected_429": rejected,
        "rss_mib": samples,
        "rss_growth_kib_per_job_after_first_sample": kib_per_job(1) if len(xs) > 2 else None,
        "rss_growth_kib_per_job_second_half": kib_per_job(half) if len(xs) - half > 1 else None,
    }


def machine() -> dict[str, str]:
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        model = next(
            (ln.split(":", 1)[1].strip() for ln in lscpu.splitlines() if "Model name" in ln), "?"
        )
    except OSError:
        model = "?"
    return {
        "cpu": model,
        "cores": str(os.cpu_count()),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument(
        "--client", choices=["process", "thread"], default="process",
        help="the measured client in a process of its own, or a thread of this one",
    )  # fmt: skip
    parser.add_argument("--burst", type=int, default=200)
    parser.add_argument("--jobs", type=int, default=600)
    parser.add_argument("--every", type=int, default=50)
    parser.add_argument("--max-queue", type=int, default=8)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as store:
        model = ModelChoice("tiny", None, torch.device("cpu"), torch.float32, "none")
        config = ServeConfig(
            EngineConfig(model, Path(store)), host="127.0.0.1", port=0, max_queue=args.max_queue
        )
        server = Server(config)
        server.start()
        assert server.wait_loaded(120) and server.load_error is None, server.load_error
        result = {
            "machine": machine(),
            "rss_mib_after_load": round(rss_mib(), 1),
            "overhead": overhead(server, args.rounds, args.client),
            "burst": burst(server, args.burst),
            "load": load(server, args.jobs, args.every),
        }
        server.shutdown()
    text = json.dumps(result, indent=2)
    print(text)
    if args.json is not None:
        args.json.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
