"""A model error in the middle of a run: the job shows it, its spans end with status ERROR,
the run is still reportable, and the server goes on serving."""

from __future__ import annotations

import json

import pytest
from opentelemetry.trace import StatusCode

from tests.serve.conftest import FAST, Running
from wan_otel import semconv as sc
from wan_otel.cli import main


def test_a_vae_failure_fails_one_job_and_the_next_runs(
    idle: Running, capsys: pytest.CaptureFixture[str]
) -> None:
    client = idle.client()
    idle.switches.fail_decode.set()
    failed = client.submit({**FAST, "num_inference_steps": 3}).body["id"]
    after = client.submit().body["id"]

    record = client.wait(failed)
    assert record["status"] == "failed" and record["bytes"] is None
    assert record["error"] == {
        "code": "generation_failed",
        "message": "RuntimeError: injected VAE failure",
    }
    assert record["steps_done"] == 3  # it failed after the loop, in the decoder
    content = client.request("GET", f"/v1/videos/{failed}/content")
    assert content.status == 409
    assert content.body["error"]["message"].startswith(f"video {failed!r} is failed")
    assert client.wait(after)["status"] == "completed"
    assert client.request("GET", "/readyz").status == 200

    spans = [s for s in idle.finished_spans() if s.attributes.get(sc.RUN_ID) == failed]
    errors = {s.name: s for s in spans if s.status.status_code is StatusCode.ERROR}
    assert set(errors) == {sc.SPAN_GENERATE, sc.SPAN_VAE_DECODE}
    assert errors[sc.SPAN_GENERATE].status.description == "RuntimeError: injected VAE failure"
    assert errors[sc.SPAN_VAE_DECODE].attributes[sc.ERROR_TYPE] == "RuntimeError"
    assert sc.SPAN_EXPORT not in {s.name for s in spans}

    code = main(["report", "--run-id", failed, "--store", str(idle.store), "--format", "json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    summary = json.loads(out)["summary"]
    assert summary["status"] == "error" and summary["steps_done"] == 3
