"""Known figures of Wan2.2 generations by GPU and configuration, and the one a run is compared
with ("is this normal?").

Not ``baseline.py`` (a multi-GPU run against a one-GPU run the user names with
``--baseline``): these are shipped figures the report looks up by itself. Three sources, in
the order they are matched:

1. our committed runs (``docs/examples/runs``, random weights at full size, real timings): the
   mean step after the first, which does not depend on the step count;
2. the reference L40S run (``wan_otel/examples/reference_l40s.py``): its mean step after the
   first;
3. Wan2.2's README table (``assets/comp_effic.png``, README lines 425-440; read from the image,
   ``/work/shared/research/pipeline.md`` 3.3): total seconds of a generation at the models'
   default step counts (50 for TI2V-5B, 40 for A14B) and frame counts (121, 81; the frame
   count is not stated, Wan2.2 issue #284), "averaged after warm-up", so compared with the
   run's total minus its initialization. FlashAttention-3 on Hopper; TI2V-5B with
   ``--offload_model True --convert_model_dtype --t5_cpu`` on one GPU and Ulysses on 4 or 8.

A figure matches a run of the same model, GPU family (``gpu_peaks``), size, frame count and
GPU count, and of the same offload mode and transformer precision where the figure states
them; README figures also need the default step count. The first match is used.
"""

from __future__ import annotations

from dataclasses import dataclass

from wan_otel.report.gpu_peaks import gpu_family
from wan_otel.report.limits import KnownBaseline
from wan_otel.report.model import RunConfig, StageLine, Summary, SystemInfo

STEP_S = "step_s"
GENERATION_S = "generation_s"
AS_EXPECTED_PCT = 5.0
"""Within this many percent of the known figure, the run reads "as expected"."""
_COMMITTED = "committed run docs/examples/runs/"
_README = "Wan2.2 README table (assets/comp_effic.png), "


@dataclass(frozen=True)
class KnownFigure:
    name: str
    source: str
    gpu: str
    """GPU family, as ``gpu_peaks.gpu_family`` names it."""
    model: str
    width: int
    height: int
    frames: int
    world_size: int
    figure: str
    value: float
    offload: str | None = None
    """None: any (the source does not say, or it does not matter)."""
    dtype: str | None = None
    steps: int | None = None
    """Needed for ``generation_s`` (a total depends on the step count)."""


_5B, _T2V, _I2V = "Wan2.2-TI2V-5B", "Wan2.2-T2V-A14B", "Wan2.2-I2V-A14B"


def _run(run_id: str, gpu: str, model: str, size: tuple[int, int, int], world: int,
         offload: str, step_s: float) -> KnownFigure:  # fmt: skip
    return KnownFigure(run_id, _COMMITTED + run_id, gpu, model, *size, world, STEP_S, step_s,
                       offload, "bfloat16")  # fmt: skip


def _readme(gpu: str, model: str, size: tuple[int, int, int], totals: tuple[float, ...],
            steps: int) -> list[KnownFigure]:  # fmt: skip
    """One figure per GPU count (1, 4, 8) of one row and resolution of the README table."""
    return [
        KnownFigure(
            f"Wan2.2 README: {model}, {gpu}, {world} GPU(s)",
            _README + f"{size[0]}x{size[1]}, {world} GPU(s)",
            gpu,
            model,
            *size,
            world,
            GENERATION_S,
            total,
            steps=steps,
        )
        for world, total in zip((1, 4, 8), totals, strict=True)
    ]


_720P_5B, _720P, _480P = (1280, 704, 121), (1280, 720, 81), (832, 480, 81)

