"""Every finished job is a run in the store that ``wan-otel report`` reads like ``wan-otel
run``'s, and ``wan-otel runs`` lists jobs that have not run yet (not deleted ones)."""

from __future__ import annotations

import json

import pytest

from tests.serve.conftest import FAST, Running
from wan_otel.cli import main


def report(running: Running, run_id: str, capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    code = main(["report", "--run-id", run_id, "--store", str(running.store), "--format", "json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    return dict(json.loads(out))


def test_each_job_is_reportable(idle: Running, capsys: pytest.CaptureFixture[str]) -> None:
    client = idle.client()
    steps = {4: None, 2: None}
    for n in steps:
        steps[n] = client.submit({**FAST, "num_inference_steps": n, "size": "64x32"}).body["id"]
    for n, job_id in steps.items():
        assert job_id is not None
        assert client.wait(job_id)["status"] == "completed"
        data = report(idle, job_id, capsys)
        summary, config = data["summary"], data["config"]
        assert summary["status"] == "ok" and summary["steps_done"] == n  # type: ignore[index]
        assert (config["width"], config["height"], config["num_steps"]) == (64, 32, n)  # type: ignore[index]
        assert config["source"] == "tiny"  # type: ignore[index]
        stages = {s["key"]: s["duration_s"] for s in data["stages"]}  # type: ignore[attr-defined]
        assert stages["initialization"] is None  # loaded once, in the start-up run
        assert stages["denoising"] > 0 and stages["export"] > 0


def test_the_startup_run_is_reportable(idle: Running, capsys: pytest.CaptureFixture[str]) -> None:
    startup = idle.server.engine.startup_run_id
    assert startup is not None
    data = report(idle, startup, capsys)
    stages = {s["key"]: s["duration_s"] for s in data["stages"]}  # type: ignore[attr-defined]
    assert stages["initialization"] > 0 and stages["denoising"] > 0
    assert data["summary"]["steps_done"] == 2  # type: ignore[index]


def test_runs_lists_queued_jobs(idle: Running, capsys: pytest.CaptureFixture[str]) -> None:
    client = idle.client()
    idle.switches.hold()
    running = client.submit().body["id"]
    assert idle.switches.held.wait(10)
    queued = client.submit().body["id"]
    deleted = client.submit().body["id"]
    assert client.request("DELETE", f"/v1/videos/{deleted}").status == 200
    code = main(["runs", "--store", str(idle.store)])
    out, err = capsys.readouterr()
    idle.switches.release()
    client.wait(running), client.wait(queued)
    assert code == 0, err
    lines = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert lines[queued].endswith("no spans yet") and deleted not in lines
