"""Property-based fuzzing of the backend readers (hypothesis) over real HTTP on loopback.

Whatever Tempo, Jaeger or Prometheus answer (any bytes, any JSON, API shapes with wrong types
injected), the reader returns records or raises ``WanOtelError`` with a one-line message;
nothing else. One canned server per module answers each example's body.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.backends.canned_http import canned_server
from tests.store.fuzz_strategies import field, json_values, payloads
from wan_otel.backends.http_json import HttpJsonClient
from wan_otel.backends.prometheus_samples import prometheus_gpu_samples
from wan_otel.backends.trace_sources import jaeger_spans, tempo_spans
from wan_otel.errors import WanOtelError
from wan_otel.store.otlp_json import MAX_TIME_NS

FUZZ = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
S = 1_000_000_000
RUN = "r"


class Answers:
    """The body (and status) the canned server gives for each path prefix."""

    def __init__(self) -> None:
        self.bodies: dict[str, tuple[int, Any]] = {}

    def route(self, prefix: str) -> Any:
        return lambda params: self.bodies.get(prefix, (404, {"error": "none"}))


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[str, Answers]]:
    answers = Answers()
    routes = {p: answers.route(p) for p in ("/api/search", "/api/v2/traces/", "/api/v3/traces")}
    routes["/api/v1/query"] = answers.route("/api/v1/query")
    with canned_server(routes) as (url, _):
        yield url, answers


bodies = st.binary(max_size=64) | json_values.map(lambda v: json.dumps(v).encode())
statuses = st.sampled_from([200, 200, 200, 400, 404, 500])


def _call(call: Any) -> list[Any]:
    try:
        return list(call())
    except WanOtelError as exc:
        assert "\n" not in str(exc) and len(str(exc)) < 2000
        return []


def _notes_ok(notes: list[str]) -> None:
    assert all("\n" not in note for note in notes)


@FUZZ
@given(
    search=st.tuples(
        statuses,
        bodies
        | st.fixed_dictionaries(
            {
                "traces": field(
                    st.lists(
                        st.fixed_dictionaries(
                            {"traceID": field(st.sampled_from(["ab" * 16, "1f", "z"]))}
                        ),
                        max_size=3,
                    )
                )
            }
        ),
    ),
    trace=st.tuples(statuses, bodies | payloads),
)
def test_tempo_answers(server: tuple[str, Answers], search: Any, trace: Any) -> None:
    url, answers = server
    answers.bodies = {"/api/search": search, "/api/v2/traces/": trace}
    notes: list[str] = []
    client = HttpJsonClient(url, "Tempo", timeout_s=10)
    _call(lambda: tempo_spans(client, RUN, 0, 10, notes))
    _notes_ok(notes)


@FUZZ
@given(body=st.tuples(statuses, bodies | payloads | payloads.map(lambda p: {"result": p})))
def test_jaeger_answers(server: tuple[str, Answers], body: Any) -> None:
    url, answers = server
    answers.bodies = {"/api/v3/traces": body}
    notes: list[str] = []
    client = HttpJsonClient(url, "Jaeger", timeout_s=10)
    _call(lambda: jaeger_spans(client, RUN, 0, 10, "svc", notes))
    _notes_ok(notes)


pairs = st.lists(
    field(
        st.tuples(
            st.floats(0, 2e9) | st.sampled_from([math.nan, 1e30, -1.0]),
            st.floats(0, 1e6).map(str) | st.sampled_from(["NaN", "+Inf", "-1", "x"]),
        ).map(list)
    ),
    max_size=8,
)
series = st.fixed_dictionaries(
    {
        "metric": field(st.fixed_dictionaries({"gpu": field(st.sampled_from(["0", "x"]))})),
        "values": field(pairs),
    }
)
prometheus_answers = st.fixed_dictionaries(
    {
        "status": field(st.just("success")),
        "data": field(
            st.fixed_dictionaries(
                {
                    "resultType": field(st.just("matrix")),
                    "result": field(st.lists(series, max_size=3)),
                }
            )
        ),
    }
)


@FUZZ
@given(body=st.tuples(statuses, bodies | prometheus_answers))
def test_prometheus_answers(server: tuple[str, Answers], body: Any) -> None:
    url, answers = server
    answers.bodies = {"/api/v1/query": body}
    notes: list[str] = []
    client = HttpJsonClient(url, "Prometheus", timeout_s=10)
    samples = _call(lambda: prometheus_gpu_samples(client, "GPU-0", 100 * S, 200 * S, notes))
    _notes_ok(notes)
    for sample in samples:
        assert 0 < sample.t_ns < MAX_TIME_NS
        assert sample.sm_active_s is not None and 0 <= sample.sm_active_s < math.inf