KNOWN: tuple[KnownFigure, ...] = (
    _run(
        "h100-ti2v-5b-random-none-50steps-20261126T232255Z",
        "H100 SXM",
        _5B,
        _720P_5B,
        1,
        "none",
        2.4566,
    ),
    _run(
        "h100-ti2v-5b-random-model-50steps-20261126T232255Z",
        "H100 SXM",
        _5B,
        _720P_5B,
        1,
        "model",
        2.4545,
    ),
    _run(
        "h200-ti2v-5b-random-none-10steps-20261128T224324Z",
        "H200 SXM",
        _5B,
        _720P_5B,
        1,
        "none",
        2.3711,
    ),
    _run(
        "h200-ti2v-5b-random-model-10steps-20261128T224324Z",
        "H200 SXM",
        _5B,
        _720P_5B,
        1,
        "model",
        2.3621,
    ),
    _run(
        "h200-ti2v-5b-random-ulysses2-10steps-20261128T235018Z",
        "H200 SXM",
        _5B,
        _720P_5B,
        2,
        "none",
        1.3080,
    ),
    _run(
        "h200-t2v-a14b-random-none-4steps-20261128T233037Z",
        "H200 SXM",
        _T2V,
        _720P,
        1,
        "none",
        25.3112,
    ),
    _run(
        "h200-t2v-a14b-random-model-4steps-20261128T233252Z",
        "H200 SXM",
        _T2V,
        _720P,
        1,
        "model",
        33.9480,
    ),
    KnownFigure(
        "reference-l40s",
        "the reference L40S run (wan_otel/examples/reference_l40s.py)",
        "L40S",
        _5B,
        1280,
        704,
        161,
        1,
        STEP_S,
        12.8224,
        "model",
        "float16",
    ),
    *_readme("RTX 4090", _5B, _720P_5B, (534.7, 231.3, 157.2), 50),
    *_readme("H20", _T2V, _480P, (1133.9, 306.6, 170.5), 40),
    *_readme("H20", _T2V, _720P, (4048.7, 1067.8, 564.7), 40),
    *_readme("H20", _I2V, _480P, (1117.4, 305.4, 173.4), 40),
    *_readme("H20", _I2V, _720P, (4054.7, 1076.9, 577.0), 40),
    *_readme("A100", _T2V, _480P, (785.7, 215.2, 119.9), 40),
    *_readme("A100", _T2V, _720P, (2735.7, 725.3, 386.7), 40),
    *_readme("A100", _I2V, _480P, (810.0, 215.4, 121.6), 40),
    *_readme("A100", _I2V, _720P, (2810.9, 730.5, 393.4), 40),
    *_readme("H100 SXM", _T2V, _480P, (326.9, 91.7, 51.5), 40),
    *_readme("H100 SXM", _T2V, _720P, (1041.5, 288.7, 155.1), 40),
    *_readme("H100 SXM", _I2V, _480P, (327.8, 92.4, 52.9), 40),
    *_readme("H100 SXM", _I2V, _720P, (1055.9, 290.4, 159.0), 40),
)
"""Every known figure, in matching order."""


def _matches(k: KnownFigure, config: RunConfig, gpu: str | None, world: int) -> bool:
    return (
        k.gpu == gpu
        and k.model == config.model
        and (k.width, k.height, k.frames) == (config.width, config.height, config.num_frames)
        and k.world_size == world
        and (k.offload is None or k.offload == config.offload)
        and (k.dtype is None or k.dtype == config.dtypes.get("transformer"))
        and (k.steps is None or k.steps == config.num_steps)
    )


def _measured(k: KnownFigure, summary: Summary, stages: list[StageLine]) -> float | None:
    if k.figure == STEP_S:
        return summary.step_s_stable if summary.steps_done > 1 else None
    init = next((s.duration_s for s in stages if s.key == "initialization"), None)
    return summary.total_s - (init or 0.0)


def known_baseline(
    config: RunConfig, system: SystemInfo, summary: Summary, stages: list[StageLine]
) -> KnownBaseline | None:
    """The first known figure for the run's GPU and configuration, and the run against it;
    None when none matches (or the run did not get as far as the figure)."""
    if summary.status != "ok":
        return None
    gpu = gpu_family(system.gpu_name)
    for k in KNOWN:
        if not _matches(k, config, gpu, summary.world_size):
            continue
        measured = _measured(k, summary, stages)
        if measured is None:
            return None
        shared = [k.gpu, k.model, f"{k.width}x{k.height}", f"{k.frames} frames"]
        shared += [f"{k.world_size} GPU(s)"]
        shared += [f"offload {k.offload}"] if k.offload else []
        shared += [f"{k.steps} steps"] if k.steps else []
        return KnownBaseline(
            name=k.name,
            source=k.source,
            figure=k.figure,
            expected=k.value,
            measured=measured,
            delta_pct=100.0 * (measured - k.value) / k.value,
            matched_on=", ".join(shared),
        )
    return None
