"""Zero-code, end to end: the user server of docs/examples runs under ``opentelemetry-instrument``
configured by ``OTEL_*`` variables only, exporting OTLP/HTTP to a receiver this test runs on
loopback. One HTTP request later, the trace holds the server's HTTP span with our generation
under it, and ``wan-otel report --traces`` rebuilds the run from the spans the agent exported,
written as the Collector's file exporter writes them.
"""

from __future__ import annotations

import base64
import gzip
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import json_format
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from tests.report.helpers import run_cli
from wan_otel import semconv as sc
from wan_otel.store.otlp_json import SpanRecord, read_otlp_file

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
USER_SERVER = ROOT / "docs" / "examples" / "user_server.py"
SERVICE = "video-server"
KIND_INTERNAL, KIND_SERVER = 1, 2
START_TIMEOUT_S = 90.0  # imports torch and diffusers and builds the tiny pipeline: ~7 s here
EXPORT_TIMEOUT_S = 20.0


class OtlpReceiver:
    """OTLP/HTTP (protobuf) on a free loopback port: keeps each trace export request and the
    names of the metrics it is sent; answers logs with an empty 200."""

    def __init__(self) -> None:
        self.traces: list[ExportTraceServiceRequest] = []
        self.metric_names: set[str] = set()
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                answer = receiver.receive(self.path, body)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def receive(self, path: str, body: bytes) -> bytes:
        if path == "/v1/traces":
            request = ExportTraceServiceRequest.FromString(body)
            with self._lock:
                self.traces.append(request)
            return ExportTraceServiceResponse().SerializeToString()
        if path == "/v1/metrics":
            metrics = ExportMetricsServiceRequest.FromString(body)
            names = {
                metric.name
                for resource in metrics.resource_metrics
                for scope in resource.scope_metrics
                for metric in scope.metrics
            }
            with self._lock:
                self.metric_names |= names
            return ExportMetricsServiceResponse().SerializeToString()
        return b""

    def collector_lines(self) -> list[str]:
        """The trace requests as the Collector's file exporter writes them: OTLP/JSON, one
        request a line, hex ids and integer enums."""
        with self._lock:
            requests = list(self.traces)
        return [
            json.dumps(_hex_ids(json_format.MessageToDict(r, use_integers_for_enums=True)))
            for r in requests
        ]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=5)


