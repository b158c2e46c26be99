"""The bounded queue and job records, without a model: admission (503, 429 with Retry-After),
queue positions, delete in every state, cursor pages, expiry, close, the record on disk,
recovery of lost jobs, the store lock."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from wan_otel.errors import WanOtelError
from wan_otel.pipeline.serve import job_queue as queue_module
from wan_otel.pipeline.serve.errors import ApiError
from wan_otel.pipeline.serve.job_queue import JobQueue
from wan_otel.pipeline.serve.jobs import COMPLETED, FAILED, IN_PROGRESS, QUEUED, Job, describe
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


def open_queue(tmp_path: Path, capacity: int = 2, retention_s: float | None = None) -> JobQueue:
    queue = JobQueue(capacity, JobFiles(tmp_path), retention_s)
    queue.open()
    return queue


def submit(queue: JobQueue, j: Job) -> None:
    def on_disk() -> None:
        queue.files.create(j.id)
        queue.files.write(j.record(), first=True)

    queue.submit(j, on_disk)


def on_disk(tmp_path: Path, job_id: str) -> dict[str, object]:
    return dict(json.loads((tmp_path / job_id / JOB_FILE).read_text()))


def test_closed_until_opened(tmp_path: Path) -> None:
    queue = JobQueue(2, JobFiles(tmp_path))
    with pytest.raises(ApiError) as info:
        submit(queue, job(1))
    assert info.value.status == 503 and "the model is loading" in info.value.message
    assert info.value.headers == {"Retry-After": "10"}
    assert not (tmp_path / job(1).id).exists()


def test_a_full_queue_says_429_with_retry_after(tmp_path: Path) -> None:
    queue = open_queue(tmp_path, capacity=2)
    for n in (1, 2):
        submit(queue, job(n))
    running = queue.take(1.0)
    assert running is not None and running.id == job(1).id
    submit(queue, job(3))
    with pytest.raises(ApiError) as info:
        submit(queue, job(5))
    error = info.value
    assert (error.status, error.code) == (429, "queue_full")
    assert error.message.startswith("the queue is full (2 jobs waiting); retry in about ")
    # No generation has finished yet: the first estimate, less the running job's time so far.
    assert 1 <= int(error.headers["Retry-After"]) <= queue_module.FIRST_ESTIMATE_S
    assert not (tmp_path / job(5).id).exists()
    assert queue.depth() == 2
    assert queue.poll_after_ms() == 250  # a twentieth of the first estimate


def test_positions_count_the_jobs_ahead(tmp_path: Path) -> None:
    queue = open_queue(tmp_path, capacity=3)
    a, b, c = job(1), job(2), job(3)
    for j in (a, b, c):
        submit(queue, j)
    assert [a.position, b.position, c.position] == [0, 1, 2]
    queue.take(1.0)
    assert [b.position, c.position] == [1, 2]  # a runs ahead of them
    queue.finish(a, COMPLETED)
    assert [b.position, c.position] == [0, 1]
    assert queue.view(c.id)["queue_position"] == 1
    assert c.ahead_at_submit == 2


def test_the_record_on_disk_follows_the_job(tmp_path: Path) -> None:
    queue = open_queue(tmp_path, retention_s=90.5)
    j = job(1)
    submit(queue, j)
    assert RunStore(tmp_path).run_ids() == [j.id]  # `wan-otel runs` lists it
    record = on_disk(tmp_path, j.id)
    assert record["status"] == QUEUED and record["object"] == "video"
    assert record["size"] == "64x32" and record["num_frames"] == 9 and record["seed"] == 11
    assert record["prompt"] is None and record["expires_at"] is None
    taken = queue.take(1.0)
    assert taken is j and j.status == IN_PROGRESS
    assert on_disk(tmp_path, j.id)["status"] == QUEUED  # no disk write on the way to the GPU
    j.generation_s = 1.5
    queue.finish(j, COMPLETED)
    record = on_disk(tmp_path, j.id)
    assert record["status"] == COMPLETED and record["progress"] == 100
    assert record["expires_at"] == record["completed_at"] + 91  # type: ignore[operator]
    assert record["timings"]["generation_s"] == 1.5  # type: ignore[index]
    assert record == queue.view(j.id)
    assert queue.poll_after_ms() == 100  # 1.5 s / 20, at least 100 ms


def test_progress_is_steps_done_over_steps(tmp_path: Path) -> None:
    queue = open_queue(tmp_path)
    j = job(1)
    submit(queue, j)
    queue.take(1.0)
    queue.progress(j, stage="denoising", step=True)
    queue.progress(j, step=True)
    queue.progress(j, step=True)
    view = queue.view(j.id)
    assert (view["progress"], view["steps_done"], view["stage"]) == (75, 3, "denoising")


def test_delete_a_queued_a_running_and_a_finished_job(tmp_path: Path) -> None:
    queue = open_queue(tmp_path, capacity=3)
    a, b, c = job(1), job(2), job(3)
    for j in (a, b, c):
        submit(queue, j)
    queue.take(1.0)
    assert queue.delete(b.id) == {"id": b.id, "object": "video.deleted", "deleted": True}
    assert not (tmp_path / b.id).exists() and c.position == 1 and queue.depth() == 1
    queue.delete(a.id)  # running: stopped at its next step, hidden at once
    assert a.cancel_requested and (tmp_path / a.id).exists()
    with pytest.raises(ApiError) as info:
        queue.view(a.id)
    assert info.value.status == 404
    queue.finish(a, "cancelled")  # the worker lets go of it: its files go
    assert not (tmp_path / a.id).exists()
    queue.take(1.0)
    queue.finish(c, COMPLETED)
    queue.delete(c.id)
    assert not (tmp_path / c.id).exists()
    for gone in (a, b, c):
        with pytest.raises(ApiError) as info:
            queue.delete(gone.id)
        assert info.value.status == 404
    assert queue.page(None, 10, descending=True) == ([], False)


def test_pages_follow_the_cursor_both_ways(tmp_path: Path) -> None:
    queue = open_queue(tmp_path, capacity=5)
    ids = [job(n).id for n in range(1, 6)]
    for n in range(1, 6):
        submit(queue, job(n))
    assert queue.page(None, 2, descending=True) == ([ids[4], ids[3]], True)
    assert queue.page(ids[3], 2, descending=True) == ([ids[2], ids[1]], True)
    assert queue.page(ids[1], 2, descending=True) == ([ids[0]], False)
    assert queue.page(None, 3, descending=False) == (ids[:3], True)
    assert queue.page(ids[2], 3, descending=False) == (ids[3:], False)
    assert queue.page("zzz", 3, descending=False) == ([], False)
    # A restarted queue finds them in the store.
    again = JobQueue(5, JobFiles(tmp_path))
    assert again.load_index() == 5
    assert again.page(None, 5, descending=False) == (ids, False)


def test_finished_jobs_expire_after_the_retention(tmp_path: Path) -> None:
    queue = open_queue(tmp_path, capacity=3, retention_s=60)
    done, failed, waiting = job(1), job(2), job(3)
    for j in (done, failed, waiting):
        submit(queue, j)
    queue.take(1.0)
    queue.finish(done, COMPLETED)
    queue.take(1.0)
    queue.finish(failed, FAILED, {"code": "generation_failed", "message": "x"})
    expires = on_disk(tmp_path, done.id)["expires_at"]
    assert isinstance(expires, int)
    assert queue.expired(expires - 1) == []
    assert queue.expired(expires + 1) == [done.id, failed.id]  # never the queued one


def test_close_fails_the_queued_jobs_and_refuses_new_ones(tmp_path: Path) -> None:
    queue = open_queue(tmp_path, capacity=3)
    a, b, c = job(1), job(2), job(3)
    for j in (a, b, c):
        submit(queue, j)
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
        submit(queue, job(4))
    assert info.value.status == 503


def test_long_polls_and_listeners_wake_on_the_final_status(tmp_path: Path) -> None:
    queue = open_queue(tmp_path)
    heard: list[bool] = []
    queue.on_final(lambda: heard.append(True))
    j = job(1)
    submit(queue, j)
    queue.take(1.0)
    assert not queue.is_final(j.id)
    finisher = threading.Timer(0.2, lambda: queue.finish(j, FAILED, {"code": "x", "message": "y"}))
    finisher.start()
    try:
        assert queue.view(j.id, wait_s=30)["status"] == FAILED
    finally:
        finisher.join()
    assert heard == [True] and queue.is_final(j.id)


def test_finished_jobs_beyond_the_recent_table_are_read_from_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(queue_module, "RECENT_JOBS", 2)
    queue = open_queue(tmp_path, capacity=5)
    all_jobs = [job(n) for n in range(1, 5)]
    for j in all_jobs:
        submit(queue, j)
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
    submit(queue, done)
    queue.take(1.0)
    queue.finish(done, COMPLETED)
    submit(queue, lost)
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


def test_a_final_record_that_cannot_be_written_still_ends_the_job(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full disk fails the job's last write: the queue goes on, the status is shown from
    memory and waiters wake (the worker used to die there, leaving jobs queued for ever)."""
    queue = open_queue(tmp_path)
    submit(queue, job(1))
    submit(queue, job(2))
    first = queue.take(1.0)
    assert first is not None
    woke: list[str] = []
    queue.on_final(lambda: woke.append("final"))

    def full(record: dict[str, object], *, first: bool = False) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(queue.files, "write", full)
    queue.finish(first, FAILED, {"code": "generation_failed", "message": "ENOSPC"})
    assert queue.view(first.id)["status"] == FAILED
    assert woke == ["final"]
    second = queue.take(1.0)
    assert second is not None and second.id == job(2).id


def test_records_that_are_not_their_folders_are_skipped(tmp_path: Path) -> None:
    queue = open_queue(tmp_path)
    submit(queue, job(1))
    (tmp_path / job(2).id).mkdir()
    (tmp_path / job(2).id / JOB_FILE).write_text('{"status": "completed"}\n')  # no id
    (tmp_path / job(3).id).mkdir()
    (tmp_path / job(3).id / JOB_FILE).write_text(json.dumps({"id": job(1).id}) + "\n")
    assert [r["id"] for r in JobFiles(tmp_path).records()] == [job(1).id]
    assert JobQueue(2, JobFiles(tmp_path)).load_index() == 1


def test_a_run_id_minted_twice_takes_another_and_leaves_the_first_alone(tmp_path: Path) -> None:
    files = JobFiles(tmp_path)
    assert files.create(job(1).id) is True
    (tmp_path / job(1).id / JOB_FILE).write_text(json.dumps(job(1).record()) + "\n")
    assert files.create(job(1).id) is False  # exists: not ours to touch
    assert (tmp_path / job(1).id / JOB_FILE).is_file()
