"""The bounded queue and job records, without a model: admission (503, 429 with Retry-After),
queue positions, cancel, close, the record on disk, recovery of lost jobs, the store lock."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from wan_otel.errors import WanOtelError
from wan_otel.pipeline.serve import jobs as jobs_module
from wan_otel.pipeline.serve.errors import ApiError
from wan_otel.pipeline.serve.jobs import (
    CANCELLED,
    COMPLETED,
    FAILED,
    IN_PROGRESS,
    QUEUED,
    Job,
    JobQueue,
    describe,
)
from wan_otel.pipeline.serve.persist import JOB_FILE, JobFiles, store_lock
from wan_otel.pipeline.serve.validation import VideoRequest
from wan_otel.store.run_store import RunStore

REQUEST = VideoRequest("a cat", None, 64, 32, 9, 4, 5.0, 8, 11)


def job(n: int) -> Job:
    return Job(
        id=f"20260101T000000Z-{n:06x}",
        request=REQUEST,
        model="m",
        trace_id=f"{n:032x}",
        parent=None,
        created_ns=time.time_ns(),
        described=describe(REQUEST),
    )


def open_queue(tmp_path: Path, capacity: int = 2) -> JobQueue:
    queue = JobQueue(capacity, JobFiles(tmp_path))
    queue.open()
    return queue


def on_disk(tmp_path: Path, job_id: str) -> dict[str, object]:
    return dict(json.loads((tmp_path / job_id / JOB_FILE).read_text()))


def test_closed_until_opened(tmp_path: Path) -> None:
    queue = JobQueue(2, JobFiles(tmp_path))
    with pytest.raises(ApiError) as info:
        queue.submit(job(1))
    assert info.value.status == 503 and "the model is loading" in info.value.message
    assert info.value.headers == {"Retry-After": "10"}
    assert not (tmp_path / job(1).id).exists()


def test_a_full_queue_says_429_with_retry_after(tmp_path: Path) -> None:
    queue = open_queue(tmp_path, capacity=2)
    for n in (1, 2):
        queue.submit(job(n))
    running = queue.take(1.0)
    assert running is not None and running.id == job(1).id
    queue.submit(job(3))
    with pytest.raises(ApiError) as info:
        queue.submit(job(5))
    error = info.value
    assert (error.status, error.code) == (429, "queue_full")
    assert error.message.startswith("the queue is full (2 jobs waiting); retry in about ")
    # No generation has finished yet: the first estimate, less the running job's time so far.
    assert 1 <= int(error.headers["Retry-After"]) <= jobs_module.FIRST_ESTIMATE_S
    assert not (tmp_path / job(5).id).exists()
    assert queue.depth() == 2


def test_positions_count_the_jobs_ahead(tmp_path: Path) -> None:
    queue = open_queue(tmp_path, capacity=3)
    a, b, c = job(1), job(2), job(3)
    for j in (a, b, c):
        queue.submit(j)
    assert [a.position, b.position, c.position] == [0, 1, 2]
    queue.take(1.0)
    assert [b.position, c.position] == [1, 2]  # a runs ahead of them
    queue.finish(a, COMPLETED)
    assert [b.position, c.position] == [0, 1]
    assert queue.view(c.id)["queue_position"] == 1
    assert c.ahead_at_submit == 2


def test_the_record_on_disk_follows_the_job(tmp_path: Path) -> None:
    queue = open_queue(tmp_path)
    j = job(1)
    queue.submit(j)
    assert RunStore(tmp_path).run_ids() == [j.id]  # `wan-otel runs` lists it
    record = on_disk(tmp_path, j.id)
    assert record["status"] == QUEUED and record["object"] == "video"
    assert record["size"] == "64x32" and record["num_frames"] == 9 and record["seed"] == 11
    assert "prompt" not in record
    taken = queue.take(1.0)
    assert taken is j and j.status == IN_PROGRESS
    assert on_disk(tmp_path, j.id)["status"] == QUEUED  # no disk write on the way to the GPU
    j.generation_s = 1.5
    queue.finish(j, COMPLETED)
    record = on_disk(tmp_path, j.id)
    assert record["status"] == COMPLETED and record["progress"] == 100
    assert record["timings"]["generation_s"] == 1.5  # type: ignore[index]
    assert record == queue.view(j.id)


def test_progress_is_steps_done_over_steps(tmp_path: Path) -> None:
    queue = open_queue(tmp_path)
    j = job(1)
    queue.submit(j)
    queue.take(1.0)
    queue.progress(j, stage="denoising", step=True)
    queue.progress(j, step=True)
    queue.progress(j, step=True)
    view = queue.view(j.id)
    assert (view["progress"], view["steps_done"], view["stage"]) == (75, 3, "denoising")


def test_cancel_a_queued_job_a_running_one_and_a_finished_one(tmp_path: Path) -> None:
    queue = open_queue(tmp_path, capacity=3)
    a, b, c = job(1), job(2), job(3)
    for j in (a, b, c):
        queue.submit(j)
    queue.take(1.0)
    status, record = queue.cancel(b.id)
    assert (status, record["status"]) == (200, CANCELLED)
    assert on_disk(tmp_path, b.id)["status"] == CANCELLED
    assert c.position == 1 and queue.depth() == 1
    status, record = queue.cancel(a.id)
    assert (status, record["status"], record["cancel_requested"]) == (202, IN_PROGRESS, True)
    with pytest.raises(ApiError) as info:
        queue.cancel(b.id)
    assert (info.value.status, info.value.message) == (
        409,
        f"video {b.id!r} is cancelled; nothing to cancel",
    )
    with pytest.raises(ApiError) as info:
        queue.cancel("20260101T000000Z-ffffff")
    assert info.value.status == 404


def test_close_fails_the_queued_jobs_and_refuses_new_ones(tmp_path: Path) -> None:
    queue = open_queue(tmp_path, capacity=3)
    a, b, c = job(1), job(2), job(3)
    for j in (a, b, c):
        queue.submit(j)
    queue.take(1.0)
    dropped = queue.close("the server is shutting down")
    assert [j.id for j in dropped] == [b.id, c.id]
    assert on_disk(tmp_path, c.id)["error"] == {
        "code": "server_shutdown",
        "message": "not started: the server is shutting down",
    }
    assert a.status == IN_PROGRESS  # the worker decides about the running one
    queue.open()  # a late "model loaded" does not reopen a closed queue
    with pytest.raises(ApiError) as info:
        queue.submit(job(4))
    assert info.value.status == 503


def test_long_poll_wakes_on_the_final_status(tmp_path: Path) -> None:
    queue = open_queue(tmp_path)
    j = job(1)
    queue.submit(j)
    queue.take(1.0)
    threading.Timer(0.2, lambda: queue.finish(j, FAILED, {"code": "x", "message": "y"})).start()
    start = time.monotonic()
    view = queue.view(j.id, wait_s=10)
    assert view["status"] == FAILED and 0.15 < time.monotonic() - start < 5


def test_finished_jobs_beyond_the_recent_table_are_read_from_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(jobs_module, "RECENT_JOBS", 2)
    queue = open_queue(tmp_path, capacity=5)
    all_jobs = [job(n) for n in range(1, 5)]
    for j in all_jobs:
        queue.submit(j)
        queue.take(1.0)
        queue.finish(j, COMPLETED)
    assert list(queue._recent) == [all_jobs[2].id, all_jobs[3].id]
    assert queue.view(all_jobs[0].id) == on_disk(tmp_path, all_jobs[0].id)
    with pytest.raises(ApiError) as info:
        queue.view("not a run id")
    assert info.value.status == 404


def test_recover_marks_lost_jobs_failed(tmp_path: Path) -> None:
    files = JobFiles(tmp_path)
    queue = open_queue(tmp_path, capacity=3)
    done, lost = job(1), job(2)
    queue.submit(done)
    queue.take(1.0)
    queue.finish(done, COMPLETED)
    queue.submit(lost)
    queue.take(1.0)  # running when the process "dies"
    recovered = files.recover(now_s=1_800_000_000)
    assert [r["id"] for r in recovered] == [lost.id]
    record = on_disk(tmp_path, lost.id)
    assert record["status"] == FAILED and record["completed_at"] == 1_800_000_000
    assert record["error"] == {
        "code": "server_restarted",
        "message": "the server stopped before this job finished; submit it again",
    }
    assert on_disk(tmp_path, done.id)["status"] == COMPLETED
    assert files.recover(now_s=0) == []


def test_one_server_per_store(tmp_path: Path) -> None:
    with (
        store_lock(tmp_path),
        pytest.raises(WanOtelError, match="another wan-otel serve uses the store"),
        store_lock(tmp_path),
    ):
        pass
    with store_lock(tmp_path):  # released with its holder
        pass