def _hex_ids(value: Any) -> Any:
    """protobuf's JSON writes bytes as base64; OTLP/JSON writes ids as hex."""
    if isinstance(value, dict):
        return {
            key: base64.b64decode(item).hex()
            if key in ("traceId", "spanId", "parentSpanId") and isinstance(item, str)
            else _hex_ids(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_hex_ids(item) for item in value]
    return value


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    started = OtlpReceiver()
    try:
        yield started
    finally:
        started.close()


class UserServer:
    """The example server under the agent, with only ``OTEL_*`` variables for configuration."""

    def __init__(self, otlp_url: str, workdir: Path) -> None:
        agent = shutil.which("opentelemetry-instrument", path=str(Path(sys.executable).parent))
        if agent is None:
            pytest.skip("opentelemetry-instrument is not installed (opentelemetry-instrumentation)")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "WAN_OTEL_"))}
        env.update(
            OTEL_SERVICE_NAME=SERVICE,
            OTEL_EXPORTER_OTLP_ENDPOINT=otlp_url,
            OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
            OTEL_LOGS_EXPORTER="none",
            OTEL_BSP_SCHEDULE_DELAY="100",  # ms: spans reach the receiver while the test waits
            OTEL_METRIC_EXPORT_INTERVAL="200",
        )
        self.process = subprocess.Popen(
            [agent, sys.executable, str(USER_SERVER), "--port", "0"],
            cwd=workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._lines: queue.Queue[str] = queue.Queue()
        self._stderr: list[str] = []
        self._pumps = [
            threading.Thread(target=self._pump, args=(self.process.stdout, True), daemon=True),
            threading.Thread(target=self._pump, args=(self.process.stderr, False), daemon=True),
        ]
        for pump in self._pumps:
            pump.start()

    def _pump(self, stream: Any, stdout: bool) -> None:
        for line in stream:
            if stdout:
                self._lines.put(line)
            else:
                self._stderr.append(line)

    def url(self) -> str:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                line = self._lines.get(timeout=0.2)
            except queue.Empty:
                assert self.process.poll() is None, f"the server exited: {self.stderr()}"
                continue
            if line.startswith("listening on "):
                return line.removeprefix("listening on ").strip()
        raise AssertionError(f"the server did not start in {START_TIMEOUT_S} s: {self.stderr()}")

    def stderr(self) -> str:
        return "".join(self._stderr[-40:])

    def stop(self) -> int:
        """SIGTERM, as Kubernetes stops a pod; killed if it does not exit."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        for pump in self._pumps:  # they end at the pipes' end of file
            pump.join(timeout=5)
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()
        return int(self.process.returncode)


@pytest.fixture
def user_server(receiver: OtlpReceiver, tmp_path: Path) -> Iterator[UserServer]:
    server = UserServer(receiver.url, tmp_path)
    try:
        yield server
    finally:
        server.stop()


def _post(url: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return dict(json.load(response))


def _wait_for(receiver: OtlpReceiver, trace_id: str, path: Path) -> list[SpanRecord]:
    """The trace's spans once both the HTTP span and our root arrived, and the generation
    metrics; the export requests are written to ``path`` in the Collector's format."""
    deadline = time.monotonic() + EXPORT_TIMEOUT_S
    while True:
        path.write_text("".join(line + "\n" for line in receiver.collector_lines()))
        notes: list[str] = []
        spans = [s for s in read_otlp_file(path, notes) if s.trace_id == trace_id]
        names = {s.name for s in spans}
        kinds = {s.kind for s in spans}
        metrics_in = sc.METRIC_GENERATION_DURATION in receiver.metric_names
        if sc.SPAN_GENERATE in names and KIND_SERVER in kinds and metrics_in:
            assert notes == []
            return spans
        assert time.monotonic() < deadline, (names, kinds, sorted(receiver.metric_names))
        time.sleep(0.1)


def test_agent_traces_a_user_server_and_the_report_rebuilds_the_run(
    receiver: OtlpReceiver, user_server: UserServer, tmp_path: Path
) -> None:
    answer = _post(user_server.url() + "/generate", {"prompt": "a fox", "steps": 2, "seed": 5})
    assert answer["frames"] == 9

    traces = tmp_path / "collector-traces.jsonl"
    spans = _wait_for(receiver, answer["trace_id"], traces)
    assert user_server.stop() == 0

    # The HTTP server span is the trace's root and the parent of our generation.
    (http,) = [s for s in spans if s.kind == KIND_SERVER]
    (root,) = [s for s in spans if s.name == sc.SPAN_GENERATE]
    assert http.parent_span_id is None
    assert root.parent_span_id == http.span_id and root.kind == KIND_INTERNAL
    assert root.resource["service.name"] == SERVICE

    # The whole run is in the trace: every span but the HTTP one is ours, with the run id.
    run_id = root.attributes[sc.RUN_ID]
    assert isinstance(run_id, str)
    ours = [s for s in spans if s is not http]
    assert all(s.attributes[sc.RUN_ID] == run_id for s in ours)
    names = sorted(s.name for s in ours)
    assert names == sorted(
        [sc.SPAN_GENERATE, sc.SPAN_TEXT_ENCODE, sc.SPAN_PREPROCESS, sc.SPAN_DENOISE]
        + [sc.SPAN_DENOISE_STEP] * 2
        + [sc.SPAN_TRANSFORMER_FORWARD] * 4  # two steps, cond and uncond
        + [sc.SPAN_VAE_DECODE]
    )
    genai = {k: v for k, v in root.attributes.items() if k.startswith("gen_ai.")}
    assert genai == {
        sc.GENAI_OPERATION_NAME: "generate_content",
        sc.GENAI_PROVIDER_NAME: "diffusers",
        sc.GENAI_OUTPUT_TYPE: "video",
        sc.GENAI_REQUEST_MODEL: "Wan2.2-TI2V-5B-tiny",
        sc.GENAI_REQUEST_SEED: 5,
    }

    # wan-otel report reads the run back from the Collector-format file.
    result = run_cli("report", "--run-id", run_id, "--traces", str(traces), "--format", "json")
    assert result.code == 0, result.err
    report = json.loads(result.out)
    assert report["run_id"] == run_id
    assert report["summary"]["status"] == "ok"
    assert report["summary"]["steps_done"] == 2
    assert report["summary"]["total_s"] == round(root.duration_s, 4)
    by_name = {s.name: s for s in ours}
    stages = {stage["key"]: stage["duration_s"] for stage in report["stages"]}
    other = stages.pop("other")
    assert stages == {
        "initialization": None,  # the server built its pipeline before any trace
        "text_encoding": round(by_name[sc.SPAN_TEXT_ENCODE].duration_s, 4),
        "preprocess": round(by_name[sc.SPAN_PREPROCESS].duration_s, 4),
        "denoising": round(by_name[sc.SPAN_DENOISE].duration_s, 4),
        "vae_decode": round(by_name[sc.SPAN_VAE_DECODE].duration_s, 4),
        "export": None,  # the server returns frames, it writes no video file
    }
    # The stages follow one another: what they leave of the root is the remainder.
    in_stages = [by_name[name] for name in sc.STAGE_SPANS if name in by_name]
    other_ns = root.end_ns - root.start_ns - sum(s.end_ns - s.start_ns for s in in_stages)
    assert other == round(other_ns / 1e9, 4)
