"""Trace context: the caller's traceparent is the parent of the run's root span; the trace id
answered at submit is the run's; the queue wait is a span under the root; the root links to
the start-up trace, whose run holds the model's initialization."""

from __future__ import annotations

from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import StatusCode

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
    return client.wait(answer.body["id"]), answer.headers


def test_traceparent_is_the_parent_of_the_runs_root(idle: Running) -> None:
    record, headers = submit_and_wait(idle, traceparent=f"00-{CALLER_TRACE}-{CALLER_SPAN}-01")
    assert headers[sc.HEADER_TRACE_ID] == CALLER_TRACE == record["trace_id"]
    spans = run_spans(idle, record["id"])
    root = one(spans, sc.SPAN_GENERATE)
    assert f"{root.context.trace_id:032x}" == CALLER_TRACE
    assert root.parent is not None and f"{root.parent.span_id:016x}" == CALLER_SPAN
    assert root.parent.is_remote
    assert {f"{s.context.trace_id:032x}" for s in spans} == {CALLER_TRACE}
    assert root.attributes[sc.SERVER_RUN_KIND] == "request"
    assert root.status.status_code is StatusCode.UNSET


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
    assert dict(wait.attributes or {}) == {
        sc.RUN_ID: record["id"],
        sc.SERVER_QUEUE_POSITION: 0,
    }


def test_without_traceparent_the_answered_trace_id_is_the_runs(idle: Running) -> None:
    record, headers = submit_and_wait(idle)
    root = one(run_spans(idle, record["id"]), sc.SPAN_GENERATE)
    assert root.parent is None
    assert f"{root.context.trace_id:032x}" == headers[sc.HEADER_TRACE_ID] == record["trace_id"]


def test_unsampled_and_malformed_traceparents(idle: Running) -> None:
    unsampled, _ = submit_and_wait(idle, traceparent=f"00-{CALLER_TRACE}-{CALLER_SPAN}-00")
    root = one(run_spans(idle, unsampled["id"]), sc.SPAN_GENERATE)
    assert root.context.trace_flags.sampled  # recorded anyway: the store needs every run
    assert f"{root.context.trace_id:032x}" == CALLER_TRACE
    broken, headers = submit_and_wait(idle, traceparent="00-nothex-00f067aa0ba902b7-01")
    assert broken["status"] == "completed"
    assert headers[sc.HEADER_TRACE_ID] != CALLER_TRACE
    assert one(run_spans(idle, broken["id"]), sc.SPAN_GENERATE).parent is None


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
