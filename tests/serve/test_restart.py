"""A server killed outright (SIGKILL: no graceful stop) and started again on its store: the
finished video is still served and listed, the jobs it was running or holding are failed with
a reason (and can be deleted), and the new server takes new jobs."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from tests.serve.child import LONG, Child
from tests.serve.conftest import FAST, Switches, start_server
from wan_otel.cli import main


def test_a_restart_keeps_finished_videos_and_fails_lost_jobs(
    tmp_path: Path, switches: Switches, capsys: pytest.CaptureFixture[str]
) -> None:
    child = Child(tmp_path)
    try:
        client = child.api()
        done = client.submit(FAST).body["id"]
        finished = client.wait(done)
        video = client.request("GET", f"/v1/videos/{done}/content").raw
        running = client.submit(LONG).body["id"]
        queued = client.submit(LONG).body["id"]
        child.wait_running(running)
        child.proc.send_signal(signal.SIGKILL)
        assert child.finish() == -signal.SIGKILL
    finally:
        child.stop()

    again = start_server(tmp_path, switches)
    try:
        assert again.server.recovered == sorted([running, queued])
        client = again.client()
        assert client.request("GET", f"/v1/videos/{done}").body == finished
        content = client.request("GET", f"/v1/videos/{done}/content")
        assert content.status == 200 and content.raw == video
        for lost in (running, queued):
            record = client.request("GET", f"/v1/videos/{lost}").body
            assert record["status"] == "failed"
            assert record["error"] == {
                "code": "server_restarted",
                "message": "the server stopped before this job finished; submit it again",
            }
        listed = client.request("GET", "/v1/videos?order=asc").body["data"]
        assert [v["id"] for v in listed] == sorted([done, running, queued])
        new = client.submit(FAST).body["id"]
        assert client.wait(new)["status"] == "completed"
        assert client.request("DELETE", f"/v1/videos/{running}").status == 200
        assert not (tmp_path / running).exists()
    finally:
        again.stop()

    code = main(["report", "--run-id", done, "--store", str(tmp_path), "--format", "json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert json.loads(out)["summary"]["steps_done"] == FAST["num_inference_steps"]
