"""GPU check of ``wan-otel serve``: the full TI2V-5B architecture behind the API on one GPU.

1. A server in this process (``ti2v-5b-random``, bf16, CUDA): time to ready (build, place,
   warm-up generation).
2. Full-size jobs through HTTP (1280x704, 121 frames, ``--steps`` steps): one inside a caller's
   trace, one image-to-video, one more text job (the instrumentation moves back); each read
   back with ``wan-otel report`` (steps, SM activity from the run's own GPU samples).
3. What the server adds per request on a GPU: small jobs, served end to end minus the same
   job's ``engine.run`` wall time (paired, as ``serve_overhead.py``).
4. Delete of a running full-size job: it must stop within one step (and its files go).

Where imageio-ffmpeg is missing (the device image has imageio without it), videos are written
with diffusers' OpenCV fallback and the script says so. Writes ``serve_gpu_check.json`` to
``$OUT`` when set; exits 1 if a check failed.

    python benchmarks/serve_gpu_check.py [--steps 4] [--rounds 10]
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import importlib.util
import io
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve_overhead import Client, timed_runs

from wan_otel.cli import main as cli
from wan_otel.pipeline.runner.model_flags import ModelChoice
from wan_otel.pipeline.serve import EngineConfig, ServeConfig, Server

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def opencv_fallback() -> bool:
    """Route mp4 export through diffusers' OpenCV writer when imageio has no ffmpeg."""
    if importlib.util.find_spec("imageio_ffmpeg") is not None:
        return False
    from diffusers.utils import export_utils

    export_utils.export_to_video = export_utils._legacy_export_to_video  # type: ignore[assignment]
    return True


def png(width: int, height: int) -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (30, 120, 200)).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def until_final(client: Client, job_id: str) -> dict[str, Any]:
    """Long polls of 60 s (the API's longest) until the job is final."""
    while True:
        status, record = client.call("GET", f"/v1/videos/{job_id}?wait=60")
        assert status == 200, record
        if record["status"] in ("completed", "failed"):
            return dict(record)


def report(store: Path, run_id: str) -> dict[str, Any]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = cli(["report", "--run-id", run_id, "--store", str(store), "--format", "json"])
    assert code == 0, code
    data = json.loads(out.getvalue())
    stages = {s["key"]: s for s in data["stages"]}
    samples = store / run_id / "gpu_samples.jsonl"
    return {
        "status": data["summary"]["status"],
        "steps_done": data["summary"]["steps_done"],
        "total_s": data["summary"].get("total_s"),
        "denoise_s": stages["denoising"]["duration_s"],
        "denoise_sm_pct": stages["denoising"]["sm_pct"],
        "gpu_samples": len(samples.read_text().splitlines()) if samples.is_file() else 0,
    }


def run(args: argparse.Namespace, store: Path) -> dict[str, Any]:
    result: dict[str, Any] = {"opencv_fallback": opencv_fallback(), "checks": {}}
    checks = result["checks"]
    started = time.perf_counter()
    engine = EngineConfig(
        ModelChoice("ti2v-5b-random", None, torch.device("cuda"), torch.bfloat16, "none"), store
    )
    if args.dry_run:  # the script itself, on a CPU with the tiny preset
        engine = EngineConfig(
            ModelChoice("tiny", None, torch.device("cpu"), torch.float32, "none"), store
        )
    server = Server(ServeConfig(engine, host="127.0.0.1", port=0, max_queue=8))
    server.start()
    assert server.wait_loaded(600) and server.load_error is None, server.load_error
    result["ready_s"] = round(time.perf_counter() - started, 1)
    result["startup"] = report(store, str(server.engine.startup_run_id))
    client = Client(server.port)
    size, frames = ("64x32", 9) if args.dry_run else ("1280x704", 121)
    full = {"prompt": "a fox in snow", "size": size, "num_frames": frames, "seed": 1}
    full["num_inference_steps"] = args.steps
    width, height = (int(v) for v in size.split("x"))

    jobs: dict[str, str] = {}
    client.conn.request(
        "POST", "/v1/videos", body=json.dumps(full), headers={"traceparent": TRACEPARENT}
    )
    response = client.conn.getresponse()
    traced = json.loads(response.read())
    jobs["traced"] = traced["id"]
    checks["trace_id_is_callers"] = response.headers["X-Trace-Id"] == TRACEPARENT[3:35]
    status, image = client.call(
        "POST", "/v1/videos", {**full, "input_reference": png(width, height)}
    )
    assert status == 202, image
    jobs["image"] = image["id"]
    status, text = client.call("POST", "/v1/videos", full)
    jobs["text"] = text["id"]
    result["jobs"] = {}
    for name, job_id in jobs.items():
        record = until_final(client, job_id)
        assert record["status"] == "completed", (name, record)
        result["jobs"][name] = {"timings": record["timings"], **report(store, job_id)}
        checks[f"{name}_steps"] = result["jobs"][name]["steps_done"] == args.steps
        checks[f"{name}_gpu_samples"] = args.dry_run or result["jobs"][name]["gpu_samples"] > 0

    runs = timed_runs(server)
    small = {"prompt": "x", "size": "64x64" if args.dry_run else "256x256", "num_frames": 5}
    small["num_inference_steps"] = 2
    paired = []
    for _ in range(args.rounds):
        start = time.perf_counter()
        status, posted = client.call("POST", "/v1/videos", small)
        record = until_final(client, posted["id"])
        paired.append(time.perf_counter() - start - runs[record["id"]])
    result["overhead_paired_median_ms"] = round(1000 * statistics.median(paired), 2)
    result["overhead_paired_max_ms"] = round(1000 * max(paired), 2)

    status, victim = client.call("POST", "/v1/videos", {**full, "num_inference_steps": 50})
    assert status == 202, victim
    while client.call("GET", f"/v1/videos/{victim['id']}")[1]["steps_done"] < 2:
        time.sleep(0.05)
    job = server.queue.running()
    assert job is not None and job.id == victim["id"]
    asked = time.perf_counter()
    status, deleted = client.call("DELETE", f"/v1/videos/{victim['id']}")
    assert status == 200 and deleted["deleted"] is True, deleted
    assert server.queue.wait_idle(600)  # the worker let go of it: stopped, then removed
    result["delete_running"] = {
        "steps_done": job.steps_done,
        "seconds_to_stop": round(time.perf_counter() - asked, 2),
    }
    checks["delete_stops_within_a_step"] = job.steps_done < 50
    checks["delete_removes_the_files"] = not (store / victim["id"]).exists()
    server.shutdown()
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--dry-run", action="store_true", help="tiny preset on the CPU")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as store:
        result = run(args, Path(store))
    result["device"] = "cpu" if args.dry_run else torch.cuda.get_device_name(0)
    result["torch"] = torch.__version__
    text = json.dumps(result, indent=2)
    print(text)
    if os.environ.get("OUT"):
        (Path(os.environ["OUT"]) / "serve_gpu_check.json").write_text(text + "\n")
    failed = [name for name, ok in result["checks"].items() if not ok]
    if failed:
        print("FAILED:", ", ".join(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
