"""SIGTERM: new jobs get 503 and /readyz turns 503 at once, queued jobs fail, the running job is
stopped after the grace period and fails visibly, its spans are flushed (status ERROR), and
the process exits 0 within the grace period plus one step."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest

from tests.serve.child import LONG, Child
from wan_otel import semconv as sc
from wan_otel.cli import main
from wan_otel.pipeline.serve.persist import JOB_FILE
from wan_otel.store.otlp_json import STATUS_ERROR
from wan_otel.store.run_store import RunStore

GRACE_S = 1.0


def test_sigterm_drains_and_stops_the_running_job(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    child = Child(tmp_path, "--grace-seconds", str(GRACE_S))
    client = child.client
    running = client.submit(LONG).body["id"]
    queued = client.submit(LONG).body["id"]
    child.wait_running(running)

    child.proc.send_signal(signal.SIGTERM)
    signalled = time.monotonic()
    child.expect(r"stopping: no new jobs")
    refused = client.submit(LONG)
    assert refused.status == 503
    assert refused.body["error"]["message"] == ("not accepting jobs: the server is shutting down")
    assert client.request("GET", "/readyz").raw == b"not ready: shutting down\n"
    assert client.request("GET", f"/v1/videos/{queued}").body["status"] == "failed"

    assert child.finish() == 0
    took = time.monotonic() - signalled
    assert took < GRACE_S + 5, took
    assert (
        child.lines[-1]
        == f"wan-otel serve: stopped: 1 queued job(s) failed; running job {running}: failed"
    )

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
