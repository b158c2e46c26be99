"""Recommendations of two-expert runs (Wan2.2 A14B): the expert swap, an expert slower than its
twin, and a boundary that leaves one expert very few steps.

Like the one-GPU rules (``recommend``), each states what the issue costs in this run and what a
change would save or need, and is silent when its inputs were not measured.
"""

from __future__ import annotations

from collections.abc import Sequence

from wan_otel.report.experts import Resident, both_resident, switch_of
from wan_otel.report.formatting import duration, gib_or_mib, signed_duration
from wan_otel.report.model import ExpertLine, Recommendation, RunConfig, Summary
from wan_otel.report.recommend import NEGLIGIBLE_PCT

EXPERT_SWAP = "expert_swap"
EXPERT_SLOWER = "expert_slower"
EXPERT_FEW_STEPS = "expert_few_steps"
SLOWER_RATIO = 1.1
"""An expert's stable step (or forward) this many times its twin's is worth a word: the two
have the same architecture and run the same shapes."""
SLOWER_MIN_STEPS = 3
"""Each expert needs two steps after its first for its stable step to be compared."""
SAME_SIZE_SHARE = 0.01
"""Experts whose weights differ by more than this share are not twins: no comparison."""
SM_GAP_PP = 5.0
"""SM % points below its twin's from which the slower expert's GPU counts as less busy."""
FEW_STEPS = 3
FEW_STEPS_SHARE = 0.1
"""An expert with fewer steps than this, or than this share of the steps, has very few."""


def _swap(
    experts: Sequence[ExpertLine], summary: Summary, config: RunConfig
) -> Recommendation | None:
    if not config.offload or config.offload == "none" or summary.total_s <= 0:
        return None
    moved_s = sum(e.own_transfer_s for e in experts)
    if 100 * moved_s / summary.total_s < NEGLIGIBLE_PCT:
        return None  # the experts' moves cost this run nothing measurable
    moved_gb = sum(e.own_transfer_gb for e in experts)
    how = "swaps the experts" if config.offload == "model" else "moves the experts in pieces"
    text = f"Offload={config.offload} {how}"
    low = switch_of(experts)
    if low is not None and low.first_step_transfer_s:
        text += (
            f": the switch at step {low.first_step} spent {duration(low.first_step_transfer_s)} "
            f"moving {gib_or_mib(low.first_step_transfer_gb or 0.0)} of weights"
        )
        if low.first_step_extra_s is not None:
            text += (
                f" (the step took {signed_duration(low.first_step_extra_s)} over the low-noise "
                "expert's later steps)"
            )
    text += (
        f"; in all, the experts' weights moved {gib_or_mib(moved_gb)} in {duration(moved_s)} "
        f"({100 * moved_s / summary.total_s:.1f}% of the run)"
    )
    if config.offload == "model":
        text += (
            ", paid on every call (model offload returns each component to the host at the "
            "end of a call)"
        )
    weights = [e.weights_gb for e in experts if e.weights_gb is not None]
    if weights:
        text += f". It keeps one expert's {gib_or_mib(max(weights))} of weights off the GPU"
    need = both_resident(experts)
    if need is not None and summary.vram_gb:
        room = summary.vram_gb - need.total_gb
        if room < 0:
            verdict = f"does not fit (short by {-room:.2f} GiB): keep the swap"
        else:
            verdict = (
                f"fits with {room:.2f} GiB to spare: keeping both experts on the GPU saves "
                f"{duration(moved_s)} per video"
            )
        text += (
            f". Both experts resident, the steps need {need.total_gb:.2f} GiB "
            f"({resident_parts(need)}) of {summary.vram_gb:.2f} GiB VRAM: {verdict}"
        )
    return Recommendation(EXPERT_SWAP, text + ".")


def resident_parts(need: Resident) -> str:
    """What a both-resident estimate adds up, in words."""
    high, low = need.weights_gb
    return f"weights {high:.2f} + {low:.2f} GiB, activations {need.activation_gb:.2f} GiB"


def _per_unit(expert: ExpertLine, per_forward: bool) -> float:
    stable = expert.step_s_stable or 0.0
    return stable / (expert.forwards_per_step or 1.0) if per_forward else stable


