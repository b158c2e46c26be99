"""Trace context: OpenTelemetry's ASGI middleware opens each request's server span under the
caller's traceparent, and the run's root span is a child of its POST's server span; the trace
id answered at submit is the run's; the queue wait is a span under the root; the root links
to the start-up trace, whose run holds the model's initialization. Probes and polls make no
spans, and span names carry route templates, never ids."""

from __future__ import annotations

from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode

from tests.serve.conftest import FAST, Running
from wan_otel import semconv as sc

CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"


def run_spans(running: Running, run_id: str) -> list[ReadableSpan]:
    return [s for s in running.finished_spans() if s.attributes.get(sc.RUN_ID) == run_id]


def one(spans: list[ReadableSpan], name: str) -> ReadableSpan:
    (span,) = [s for s in spans if s.name == name]
    return span


def submit_and_wait(running: Running, **headers: str) -> tuple[dict[str, Any], dict[str, str]]:
    client = running.client()
    answer = client.submit(FAST, **headers)
    assert answer.status == 202, answer.body
    return client.wait(answer.body["id"]), dict(answer.headers)


def post_span(running: Running, trace_id: int) -> ReadableSpan:
    (span,) = [
        s
        for s in running.finished_spans()
        if s.name == "POST /v1/videos" and s.context.trace_id == trace_id
    ]
    return span


def test_the_runs_root_is_a_child_of_its_posts_server_span(idle: Running) -> None:
    record, headers = submit_and_wait(idle, traceparent=f"00-{CALLER_TRACE}-{CALLER_SPAN}-01")
    assert headers[sc.HEADER_TRACE_ID.lower()] == CALLER_TRACE == record["trace_id"]
    post = post_span(idle, int(CALLER_TRACE, 16))
    assert post.kind is SpanKind.SERVER
    assert post.parent is not None and f"{post.parent.span_id:016x}" == CALLER_SPAN
    assert post.parent.is_remote
    assert post.attributes[sc.HTTP_ROUTE] == "/v1/videos"
    assert post.attributes["http.status_code"] == 202
    spans = run_spans(idle, record["id"])
    root = one(spans, sc.SPAN_GENERATE)
    assert root.parent is not None and root.parent.span_id == post.context.span_id
    assert {f"{s.context.trace_id:032x}" for s in spans} == {CALLER_TRACE}
    assert root.attributes[sc.SERVER_RUN_KIND] == "request"
    assert root.status.status_code is StatusCode.UNSET


def test_without_traceparent_the_post_starts_the_trace(idle: Running) -> None:
    record, headers = submit_and_wait(idle)
    trace_id = int(record["trace_id"], 16)
    assert headers[sc.HEADER_TRACE_ID.lower()] == record["trace_id"]
    post = post_span(idle, trace_id)
    assert post.parent is None
    root = one(run_spans(idle, record["id"]), sc.SPAN_GENERATE)
    assert root.parent is not None and root.parent.span_id == post.context.span_id
    assert root.context.trace_id == trace_id


def test_the_queue_wait_span_sits_under_the_root_before_it(idle: Running) -> None:
    record, _ = submit_and_wait(idle)
    spans = run_spans(idle, record["id"])
    root, wait = one(spans, sc.SPAN_GENERATE), one(spans, sc.SPAN_QUEUE_WAIT)
    assert wait.parent is not None and wait.parent.span_id == root.context.span_id
    assert wait.end_time == root.start_time
    assert wait.start_time is not None and wait.end_time is not None
    assert wait.start_time <= wait.end_time
    waited_s = (wait.end_time - wait.start_time) / 1e9
    assert abs(waited_s - record["timings"]["queue_wait_s"]) < 0.005
    assert dict(wait.attributes or {}) == {sc.RUN_ID: record["id"], sc.SERVER_QUEUE_POSITION: 0}


def test_unsampled_and_malformed_traceparents(idle: Running) -> None:
    unsampled, _ = submit_and_wait(idle, traceparent=f"00-{CALLER_TRACE}-{CALLER_SPAN}-00")
    root = one(run_spans(idle, unsampled["id"]), sc.SPAN_GENERATE)
    assert root.context.trace_flags.sampled  # recorded anyway: the store needs every run
    assert f"{root.context.trace_id:032x}" == CALLER_TRACE
    broken, headers = submit_and_wait(idle, traceparent="00-nothex-00f067aa0ba902b7-01")
    assert broken["status"] == "completed"
    assert headers[sc.HEADER_TRACE_ID.lower()] != CALLER_TRACE
    assert post_span(idle, int(broken["trace_id"], 16)).parent is None


def test_probes_and_polls_make_no_spans_and_names_carry_no_ids(idle: Running) -> None:
    client = idle.client()
    before = len(idle.finished_spans())
    for path in ("/healthz", "/readyz", "/metrics", "/health"):
        assert client.request("GET", path).status == 200
    assert len(idle.finished_spans()) == before
    record, _ = submit_and_wait(idle)  # a long poll: no span
    client.request("GET", f"/v1/videos/{record['id']}/content")
    client.request("DELETE", f"/v1/videos/{record['id']}")
    expected = {
        "POST /v1/videos", "GET /v1/videos/{video_id}/content", "DELETE /v1/videos/{video_id}",
    }  # fmt: skip

    def server_names(spans: list[ReadableSpan]) -> set[str]:
        return {s.name for s in spans[before:] if s.kind is SpanKind.SERVER}

    assert server_names(idle.spans_once(lambda s: expected <= server_names(s))) == expected


def test_runs_link_to_the_startup_trace_that_holds_initialization(idle: Running) -> None:
    record, _ = submit_and_wait(idle)
    startup_id = idle.server.engine.startup_run_id
    assert startup_id is not None and startup_id.endswith("-startup")
    root = one(run_spans(idle, record["id"]), sc.SPAN_GENERATE)
    assert root.attributes[sc.SERVER_STARTUP_RUN_ID] == startup_id
    assert sc.SPAN_INITIALIZE not in {s.name for s in run_spans(idle, record["id"])}

    startup = run_spans(idle, startup_id)
    startup_root = one(startup, sc.SPAN_GENERATE)
    (link,) = root.links
    assert link.context.span_id == startup_root.context.span_id
    assert link.context.trace_id == startup_root.context.trace_id != root.context.trace_id
    assert dict(link.attributes or {}) == {sc.SERVER_STARTUP_RUN_ID: startup_id}

    assert startup_root.attributes[sc.SERVER_RUN_KIND] == "startup"
    init = one(startup, sc.SPAN_INITIALIZE)
    components = sorted(
        str(s.attributes[sc.COMPONENT_NAME])
        for s in startup
        if s.name == sc.SPAN_COMPONENT_INITIALIZE
    )
    assert components == ["scheduler", "text_encoder", "tokenizer", "transformer", "vae"]
    assert init.parent is not None and init.parent.span_id == startup_root.context.span_id
    # The warm-up: one tiny generation with its export, in the same run.
    assert len([s for s in startup if s.name == sc.SPAN_DENOISE_STEP]) == 2
    assert one(startup, sc.SPAN_EXPORT).attributes[sc.OUTPUT_BYTES] > 0  # type: ignore[operator]
    assert (idle.store / startup_id / "warmup.mp4").is_file()
