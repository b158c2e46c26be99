"""Wan2.2 A14B's two experts on the CPU: the ``tiny-a14b`` preset (two toy transformers,
boundary 0.875, the Wan2.1-style 16-channel VAE) and a two-transformer checkpoint folder.
Each step names its expert, the loop the switch, the root the boundary and both guidances."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from wan_otel import semconv as sc
from wan_otel.cli import main
from wan_otel.pipeline.runner.presets import TINY_A14B, build_preset, spec_for
from wan_otel.store import RunStore, SpanRecord


def _spans(store: Path, run_id: str) -> list[SpanRecord]:
    data = RunStore(store).read(run_id)
    assert data.warnings == []
    return data.spans


def _steps(spans: list[SpanRecord]) -> list[SpanRecord]:
    steps = [s for s in spans if s.name == sc.SPAN_DENOISE_STEP]
    return sorted(steps, key=lambda s: int(s.attributes[sc.DENOISE_STEP]))  # type: ignore[arg-type]


def test_the_tiny_a14b_run_names_each_steps_expert_and_the_switch(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", "--preset", TINY_A14B, "--store", str(tmp_path), "--run-id", "a"]) == 0
    spans = _spans(tmp_path, "a")
    steps = _steps(spans)
    # UniPC, flow shift 3, 4 steps: timesteps 999, 900, 750, 500; the boundary is 875.
    assert [s.attributes[sc.DENOISE_TIMESTEP] for s in steps] == [999.0, 900.0, 750.0, 500.0]
    experts = [s.attributes[sc.DENOISE_EXPERT] for s in steps]
    assert experts == ["transformer", "transformer", "transformer_2", "transformer_2"]
    for step in steps:
        forwards = [
            s
            for s in spans
            if s.name == sc.SPAN_TRANSFORMER_FORWARD and s.parent_span_id == step.span_id
        ]
        assert [f.attributes[sc.COMPONENT_NAME] for f in forwards] == [
            step.attributes[sc.DENOISE_EXPERT]
        ] * 2
    (loop,) = [s for s in spans if s.name == sc.SPAN_DENOISE]
    assert loop.attributes[sc.DENOISE_BOUNDARY_TIMESTEP] == 875.0
    assert loop.attributes[sc.DENOISE_SWITCH_STEP] == 2
    assert loop.attributes[sc.DENOISE_SWITCH_TIMESTEP] == 750.0
    (root,) = [s for s in spans if s.name == sc.SPAN_GENERATE]
    assert root.attributes[sc.MODEL_NAME] == "Wan2.2-T2V-A14B-tiny"
    assert root.attributes[sc.MODEL_TASK] == "t2v"
    assert root.attributes[sc.MODEL_BOUNDARY_RATIO] == 0.875
    assert root.attributes[sc.REQUEST_GUIDANCE] == 4.0
    assert root.attributes[sc.REQUEST_GUIDANCE_2] == 3.0
    one = root.attributes[sc.weight_bytes_key("transformer")]
    assert isinstance(one, int) and one > 0
    assert root.attributes[sc.weight_bytes_key("transformer_2")] == one  # the same architecture
    components = sorted(
        str(s.attributes[sc.COMPONENT_NAME])
        for s in spans
        if s.name == sc.SPAN_COMPONENT_INITIALIZE
    )
    assert components == [
        "scheduler",
        "text_encoder",
        "tokenizer",
        "transformer",
        "transformer_2",
        "vae",
    ]


def test_a_two_transformer_checkpoint_loads_both_experts(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = tmp_path / "Wan2.2-T2V-A14B-tiny-Diffusers"
    build_preset(TINY_A14B, device=torch.device("cpu"), dtype=torch.float32).pipe.save_pretrained(
        model
    )
    assert (model / "transformer_2" / "config.json").is_file()
    spec = spec_for("checkpoint", model)
    assert spec.two_experts and spec.boundary_ratio == 0.875 and spec.spatial_multiple == 16
    store = tmp_path / "store"
    code = main(
        ["run", "--model", str(model), "--steps", "4", "--height", "32", "--width", "32",
         "--frames", "9", "--max-sequence-length", "16", "--store", str(store), "--run-id", "ck"]
    )  # fmt: skip
    assert code == 0
    spans = _spans(store, "ck")
    (root,) = [s for s in spans if s.name == sc.SPAN_GENERATE]
    assert root.attributes[sc.MODEL_NAME] == "Wan2.2-T2V-A14B-tiny"
    assert root.attributes[sc.MODEL_SOURCE] == "checkpoint"
    assert {s.attributes.get(sc.DENOISE_EXPERT) for s in _steps(spans)} == {
        "transformer",
        "transformer_2",
    }


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--width", "40"], "--width 40: must be a multiple of 16 from 16 to 512"),
        (["--guidance-2", "-1"], "--guidance-2 -1.0: must be 0 to 100"),
    ],
)
def test_two_expert_flags_are_checked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], message: str
) -> None:
    assert main(["run", "--preset", TINY_A14B, "--store", str(tmp_path), *flags]) == 2
    assert message in capsys.readouterr().err


def test_one_expert_models_refuse_a_second_guidance(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", "--preset", "tiny", "--store", str(tmp_path), "--guidance-2", "3"]) == 2
    assert "has one transformer" in capsys.readouterr().err


def test_the_i2v_preset_needs_a_first_frame(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", "--preset", "i2v-a14b-random", "--store", str(tmp_path)]) == 2
    assert "generates from a first frame" in capsys.readouterr().err
