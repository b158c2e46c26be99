"""Serve test fixtures: an in-process server on the tiny preset, an HTTP client, and switches
that hold or break a generation at a chosen point.

The switches patch diffusers' classes before the server builds its pipeline, so that the
instrumented pipeline calls them as it calls the real methods: ``gate`` holds the first
transformer forward of a job until released (a busy GPU, made deterministic), ``fail_decode``
makes the next ``vae.decode`` raise (a model error in the middle of a run).
"""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from wan_otel.pipeline.runner.model_flags import ModelChoice
from wan_otel.pipeline.serve import EngineConfig, ServeConfig, Server

torch.set_num_threads(2)

FAST = {"prompt": "a cat", "size": "32x32", "num_frames": 1, "num_inference_steps": 2, "seed": 1}
"""The smallest job: about 50 ms on a CPU."""


@dataclass
class Switches:
    gate: threading.Event = field(default_factory=threading.Event)
    """Set: generations run; clear: the next transformer forward waits (at most 30 s)."""
    held: threading.Event = field(default_factory=threading.Event)
    """Set by a forward that is waiting at the gate."""
    fail_decode: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.gate.set()

    def hold(self) -> None:
        """The next transformer forward waits until ``release``; ``held`` says it does."""
        self.held.clear()
        self.gate.clear()

    def release(self) -> None:
        self.gate.set()


@pytest.fixture(scope="package")
def switches() -> Iterator[Switches]:
    from diffusers import AutoencoderKLWan, WanTransformer3DModel

    state = Switches()
    forward, decode = WanTransformer3DModel.forward, AutoencoderKLWan.decode

    def gated_forward(self: Any, *args: Any, **kwargs: Any) -> Any:
        if not state.gate.is_set():
            state.held.set()
            state.gate.wait(30)
        return forward(self, *args, **kwargs)

    def failing_decode(self: Any, *args: Any, **kwargs: Any) -> Any:
        if state.fail_decode.is_set():
            state.fail_decode.clear()
            raise RuntimeError("injected VAE failure")
        return decode(self, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(WanTransformer3DModel, "forward", gated_forward)
        mp.setattr(AutoencoderKLWan, "decode", failing_decode)
        yield state


@dataclass
class Running:
    server: Server
    store: Path
    spans: InMemorySpanExporter
    switches: Switches

    def client(self) -> Client:
        return Client(self.server.port)

    def finished_spans(self) -> list[ReadableSpan]:
        return list(self.spans.get_finished_spans())


def start_server(
    store: Path,
    switches: Switches,
    *,
    max_queue: int = 3,
    grace_s: float = 5.0,
    preset: str = "tiny",
) -> Running:
    exporter = InMemorySpanExporter()
    config = ServeConfig(
        EngineConfig(ModelChoice(preset, None, torch.device("cpu"), torch.float32, "none"), store),
        host="127.0.0.1",
        port=0,
        max_queue=max_queue,
        grace_s=grace_s,
        span_processors=[SimpleSpanProcessor(exporter)],
    )
    server = Server(config)
    server.start()
    assert server.wait_loaded(120)
    assert server.load_error is None, server.load_error
    return Running(server, store, exporter, switches)


@pytest.fixture(scope="package")
def running(tmp_path_factory: pytest.TempPathFactory, switches: Switches) -> Iterator[Running]:
    """One server for the tests that need no server of their own."""
    running = start_server(tmp_path_factory.mktemp("store"), switches)
    yield running
    running.server.shutdown()


@pytest.fixture
def idle(running: Running) -> Iterator[Running]:
    """The shared server with its gate open and nothing queued or running, before and after."""
    running.switches.gate.set()
    assert running.server.queue.wait_idle(30)
    yield running
    running.switches.gate.set()
    running.switches.fail_decode.clear()
    assert running.server.queue.wait_idle(30)


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: Any
    raw: bytes


class Client:
    def __init__(self, port: int) -> None:
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
        raw: bytes | None = None,
    ) -> Answer:
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        self.conn.request(method, path, body=data, headers=headers or {})
        response = self.conn.getresponse()
        payload = response.read()
        if response.will_close:
            self.conn.close()
        kind = response.headers.get("Content-Type", "")
        parsed = json.loads(payload) if kind.startswith("application/json") else payload
        return Answer(response.status, dict(response.headers.items()), parsed, payload)

    def submit(self, body: dict[str, Any] | None = None, **headers: str) -> Answer:
        answer = self.request("POST", "/v1/videos", body or FAST, headers=headers)
        return answer

    def wait(self, job_id: str, seconds: float = 30) -> dict[str, Any]:
        answer = self.request("GET", f"/v1/videos/{job_id}?wait={seconds}")
        assert answer.status == 200, answer.body
        return dict(answer.body)
