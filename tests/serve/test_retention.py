"""Retention: a finished job's ``expires_at`` is its end plus the retention, and once that
time has passed the job, its video and its run folder are pruned (as a delete would)."""

from __future__ import annotations

import threading

from tests.serve.conftest import Running


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


def test_a_server_with_a_retention_prunes_on_its_own(idle: Running) -> None:
    assert "wan-otel-pruner" in {t.name for t in threading.enumerate()}
