"""SIGTERM, in every outcome of the grace period, and the start: "ready" only once a POST is
accepted; new jobs are refused before "stopping" is said; queued jobs fail; the running job
finishes within the grace period, or is stopped at its next step, or (stuck in a step) is
marked failed; its spans are flushed; and the process exits 0 every time."""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path

import pytest

from tests.serve.child import LONG, Child
from tests.serve.conftest import FAST, Switches, start_server
from wan_otel import semconv as sc
from wan_otel.cli import main
from wan_otel.pipeline.serve import ShutdownReport
from wan_otel.pipeline.serve.persist import JOB_FILE
from wan_otel.store.otlp_json import STATUS_ERROR
from wan_otel.store.run_store import RunStore

GRACE_S = 1.0


def test_a_job_that_ends_within_the_grace_period_completes(
    tmp_path: Path, switches: Switches
) -> None:
    running = start_server(tmp_path, switches, grace_s=30)
    try:
        client = running.client()
        switches.hold()
        job = client.submit().body["id"]
        assert switches.held.wait(10)
        stopping = threading.Thread(target=lambda: reports.append(running.server.shutdown()))
        reports: list[ShutdownReport] = []
        stopping.start()
        deadline = time.monotonic() + 10
        while not running.server.not_ready() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert running.server.not_ready() == "shutting down"  # new jobs refused from here
        assert client.submit().status == 503
        switches.release()  # the job goes on within the grace period
        stopping.join(60)
    finally:
        switches.release()
        running.close_clients()
    (report,) = reports
    assert (report.failed_queued, report.stopped_running) == (0, f"{job}: completed")
    assert not report.worker_stuck
    assert json.loads((tmp_path / job / JOB_FILE).read_text())["status"] == "completed"


def test_sigterm_drains_and_stops_the_running_job(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    child = Child(tmp_path, "--grace-seconds", str(GRACE_S))
    try:
        client = child.api()
        # The first request after "ready" is taken: ready means accepting.
        running = client.submit(LONG).body["id"]
        queued = client.submit(LONG).body["id"]
        child.wait_running(running)

        child.proc.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        child.expect(r"stopping: no new jobs")
        refused = client.submit(LONG)
        assert refused.status == 503
        assert refused.body["error"]["message"] == "not accepting jobs: the server is shutting down"
        ready = client.request("GET", "/readyz")
        assert (ready.status, ready.body["error"]["message"]) == (503, "not ready: shutting down")
        assert client.request("GET", f"/v1/videos/{queued}").body["status"] == "failed"

        assert child.finish() == 0
        took = time.monotonic() - signalled
        assert took < GRACE_S + 5, took
        assert child.lines[-1] == (
            f"wan-otel serve: stopped: 1 queued job(s) failed; running job {running}: failed"
        )
    finally:
        child.stop()

    stopped = json.loads((tmp_path / running / JOB_FILE).read_text())
    steps = stopped["steps_done"]
    assert stopped["status"] == "failed" and 1 <= steps < 50
    assert stopped["error"] == {
        "code": "server_shutdown",
        "message": f"stopped by a server shutdown (after {steps} of 50 steps)",
    }
    never = json.loads((tmp_path / queued / JOB_FILE).read_text())
    assert never["error"] == {
        "code": "server_shutdown",
        "message": "not started: the server is shutting down",
    }

    spans = RunStore(tmp_path).read(running).spans
    (root,) = [s for s in spans if s.name == sc.SPAN_GENERATE]
    assert root.status_code == STATUS_ERROR
    assert root.attributes[sc.ERROR_TYPE] == "GenerationStopped"
    assert len([s for s in spans if s.name == sc.SPAN_DENOISE_STEP]) == steps
    assert [s.name for s in spans].count(sc.SPAN_QUEUE_WAIT) == 1

    code = main(["report", "--run-id", running, "--store", str(tmp_path), "--format", "json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert json.loads(out)["summary"]["steps_done"] == steps


def test_a_step_that_outlasts_every_wait_still_exits_0(tmp_path: Path) -> None:
    env = {"WAN_OTEL_TEST_STUCK_S": "30", "WAN_OTEL_TEST_ABORT_WAIT_S": "0.2"}
    child = Child(tmp_path, "--grace-seconds", "0.2", env=env)
    try:
        running = child.api().submit(FAST).body["id"]
        deadline = time.monotonic() + 30
        while child.api().request("GET", f"/v1/videos/{running}").body["status"] == "queued":
            assert time.monotonic() < deadline
            time.sleep(0.02)
        child.proc.send_signal(signal.SIGTERM)
        assert child.finish() == 0  # well before the 30 s step ends
        assert child.lines[-1].endswith(f"running job {running}: failed")
    finally:
        child.stop()
    record = json.loads((tmp_path / running / JOB_FILE).read_text())
    assert record["error"] == {
        "code": "server_shutdown",
        "message": "did not stop within the 0.2 s grace period",
    }
