"""``/metrics``: the contract's names for the queue, jobs and requests next to the pipeline's
generation metrics, with values that follow what the server did."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from tests.serve.conftest import FAST, Running
from wan_otel import semconv as sc

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
NAMES = sc.SERVER_PROMETHEUS_NAMES


def scrape(running: Running) -> Samples:
    answer = running.shared_client().request("GET", "/metrics")
    assert answer.status == 200
    assert answer.headers["Content-Type"].startswith("text/plain; version=")
    samples: Samples = {}
    for family in text_string_to_metric_families(answer.raw.decode()):
        for sample in family.samples:
            labels = {k: v for k, v in sample.labels.items() if not k.startswith("otel_")}
            samples[(sample.name, frozenset(labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_queue_jobs_and_requests_follow_the_server(idle: Running) -> None:
    before = scrape(idle)
    client = idle.client()
    ids = [client.submit().body["id"] for _ in range(2)]
    for job_id in ids:
        client.wait(job_id)
    idle.switches.hold()
    held = client.submit().body["id"]
    assert idle.switches.held.wait(10)
    waiting = client.submit().body["id"]
    assert client.request("GET", "/v1/videos/nope").status == 404
    during = scrape(idle)
    idle.switches.release()
    client.wait(held), client.wait(waiting)
    after = scrape(idle)

    assert value(during, NAMES[sc.METRIC_SERVER_QUEUE_DEPTH]) == 1
    assert value(after, NAMES[sc.METRIC_SERVER_QUEUE_DEPTH]) == 0
    assert value(after, NAMES[sc.METRIC_SERVER_QUEUE_CAPACITY]) == 3

    def grew(samples: Samples, name: str, **labels: str) -> float:
        return value(samples, name, **labels) - value(before, name, **labels)

    jobs = NAMES[sc.METRIC_SERVER_JOBS]
    assert grew(after, jobs, status="completed") == 4
    wait = NAMES[sc.METRIC_SERVER_QUEUE_WAIT]
    assert grew(after, f"{wait}_count", model="Wan2.2-TI2V-5B-tiny") == 4
    generations = sc.PROMETHEUS_NAMES[sc.METRIC_GENERATION_DURATION]
    assert grew(after, f"{generations}_count", **_generation_labels()) == 4
    assert value(during, sc.PROMETHEUS_NAMES[sc.METRIC_GENERATIONS_ACTIVE]) == 1
    assert value(after, sc.PROMETHEUS_NAMES[sc.METRIC_GENERATIONS_ACTIVE]) == 0

    requests = NAMES[sc.METRIC_SERVER_REQUESTS]
    route = {"http_request_method": "POST", "http_route": "/v1/videos"}
    assert grew(after, requests, **route, http_response_status_code="202") == 4
    not_found = {"http_request_method": "GET", "http_route": "other"}
    assert grew(after, requests, **not_found, http_response_status_code="404") == 0
    by_id = {"http_request_method": "GET", "http_route": "/v1/videos/{video_id}"}
    assert grew(after, requests, **by_id, http_response_status_code="404") == 1
    assert value(after, "process_resident_memory_bytes") > 0


def _generation_labels() -> dict[str, str]:
    return {
        sc.LABEL_MODEL: "Wan2.2-TI2V-5B-tiny",
        sc.LABEL_RESOLUTION: FAST["size"],  # type: ignore[dict-item]
        sc.LABEL_FRAMES: str(FAST["num_frames"]),
        sc.LABEL_OFFLOAD: "none",
        sc.LABEL_WORLD_SIZE: "1",
    }


def test_methods_outside_the_standard_ones_share_one_label(idle: Running) -> None:
    """h11 takes any token as a method: each would be a new label (and span name) for ever."""
    before = scrape(idle)
    client = idle.client()
    for method in ("FOO1", "FOO2", "BREW"):
        assert client.request(method, "/v1/videos").status == 405
    after = scrape(idle)
    requests = NAMES[sc.METRIC_SERVER_REQUESTS]
    methods = {
        dict(labels).get("http_request_method") for name, labels in after if name == requests
    }
    assert not methods & {"FOO1", "FOO2", "BREW"}
    other = {"http_request_method": "_OTHER", "http_route": "/v1/videos"}
    grown = value(after, requests, **other, http_response_status_code="405") - value(
        before, requests, **other, http_response_status_code="405"
    )
    assert grown == 3
    spans = idle.spans_once(lambda s: sum(x.name == "HTTP /v1/videos" for x in s) >= 3)
    assert not [s.name for s in spans if s.name.startswith(("FOO", "BREW"))]
