"""The store owns run ids and the layout: validation of the whole id, atomic creation, a file
per writer, no symbolic link followed, summaries of killed runs."""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path
from typing import Any

import pytest

from wan_otel.cli import main
from wan_otel.errors import WanOtelError
from wan_otel.store import RunStore, RunSummary, check_run_id, new_run_id
from wan_otel.store.summary import KILLED, RUNNING, started_summary


@pytest.mark.parametrize(
    "bad", ["", "with\nnewline", "trailing\n", "a/b", "..", "a..b", "-dash-first", "x" * 129, "é"]
)
def test_invalid_run_ids_are_refused_whole(bad: str) -> None:
    with pytest.raises(WanOtelError, match="invalid run id"):
        check_run_id(bad)


def test_fresh_run_ids_are_valid_and_distinct() -> None:
    ids = {new_run_id() for _ in range(50)}
    assert len(ids) == 50 and all(check_run_id(i) == i for i in ids)


def test_creating_a_run_twice_fails_and_leaves_the_first(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    folder = store.create_run("r")
    folder.spans().write_text("first\n")
    with pytest.raises(WanOtelError, match="run 'r' already exists"):
        store.create_run("r")
    assert folder.spans().read_text() == "first\n"


def _create(root: str, run_id: str, barrier: Any, results: Any) -> None:
    barrier.wait()
    try:
        RunStore(Path(root)).create_run(run_id)
    except WanOtelError:
        results.put("refused")
    else:
        results.put("created")


def test_of_two_processes_creating_one_run_exactly_one_succeeds(tmp_path: Path) -> None:
    context = multiprocessing.get_context("fork")
    for attempt in range(20):
        barrier, results = context.Barrier(2), context.SimpleQueue()
        racers = [
            context.Process(target=_create, args=(str(tmp_path), f"r{attempt}", barrier, results))
            for _ in range(2)
        ]
        try:
            for racer in racers:
                racer.start()
        finally:
            for racer in racers:
                racer.join(10)
        assert sorted([results.get(), results.get()]) == ["created", "refused"]


def test_each_writer_has_its_own_files(tmp_path: Path) -> None:
    folder = RunStore(tmp_path).create_run("r")
    assert folder.spans().name == "spans.jsonl"
    assert folder.spans("rank1").name == "spans.rank1.jsonl"
    assert folder.samples("rank3").name == "gpu_samples.rank3.jsonl"
    with pytest.raises(ValueError):
        folder.spans("../x")


def test_a_store_that_is_a_file_is_refused(tmp_path: Path) -> None:
    afile = tmp_path / "file"
    afile.write_text("x")
    with pytest.raises(WanOtelError, match="is not a folder"):
        RunStore(afile).check_writable()
    with pytest.raises(WanOtelError, match="is not a folder"):
        RunStore(afile).create_run("r")
    assert afile.read_text() == "x"


def test_a_run_folder_that_is_a_symbolic_link_is_not_followed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "spans.jsonl").write_text("{}\n")
    store = tmp_path / "store"
    store.mkdir()
    (store / "linked").symlink_to(outside)
    assert RunStore(store).run_ids() == []
    code = main(["report", "--run-id", "linked", "--store", str(store)])
    err = capsys.readouterr().err
    assert code == 2
    assert err == (
        f"wan-otel: run folder {store / 'linked'} is a symbolic link; "
        "the store does not follow links\n"
    )
    assert main(["runs", "--store", str(store)]) == 0
    out, err = capsys.readouterr()
    assert "linked" not in out and "symbolic link" in err


def test_a_spans_file_that_is_a_link_is_skipped_and_named(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "store")
    folder = store.create_run("r")
    folder.summary.write_text(RunSummary("r", "ok").to_json())
    target = tmp_path / "elsewhere.jsonl"
    target.write_text("{}\n")
    os.symlink(target, folder.spans("rank1"))
    data = store.read("r")
    assert data.spans == []
    assert any("not a regular file" in w for w in data.warnings)


def test_a_running_summary_whose_process_is_gone_reads_killed(tmp_path: Path) -> None:
    summary = started_summary("r", 1, {})
    assert summary.status == RUNNING and summary.pid == os.getpid()
    assert summary.seen_from().status == RUNNING  # this process is alive
    context = multiprocessing.get_context("fork")
    child = context.Process(target=os._exit, args=(0,))
    child.start()
    child.join()
    assert child.pid is not None
    gone = RunSummary("r", RUNNING, pid=child.pid, host=summary.host)
    assert gone.seen_from().status == KILLED
    elsewhere = RunSummary("r", RUNNING, pid=child.pid, host="another-host")
    assert elsewhere.seen_from().status == RUNNING  # another machine's process: unknown


def test_summaries_round_trip_and_refuse_wrong_types() -> None:
    summary = started_summary("r", 5, {"wan.request.width": 64, "nested": {"x": 1}})
    again = RunSummary.from_json(__import__("json").loads(summary.to_json()))
    assert again == summary and again is not None
    assert again.attributes == {"wan.request.width": 64}
    assert RunSummary.from_json({"run_id": "r", "status": "ok", "start_ns": "soon"}) is None
    assert RunSummary.from_json({"run_id": 5}) is None
    assert RunSummary.from_json([]) is None
