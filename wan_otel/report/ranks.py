"""How each rank of a multi-GPU run ended, which rank failed, and the run's ending in words.

When one rank fails, its peers fail after it: torchrun stops them with SIGTERM (their roots say
``interrupted``), or their next collective raises first (gloo: "Connection reset by peer";
NCCL: a remote process exited). Rank 0's root alone would blame the signal or the collective.
The failing rank is, in this order: the first to end of the ranks whose error was raised
outside a collective (its own error); else the first to stop of the ranks whose spans stop
without their rank span (SIGKILL, the OOM killer) or that wrote none, while another rank
recorded its end; else the first to end of the ranks whose collective raised. A killed rank's
spans stop up to a second before it died (they stream behind the GPU), so its last span is
no clock to compare with the others' errors: only with other killed ranks'.
"""

from __future__ import annotations

from dataclasses import dataclass

from wan_otel import semconv as sc
from wan_otel.report.spans import RunTree, attr_str, error_text
from wan_otel.store.otlp_json import STATUS_ERROR
from wan_otel.store.summary import interrupt_detail

OK, ERROR, INTERRUPTED, KILLED, MISSING, RUNNING = (
    "ok",
    "error",
    "interrupted",
    "killed",
    "missing",
    "running",
)
RECORDED = (OK, ERROR, INTERRUPTED)
"""Statuses of a rank that recorded its end (its rank span, or rank 0's root, was written)."""


@dataclass(frozen=True)
class RankEnd:
    """How one rank ended."""

    rank: int
    status: str
    error: str | None
    last_ns: int
    """End of its last span (its root's end when it recorded one); -1 without spans."""
    signal: str | None = None
    detail: str | None = None
    """Where a signal stopped it (``SIGTERM during Denoising, step 5 of 10``)."""
    in_collective: bool = False
    """Its error was raised in a collective (a peer gone, the network): a consequence."""


def rank_end(tree: RunTree, run_status: str) -> RankEnd:
    """How the rank of ``tree`` ended; ``run_status`` is the run's (rank 0's) one-GPU status,
    which decides for rank 0 without a root and for ranks still running."""
    failed = [e for s in tree.spans if (e := error_text(s))]
    error = failed[-1] if failed else None
    root = tree.root
    if not tree.root_is_real:
        # Its spans stop without its rank span (rank 0: without the run's root): killed,
        # unless the run is still running.
        status = RUNNING if run_status == RUNNING else KILLED
        return RankEnd(tree.rank, status, error, root.end_ns)
    signal = attr_str(root, sc.RUN_INTERRUPT_SIGNAL)
    if signal is not None:
        detail = interrupt_detail(root.attributes, signal)
        return RankEnd(tree.rank, INTERRUPTED, error, root.end_ns, signal, detail)
    if root.status_code == STATUS_ERROR:
        collective = _raised_in_collective(tree)
        return RankEnd(tree.rank, ERROR, error or "error", root.end_ns, in_collective=collective)
    return RankEnd(tree.rank, OK, None, root.end_ns)


def _raised_in_collective(tree: RunTree) -> bool:
    """Whether the rank's error began in a ``wan.parallel.collective`` span: the failed spans
    none of whose children failed are where it was raised."""
    origins = [
        s
        for s in tree.spans
        if s.status_code == STATUS_ERROR
        and not any(k.status_code == STATUS_ERROR for k in tree.kids(s))
    ]
    return bool(origins) and all(s.name == sc.SPAN_COLLECTIVE for s in origins)


def rank_ends(tree: RunTree, run_status: str) -> list[RankEnd]:
    """Every rank of the run (0 to world size - 1), those without spans ``missing``."""
    written = {t.rank: rank_end(t, run_status) for t in tree.rank_trees()}
    return [written.get(rank, RankEnd(rank, MISSING, None, -1)) for rank in range(tree.world_size)]