def _slower(
    experts: Sequence[ExpertLine], summary: Summary, config: RunConfig
) -> Recommendation | None:
    if len(experts) != 2 or summary.total_s <= 0:
        return None
    if any(e.step_s_stable is None or e.steps < SLOWER_MIN_STEPS for e in experts):
        return None
    weights = [e.weights_gb for e in experts]
    if all(w is not None for w in weights):
        big, small = max(w or 0.0 for w in weights), min(w or 0.0 for w in weights)
        if big - small > SAME_SIZE_SHARE * big:
            return None  # not twins: their steps need not match
    # Forwards differ where one expert runs without classifier-free guidance: compare forwards.
    counts = [e.forwards_per_step for e in experts]
    per_forward = all(c is not None for c in counts) and counts[0] != counts[1]
    slow, fast = sorted(experts, key=lambda e: _per_unit(e, per_forward), reverse=True)
    fast_unit = _per_unit(fast, per_forward)
    if fast_unit <= 0 or _per_unit(slow, per_forward) < SLOWER_RATIO * fast_unit:
        return None
    scale = (slow.forwards_per_step or 1.0) if per_forward else 1.0
    lost = (_per_unit(slow, per_forward) - fast_unit) * scale * (slow.steps - 1)
    if 100 * lost / summary.total_s < NEGLIGIBLE_PCT:
        return None
    text = (
        f"The {slow.name} expert's steps take {duration(slow.step_s_stable)} against "
        f"{duration(fast.step_s_stable)} for the {fast.name} expert's (after each one's first "
        "step)"
    )
    if per_forward:
        text += (
            f", {duration(_per_unit(slow, True))} against {duration(fast_unit)} a transformer "
            "forward"
        )
    size = f" ({gib_or_mib(slow.weights_gb)} of weights each)" if slow.weights_gb else ""
    text += (
        f": {_per_unit(slow, per_forward) / fast_unit:.2f}x, though the two experts have the same "
        f"architecture{size}. Its {slow.steps - 1} later steps lose {duration(lost)} "
        f"({100 * lost / summary.total_s:.1f}% of the run)."
    )
    return Recommendation(EXPERT_SLOWER, text + _slower_why(slow, fast, config))


def _slower_why(slow: ExpertLine, fast: ExpertLine, config: RunConfig) -> str:
    later = slow.transfer_s - (slow.first_step_transfer_s or 0.0)
    if later > 0:
        return (
            f" {duration(later)} of its later steps is weight transfers: offload="
            f"{config.offload or 'n/a'} moves its weights during its steps."
        )
    if slow.sm_pct is None or fast.sm_pct is None:
        return ""  # without activity figures, nothing says where the time goes
    if slow.sm_pct <= fast.sm_pct - SM_GAP_PP:
        return (
            f" Its GPU was less busy (SM {slow.sm_pct:.1f}% against {fast.sm_pct:.1f}%): "
            "time is lost outside the kernels (host work, synchronizations)."
        )
    return (
        f" Its GPU was as busy (SM {slow.sm_pct:.1f}% against {fast.sm_pct:.1f}%): its kernels "
        "are slower (another dtype or attention backend for that expert, clocks, power capping)."
    )


def _few_steps(
    experts: Sequence[ExpertLine], summary: Summary, config: RunConfig
) -> Recommendation | None:
    # A run that stopped early may have stopped before the switch: only a whole loop counts.
    if len(experts) != 2 or summary.status != "ok":
        return None
    total = sum(e.steps for e in experts)
    few = min(experts, key=lambda e: e.steps)
    other = experts[1] if few is experts[0] else experts[0]
    if total == 0 or (few.steps >= FEW_STEPS and few.steps >= FEW_STEPS_SHARE * total):
        return None
    boundary = (
        f" (timestep {few.boundary_timestep:.1f})" if few.boundary_timestep is not None else ""
    )
    weights = gib_or_mib(few.weights_gb) if few.weights_gb is not None else None
    if few.steps == 0:
        text = (
            f"All {total} steps ran the {other.name} expert: the boundary{boundary} was never "
            f"crossed, so the {few.name} expert never ran"
        )
        if weights is not None:
            loaded = f" in {duration(few.init_s)}" if few.init_s is not None else ""
            text += f"; its {weights} of weights were loaded{loaded} for no step"
    else:
        text = (
            f"The boundary{boundary} left the {few.name} expert {few.steps} of {total} steps "
            f"({duration(few.duration_s)} of denoising)"
        )
        if few.own_transfer_s > 0:
            text += (
                f"; moving its weights ({gib_or_mib(few.own_transfer_gb)}) took "
                f"{duration(few.own_transfer_s)} for them"
            )
        elif weights is not None:
            text += f"; its {weights} of weights stay resident for them"
    share = "some" if few.steps == 0 else "more"
    return Recommendation(
        EXPERT_FEW_STEPS,
        text + ". The split follows the step count and the scheduler's shift (the boundary is "
        f"the model's): more steps give the {few.name} expert {share} of them.",
    )


def recommend_experts(
    experts: Sequence[ExpertLine], summary: Summary, config: RunConfig
) -> list[Recommendation]:
    """The two-expert rules that found something; none for a one-expert run."""
    if not experts:
        return []
    found = (rule(experts, summary, config) for rule in (_swap, _slower, _few_steps))
    return [r for r in found if r is not None]
