"""Serve test fixtures: an in-process server on the tiny preset (a real uvicorn on loopback),
HTTP clients (httpx, and the official ``openai`` SDK), and switches that hold or break a
generation at a chosen point.

The switches patch diffusers' classes before the server builds its pipeline, so that the
instrumented pipeline calls them as it calls the real methods: ``gate`` holds the first
transformer forward of a job until released (a busy GPU, made deterministic), ``fail_decode``
makes the next ``vae.decode`` raise (a model error in the middle of a run). Every server and
client a fixture starts is stopped in its teardown, also when the test fails.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import torch
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from wan_otel.pipeline.runner.model_flags import ModelChoice
from wan_otel.pipeline.serve import EngineConfig, ServeConfig, Server
from wan_otel.pipeline.serve.connections import ConnectionLimits

torch.set_num_threads(2)

FAST = {"prompt": "a cat", "size": "32x32", "num_frames": 1, "num_inference_steps": 2, "seed": 1}
"""The smallest job: about 50 ms on a CPU."""
MODEL = "Wan2.2-TI2V-5B-tiny"


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
class Answer:
    status: int
    headers: httpx.Headers
    body: Any
    raw: bytes


class Client:
    """A plain HTTP client (one keep-alive connection pool) to one server."""

    def __init__(self, port: int, api_key: str | None = None, *, keepalive: bool = True) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        # Without keep-alive, each request opens its own connection: for servers with idle
        # timeouts shorter than a test's pauses, where reusing a connection would race its close.
        limits = httpx.Limits(max_keepalive_connections=None if keepalive else 0)
        self.http = httpx.Client(
            base_url=f"http://127.0.0.1:{port}", timeout=60, headers=headers, limits=limits
        )

    def request(self, method: str, path: str, **kwargs: Any) -> Answer:
        response = self.http.request(method, path, **kwargs)
        kind = response.headers.get("content-type", "")
        body = response.json() if kind.startswith("application/json") else response.content
        return Answer(response.status_code, response.headers, body, response.content)

    def submit(self, body: dict[str, Any] | None = None, **headers: str) -> Answer:
        return self.request("POST", "/v1/videos", json=body or FAST, headers=headers)

    def wait(self, job_id: str, seconds: float = 30) -> dict[str, Any]:
        answer = self.request("GET", f"/v1/videos/{job_id}", params={"wait": seconds})
        assert answer.status == 200, answer.body
        return dict(answer.body)

    def close(self) -> None:
        self.http.close()


@dataclass
class Running:
    server: Server
    store: Path
    spans: InMemorySpanExporter
    switches: Switches
    api_key: str | None = None
    _clients: list[Any] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.port}"

    def client(self, api_key: str | None = None, *, keepalive: bool = True) -> Client:
        client = Client(self.server.port, api_key or self.api_key, keepalive=keepalive)
        self._clients.append(client)
        return client

    def shared_client(self) -> Client:
        """One client kept across calls (a new one costs ~70 ms: httpx builds an SSL context)."""
        for client in self._clients:
            if isinstance(client, Client):
                return client
        return self.client()

    def sdk(self, api_key: str | None = None) -> openai.OpenAI:
        """The official SDK, as a user points it at us (no retries: every answer counts)."""
        sdk = openai.OpenAI(
            base_url=f"{self.base_url}/v1", api_key=api_key or self.api_key or "none",
            max_retries=0, timeout=60,
        )  # fmt: skip
        self._clients.append(sdk)
        return sdk

    def close_clients(self) -> None:
        while self._clients:
            self._clients.pop().close()

    def finished_spans(self) -> list[ReadableSpan]:
        return list(self.spans.get_finished_spans())

    def spans_once(
        self, ready: Callable[[list[ReadableSpan]], bool], timeout_s: float = 10.0
    ) -> list[ReadableSpan]:
        """The finished spans once ``ready`` holds for them: an HTTP server span ends just
        after its response has reached the client, so a test may look a moment too soon."""
        deadline = time.monotonic() + timeout_s
        while not ready(spans := self.finished_spans()):
            assert time.monotonic() < deadline, "the spans did not arrive"
            time.sleep(0.01)
        return spans

    def stop(self) -> None:
        self.close_clients()
        self.server.shutdown()


def start_server(
    store: Path,
    switches: Switches,
    *,
    max_queue: int = 3,
    grace_s: float = 5.0,
    preset: str = "tiny",
    api_key: str | None = None,
    retention_s: float | None = 3600.0,
    connections: ConnectionLimits | None = None,
) -> Running:
    exporter = InMemorySpanExporter()
    config = ServeConfig(
        EngineConfig(ModelChoice(preset, None, torch.device("cpu"), torch.float32, "none"), store),
        host="127.0.0.1",
        port=0,
        max_queue=max_queue,
        grace_s=grace_s,
        api_key=api_key,
        retention_s=retention_s,
        connections=connections or ConnectionLimits(),
        span_processors=[SimpleSpanProcessor(exporter)],
    )
    server = Server(config)
    server.start()
    try:
        assert server.wait_loaded(120)
        assert server.load_error is None, server.load_error
    except BaseException:
        server.shutdown()
        raise
    return Running(server, store, exporter, switches, api_key)


@pytest.fixture(scope="package")
def running(tmp_path_factory: pytest.TempPathFactory, switches: Switches) -> Iterator[Running]:
    """One server for the tests that need no server of their own."""
    running = start_server(tmp_path_factory.mktemp("store"), switches)
    try:
        yield running
    finally:
        running.stop()


STRICT_KEY = "sesame-0123456789"
STRICT = ConnectionLimits(max_connections=8, idle_timeout_s=0.3, read_timeout_s=0.5)
"""Short timeouts and few connections: reached within a test's time."""


@pytest.fixture(scope="package")
def strict(tmp_path_factory: pytest.TempPathFactory, switches: Switches) -> Iterator[Running]:
    """A server with an API key, short timeouts and a low connection bound, whose HTTP spans
    are asked to record the Authorization header (which must come out redacted)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST", "authorization")
        running = start_server(
            tmp_path_factory.mktemp("strict"), switches, api_key=STRICT_KEY, connections=STRICT
        )
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def idle(running: Running) -> Iterator[Running]:
    """The shared server with its gate open and nothing queued or running, before and after."""
    running.switches.gate.set()
    assert running.server.queue.wait_idle(30)
    try:
        yield running
    finally:
        running.switches.gate.set()
        running.switches.fail_decode.clear()
        running.close_clients()
        assert running.server.queue.wait_idle(30)


def error_of(answer: Answer) -> dict[str, Any]:
    """The error of an answer, which must be in OpenAI's shape, in JSON."""
    assert answer.headers["content-type"] == "application/json", answer.raw[:200]
    assert set(answer.body) == {"error"}, answer.body
    error = dict(answer.body["error"])
    assert set(error) == {"message", "type", "param", "code"}, error
    return error
