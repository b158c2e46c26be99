"""A video server as a team would write it around a diffusers Wan pipeline, with no tracing
code of its own. Run it under the OpenTelemetry agent and the traces come for free:

    pip install 'wan-otel[pipeline]' opentelemetry-instrumentation-wsgi
    OTEL_SERVICE_NAME=video-server \\
    OTEL_EXPORTER_OTLP_ENDPOINT=http://otel-collector:4318 \\
    OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf \\
    opentelemetry-instrument python docs/examples/user_server.py --port 8080

    curl -X POST localhost:8080/generate -d '{"prompt": "a red fox in snow", "steps": 2}'

The agent configures the SDK from the ``OTEL_*`` variables and loads every installed
instrumentor; wan-otel's (entry point ``wan_pipeline``) instruments the pipeline at its first
call, so each request's trace holds the HTTP server span and, under it, the generation's
``wan.pipeline.generate`` tree. A bare WSGI app is the one thing the agent cannot find by
itself, hence the one OpenTelemetry line below (Flask, Django or FastAPI apps need none).

Only the standard library serves HTTP here (``wsgiref``: one request at a time, which suits a
pipeline that is not thread-safe). The pipeline is a tiny random-weight Wan2.2 built on the
CPU in seconds, standing in for ``WanPipeline.from_pretrained(...)``.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIServer, make_server

import torch
from opentelemetry import trace
from opentelemetry.instrumentation.wsgi import OpenTelemetryMiddleware

from wan_otel.pipeline.runner.presets import TINY, build_preset

StartResponse = Callable[[str, list[tuple[str, str]]], Any]


def load_pipeline() -> Any:
    """Stands in for ``WanPipeline.from_pretrained("Wan-AI/Wan2.2-TI2V-5B-Diffusers")``."""
    built = build_preset(TINY, device=torch.device("cpu"), dtype=torch.float32)
    built.pipe.register_to_config(_name_or_path=built.model_name)  # as from_pretrained records
    built.pipe.set_progress_bar_config(disable=True)
    return built.pipe


PIPE = load_pipeline()


def generate(request: dict[str, Any]) -> dict[str, Any]:
    output = PIPE(
        prompt=str(request.get("prompt", "a cat on grass")),
        height=32,
        width=32,
        num_frames=9,
        num_inference_steps=int(request.get("steps", 2)),
        guidance_scale=5.0,
        generator=torch.Generator().manual_seed(int(request.get("seed", 0))),
        output_type="np",
    )
    # The caller can find the request's trace in its backend by this id.
    trace_id = trace.get_current_span().get_span_context().trace_id
    return {"frames": len(output.frames[0]), "trace_id": format(trace_id, "032x")}


def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    if environ["PATH_INFO"] != "/generate" or environ["REQUEST_METHOD"] != "POST":
        return _reply(start_response, "404 Not Found", {"error": "POST /generate"})
    length = int(environ.get("CONTENT_LENGTH") or 0)
    try:
        request = json.loads(environ["wsgi.input"].read(length) or b"{}")
        if not isinstance(request, dict):
            raise ValueError("the body is not a JSON object")
    except ValueError as exc:
        return _reply(start_response, "400 Bad Request", {"error": str(exc)})
    return _reply(start_response, "200 OK", generate(request))


def _reply(start_response: StartResponse, status: str, body: dict[str, Any]) -> list[bytes]:
    data = json.dumps(body).encode()
    start_response(
        status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))]
    )
    return [data]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080, help="0: any free port")
    args = parser.parse_args()
    server: WSGIServer = make_server(args.host, args.port, OpenTelemetryMiddleware(app))
    # SIGTERM (Kubernetes stopping the pod) ends the process through Python's exit path, so
    # the SDK's exit handler exports the spans still queued.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"listening on http://{args.host}:{server.server_port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