def _order(end: RankEnd) -> tuple[int, int]:
    """Who stopped first (the lowest rank on a tie)."""
    return end.last_ns, end.rank


def failing_rank(ends: list[RankEnd]) -> RankEnd | None:
    """The rank that failed, or None (every rank ended alike: completed, all interrupted by
    one signal, or all killed together)."""

    raised = [e for e in ends if e.status == ERROR and not e.in_collective]
    if raised:
        return min(raised, key=_order)
    if ends[0].status == OK:
        # Rank 0 completed, so every peer took part in every collective to the end: a rank
        # without its rank span lost its spans after (``lost_ranks``), it did not fail the run.
        return None
    recorded = any(e.status in RECORDED for e in ends)
    gone = [e for e in ends if e.status in (KILLED, MISSING)]
    if gone and recorded:
        return min(gone, key=_order)
    broken = [e for e in ends if e.status == ERROR]
    if broken:
        return min(broken, key=_order)
    return None  # every rank stopped by one signal, or the whole job died at once


def _ranks(numbers: list[int]) -> str:
    if len(numbers) == 1:
        return f"rank {numbers[0]}"
    head = ", ".join(str(n) for n in numbers[:-1])
    return f"ranks {head} and {numbers[-1]}"


def multi_gpu_ending(
    ends: list[RankEnd], failing: RankEnd, status: str, steps: dict[int, int]
) -> tuple[str, str, str | None]:
    """(status, ended, error) of a multi-GPU run in which ``failing`` failed: the ended text
    names the failing rank first, then what became of the others. ``steps`` counts each
    rank's steps written. The error is the failing rank's; for a killed rank, which has
    none, the first error its peers raised after it."""
    after = sorted((e for e in ends if e.status == ERROR and e is not failing), key=_order)
    error = failing.error
    if failing.status == ERROR:
        what = f"failed on rank {failing.rank} (the error is below)"
    else:
        error = after[0].error if after else None
        if failing.status == MISSING:
            what = f"failed on rank {failing.rank}: it wrote no spans (killed before its first)"
        else:
            own = "the run's root span" if failing.rank == 0 else "its rank span"
            what = (
                f"failed on rank {failing.rank}: killed, its spans stop without {own} "
                f"(SIGKILL, the OOM killer, a lost node) after {steps.get(failing.rank, 0)} "
                "step(s)"
            )
    if after:
        what += f"; {_ranks([e.rank for e in after])} failed after it"
        if failing.status != ERROR:
            what += " (its error is below)" if len(after) == 1 else " (the first error is below)"
    killed = [e.rank for e in ends if e.status == KILLED and e is not failing]
    if killed:
        what += f"; {_ranks(killed)} {'was' if len(killed) == 1 else 'were'} killed"
    silent = [e.rank for e in ends if e.status == MISSING and e is not failing]
    if silent:
        what += f"; {_ranks(silent)} wrote no spans"
    stopped = [e for e in ends if e.status == INTERRUPTED]
    if stopped:
        signals = sorted({e.signal or "a signal" for e in stopped})
        where = next((e.detail for e in stopped if e.rank == 0), None) or " or ".join(signals)
        verb = "was" if len(stopped) == 1 else "were"
        what += f"; {_ranks([e.rank for e in stopped])} {verb} stopped by {where}"
    # A run whose rank 0 has no root keeps the status its summary gives (killed, running).
    new_status = ERROR if ends[0].status in RECORDED else status
    return new_status, what, error


def lost_ranks(ends: list[RankEnd]) -> str | None:
    """A note on ranks of a completed run whose spans are missing or stop early."""
    if ends[0].status != OK:
        return None
    lost = [e.rank for e in ends if e.status in (KILLED, MISSING)]
    if not lost:
        return None
    return (
        f"the run completed, but {_ranks(lost)} recorded no end (spans lost, or the process "
        "ended after the generation): their figures cover what was written"
    )
