"""Retention: a finished job's ``expires_at`` is its end plus the retention, and once that
time has passed the job, its video and its run folder are pruned (as a delete would)."""

from __future__ import annotations

import time
from pathlib import Path

from tests.serve.conftest import Running, Switches, start_server


def test_expired_jobs_are_pruned_with_their_files(idle: Running) -> None:
    client = idle.client()
    job_id = client.submit().body["id"]
    record = client.wait(job_id)
    expires = record["expires_at"]
    assert expires == record["completed_at"] + 3600  # the fixture's retention
    service = idle.server.service
    assert service is not None
    assert job_id not in service.prune(expires - 1)
    assert (idle.store / job_id / "video.mp4").is_file()
    assert job_id in service.prune(expires)
    assert not (idle.store / job_id).exists()
    assert client.request("GET", f"/v1/videos/{job_id}").status == 404
    listed = client.request("GET", "/v1/videos?limit=100").body["data"]
    assert job_id not in {v["id"] for v in listed}
    startup = idle.server.engine.startup_run_id
    assert startup is not None and (idle.store / startup).is_dir()  # not a job: kept


def test_a_server_with_a_retention_prunes_on_its_own(tmp_path: Path, switches: Switches) -> None:
    """With a retention of a second, the server's own pruning pass (every second here)
    removes a finished job without anyone asking."""
    running = start_server(tmp_path, switches, retention_s=1.0)
    try:
        client = running.client()
        job_id = client.submit().body["id"]
        assert client.wait(job_id)["status"] == "completed"
        deadline = time.monotonic() + 30
        while (tmp_path / job_id).exists():
            assert time.monotonic() < deadline, "the job was not pruned"
            time.sleep(0.1)
        assert client.request("GET", f"/v1/videos/{job_id}").status == 404
        startup = running.server.engine.startup_run_id
        assert startup is not None and (tmp_path / startup).is_dir()  # not a job: kept
    finally:
        running.stop()
