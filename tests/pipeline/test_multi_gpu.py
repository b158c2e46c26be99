"""Multi-GPU runs on the CPU: two gloo processes under torchrun (``wan-otel run --gpus 2
--device cpu``), Ulysses over both, the tiny preset. One trace across the ranks, each rank's
exact span tree, collective figures, the exchange after the call, and a rank killed mid-run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from wan_otel import semconv as sc
from wan_otel.pipeline.runner.rank_exchange import StepFigures, stragglers, waits
from wan_otel.store import RunStore, SpanRecord
from wan_otel.store.otlp_json import STATUS_ERROR

ROOT = Path(__file__).resolve().parents[2]
TINY_64 = ["--preset", "tiny", "--height", "64", "--width", "64", "--frames", "9"]
"""64x64: 4 latent positions a frame, 12 tokens, divisible by 2 ranks (32x32 has 3)."""
LAYERS = 2
"""The tiny transformer's blocks: 4 all-to-alls each (q, k, v, output) per forward."""


def _command(store: Path, run_id: str, steps: int) -> list[str]:
    return [sys.executable, "-m", "wan_otel", "run", "--gpus", "2", "--device", "cpu",
            *TINY_64, "--steps", str(steps), "--store", str(store), "--run-id", run_id]  # fmt: skip


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(ROOT))


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory: pytest.TempPathFactory) -> tuple[RunStore, str]:
    """One finished 2-rank run of 3 steps, shared by the tests that read it."""
    store = tmp_path_factory.mktemp("store")
    done = subprocess.run(
        _command(store, "pair", 3), cwd=ROOT, env=_env(), capture_output=True, text=True,
        timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "run pair:" in done.stdout  # rank 0 says how it went, once
    return RunStore(store), "pair"


def _by_rank(spans: list[SpanRecord]) -> dict[int, list[SpanRecord]]:
    ranks: dict[int, list[SpanRecord]] = {}
    for span in spans:
        ranks.setdefault(int(span.attributes[sc.RANK]), []).append(span)  # type: ignore[arg-type]
    return ranks


def _shape(spans: list[SpanRecord], root: SpanRecord) -> tuple[str, tuple[object, ...]]:
    kids: dict[str | None, list[SpanRecord]] = {}
    for span in spans:
        kids.setdefault(span.parent_span_id, []).append(span)

    def build(span: SpanRecord) -> tuple[str, tuple[object, ...]]:
        children = sorted(kids.get(span.span_id, []), key=lambda s: (s.start_ns, s.name))
        return span.name, tuple(build(c) for c in children)

    return build(root)


def _forward(branch_ops: tuple[str, ...] = ("all_to_all", "all_gather")) -> object:
    return (sc.SPAN_TRANSFORMER_FORWARD, tuple((sc.SPAN_COLLECTIVE, ()) for _ in branch_ops))


def _step() -> object:
    return (sc.SPAN_DENOISE_STEP, (_forward(), _forward()))


def test_one_trace_two_files_one_summary(two_ranks: tuple[RunStore, str]) -> None:
    store, run_id = two_ranks
    folder = store.folder(run_id)
    assert sorted(p.name for p in folder.path.iterdir()) == [
        "run.json",
        "spans.jsonl",
        "spans.rank1.jsonl",
    ]
    data = store.read(run_id)
    assert data.warnings == []
    assert len({s.trace_id for s in data.spans}) == 1
    assert all(s.attributes[sc.RUN_ID] == run_id for s in data.spans)
    assert all(s.attributes[sc.WORLD_SIZE] == 2 for s in data.spans)
    assert all(s.attributes[sc.PARALLEL_ULYSSES] == 2 for s in data.spans)
    assert all(s.attributes[sc.PARALLEL_RING] == 1 for s in data.spans)
    summary = store.summary(run_id)
    assert summary is not None and summary.status == "ok" and summary.world_size == 2


def test_each_ranks_exact_span_tree(two_ranks: tuple[RunStore, str]) -> None:
    store, run_id = two_ranks
    spans = store.read(run_id).spans
    ranks = _by_rank(spans)
    assert sorted(ranks) == [0, 1]
    (root,) = [s for s in ranks[0] if s.name == sc.SPAN_GENERATE]
    (rank_root,) = [s for s in ranks[1] if s.name == sc.SPAN_RANK]
    assert root.parent_span_id is None and rank_root.parent_span_id == root.span_id
    initialize = (sc.SPAN_INITIALIZE, tuple((sc.SPAN_COMPONENT_INITIALIZE, ()) for _ in range(5)))
    loop = (sc.SPAN_DENOISE, tuple(_step() for _ in range(3)))
    rank1 = (
        sc.SPAN_RANK,
        (initialize, (sc.SPAN_TEXT_ENCODE, ()), (sc.SPAN_PREPROCESS, ()), loop,
         (sc.SPAN_VAE_DECODE, ())),
    )  # fmt: skip
    assert _shape(ranks[1], rank_root) == rank1
    assert _shape(ranks[0], root) == (
        sc.SPAN_GENERATE,
        (initialize, (sc.SPAN_TEXT_ENCODE, ()), (sc.SPAN_PREPROCESS, ()), loop,
         (sc.SPAN_VAE_DECODE, ())),
    )  # fmt: skip
    assert root.attributes[sc.DEVICE] == rank_root.attributes[sc.DEVICE] == "cpu"


def test_collective_figures_are_counted_and_add_up(two_ranks: tuple[RunStore, str]) -> None:
    store, run_id = two_ranks
    spans = store.read(run_id).spans
    collectives = [s for s in spans if s.name == sc.SPAN_COLLECTIVE]
    counts = Counter(
        (int(s.attributes[sc.RANK]), s.attributes[sc.COLLECTIVE_OP])  # type: ignore[arg-type]
        for s in collectives
    )
    assert counts == {(r, op): 6 for r in (0, 1) for op in ("all_to_all", "all_gather")}
    for span in collectives:
        durations = span.attributes[sc.COLLECTIVE_DURATIONS]
        expected = 4 * LAYERS if span.attributes[sc.COLLECTIVE_OP] == "all_to_all" else 1
        assert span.attributes[sc.COLLECTIVE_COUNT] == expected
        assert isinstance(durations, tuple) and len(durations) == expected
        assert all(isinstance(d, float) and d >= 0 for d in durations)
        assert int(span.attributes[sc.COLLECTIVE_BYTES]) > 0  # type: ignore[arg-type]
        assert span.duration_s == pytest.approx(sum(durations), abs=2e-6)
    for step in (s for s in spans if s.name == sc.SPAN_DENOISE_STEP):
        comm, compute = step.attributes[sc.STEP_COMM_S], step.attributes[sc.STEP_COMPUTE_S]
        assert isinstance(comm, float) and isinstance(compute, float)
        assert comm > 0 and compute >= 0
        assert comm + compute == pytest.approx(step.duration_s, abs=2e-6)


def test_the_exchange_after_the_call_puts_wait_and_stragglers_on_the_roots(
    two_ranks: tuple[RunStore, str],
) -> None:
    store, run_id = two_ranks
    spans = store.read(run_id).spans
    roots = {
        int(s.attributes[sc.RANK]): s  # type: ignore[arg-type]
        for s in spans
        if s.name in (sc.SPAN_GENERATE, sc.SPAN_RANK)
    }
    for root in roots.values():
        wait = root.attributes[sc.PARALLEL_WAIT_S]
        assert isinstance(wait, float) and wait >= 0
    stragglers_attr = roots[0].attributes[sc.PARALLEL_STRAGGLERS]
    assert isinstance(stragglers_attr, tuple) and len(stragglers_attr) == 3
    assert set(stragglers_attr) <= {0, 1}


def test_wait_is_the_time_above_the_fastest_rank_collective_by_collective() -> None:
    rank0 = [StepFigures([0.010, 0.002, 0.004], compute_s=0.5)]
    rank1 = [StepFigures([0.001, 0.003, 0.004], compute_s=0.9)]
    assert waits([rank0, rank1], 0) == [pytest.approx(0.009)]
    assert waits([rank0, rank1], 1) == [pytest.approx(0.001)]
    assert stragglers([rank0, rank1]) == [1]
    uneven = [StepFigures([0.1], 0.1)], [StepFigures([0.1, 0.2], 0.1)]
    assert waits(uneven, 0) == [0.0]  # different collectives: no alignment, no figure


def _rank_pid(rank: int) -> int | None:
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if b"wan_otel" in cmdline and f"RANK={rank}".encode() in environ:
            return int(entry.name)
    return None


@pytest.fixture
def long_pair(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], RunStore]]:
    launcher = subprocess.Popen(
        _command(tmp_path, "cut", 5000), cwd=ROOT, env=_env(), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        yield launcher, RunStore(tmp_path)
    finally:
        if launcher.poll() is None:
            launcher.kill()
        launcher.communicate(timeout=60)
        for rank in (0, 1):
            pid = _rank_pid(rank)
            if pid is not None:  # never leave a rank behind
                os.kill(pid, signal.SIGKILL)


def test_a_rank_killed_mid_run_the_other_keeps_its_spans_and_the_group_ends(
    long_pair: tuple[subprocess.Popen[str], RunStore],
) -> None:
    launcher, store = long_pair
    deadline = time.monotonic() + 180
    steps: dict[int, int] = {}
    while time.monotonic() < deadline:
        assert launcher.poll() is None, launcher.communicate()[1][-3000:]
        if store.folder("cut").path.is_dir():
            spans = store.read("cut").spans if store.folder("cut").spans().is_file() else []
            steps = Counter(
                int(s.attributes[sc.RANK]) for s in spans if s.name == sc.SPAN_DENOISE_STEP
            )  # type: ignore[arg-type]
            if min(steps.get(0, 0), steps.get(1, 0)) >= 3:
                break
        time.sleep(0.2)
    victim = _rank_pid(1)
    assert victim is not None
    os.kill(victim, signal.SIGKILL)
    launcher.wait(timeout=120)  # torchrun tears the other rank down: no hang
    assert launcher.returncode != 0
    spans = store.read("cut").spans
    by_rank = _by_rank(spans)
    assert sum(s.name == sc.SPAN_DENOISE_STEP for s in by_rank[1]) >= 3  # streamed before
    assert not [s for s in by_rank[1] if s.name == sc.SPAN_RANK]  # killed: it never ended
    (root,) = [s for s in by_rank[0] if s.name == sc.SPAN_GENERATE]
    assert root.status_code == STATUS_ERROR  # rank 0 was stopped, its spans all written
    summary = store.summary("cut")
    assert summary is not None and summary.status in ("interrupted", "error")
    report = subprocess.run(
        [sys.executable, "-m", "wan_otel", "report", "--run-id", "cut", "--store",
         str(store.root), "--format", "json"],
        cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert report.returncode == 0, report.stderr
    body = json.loads(report.stdout)
    assert body["summary"]["world_size"] == 2
    assert "rank 1" in body["summary"]["ended"]


def test_both_experts_of_a14b_run_context_parallel(tmp_path: Path) -> None:
    """Ulysses on both transformers of a two-expert model: each expert's forwards have their
    all-to-alls on every rank."""
    command = [sys.executable, "-m", "wan_otel", "run", "--gpus", "2", "--device", "cpu",
               "--preset", "tiny-a14b", "--height", "32", "--width", "32", "--steps", "4",
               "--store", str(tmp_path), "--run-id", "experts"]  # fmt: skip
    done = subprocess.run(
        command, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    spans = RunStore(tmp_path).read("experts").spans
    by_id = {s.span_id: s for s in spans}
    seen = Counter(
        (int(s.attributes[sc.RANK]), by_id[s.parent_span_id].attributes[sc.COMPONENT_NAME])  # type: ignore[arg-type, index]
        for s in spans
        if s.name == sc.SPAN_COLLECTIVE and s.attributes[sc.COLLECTIVE_OP] == "all_to_all"
    )
    assert seen == {(r, e): 4 for r in (0, 1) for e in ("transformer", "transformer_2")}
