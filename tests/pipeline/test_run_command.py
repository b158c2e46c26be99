"""``wan-otel run`` end to end, in process: the store holds the run, the report reads it, a
failed generation is still stored and reportable, bad flags are one line and exit 2."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.trace import StatusCode

from wan_otel import semconv as sc
from wan_otel.cli import main
from wan_otel.store.otlp_json import STATUS_ERROR
from wan_otel.store.run_store import RunStore

RUN = ["run", "--preset", "tiny", "--seed", "3"]


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main([*RUN, *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_run_writes_the_store_and_the_video(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    video = tmp_path / "out.mp4"
    code, out, err = _run(
        capsys, "--store", str(tmp_path), "--run-id", "r1", "--output", str(video)
    )
    assert code == 0, err
    assert f"wan-otel report --run-id r1 --store {tmp_path}" in out
    assert video.stat().st_size > 0
    data = RunStore(tmp_path).read("r1")
    assert data.warnings == []
    names = [s.name for s in data.spans]
    for stage in sc.STAGE_SPANS:
        assert names.count(stage) == 1, stage
    assert names.count(sc.SPAN_DENOISE_STEP) == 3
    assert names.count(sc.SPAN_COMPONENT_INITIALIZE) == 5
    assert all(s.attributes[sc.RUN_ID] == "r1" for s in data.spans)
    (root,) = [s for s in data.spans if s.name == sc.SPAN_GENERATE]
    assert root.attributes[sc.MODEL_SOURCE] == "tiny" and root.attributes[sc.REQUEST_FPS] == 8
    assert sc.REQUEST_PROMPT not in root.attributes
    (export,) = [s for s in data.spans if s.name == sc.SPAN_EXPORT]
    assert export.attributes[sc.OUTPUT_BYTES] == video.stat().st_size
    # initialization happens inside the root span, as its first child
    stages = sorted(
        (s for s in data.spans if s.parent_span_id == root.span_id), key=lambda s: s.start_ns
    )
    assert stages[0].name == sc.SPAN_INITIALIZE
    summary = RunStore(tmp_path).summary("r1")
    assert summary is not None and summary.status == "ok"
    assert "[Denoising] step 3/3" in err


def test_report_reads_the_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("wan_otel.report")
    assert _run(capsys, "--store", str(tmp_path), "--run-id", "rep")[0] == 0
    code = main(["report", "--run-id", "rep", "--store", str(tmp_path), "--format", "json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    report = json.loads(out)
    assert report["summary"]["status"] == "ok"
    assert report["summary"]["steps_done"] == 3
    assert report["config"]["source"] == "tiny"
    assert {line["key"] for line in report["stages"] if line["duration_s"] is not None} >= {
        "initialization", "text_encoding", "denoising", "vae_decode",
    }  # fmt: skip


def test_a_vae_failure_is_one_line_exit_1_and_still_stored(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from diffusers import AutoencoderKLWan

    def explode(self: Any, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("VAE exploded\nsecond line")

    monkeypatch.setattr(AutoencoderKLWan, "_decode", explode)
    code, _, err = _run(capsys, "--store", str(tmp_path), "--run-id", "boom")
    assert code == 1
    lines = [line for line in err.splitlines() if line.startswith("wan-otel:")]
    assert lines == [
        "wan-otel: generation failed: RuntimeError: VAE exploded second line "
        f"(run boom; wan-otel report --run-id boom --store {tmp_path})"
    ]
    summary = RunStore(tmp_path).summary("boom")
    assert summary is not None and summary.status == "error"
    spans = RunStore(tmp_path).read("boom").spans
    failed = {s.name for s in spans if s.status_code == STATUS_ERROR}
    assert failed == {sc.SPAN_GENERATE, sc.SPAN_VAE_DECODE}
    assert StatusCode.ERROR.value == STATUS_ERROR
    if _has_report():
        assert main(["report", "--run-id", "boom", "--store", str(tmp_path)]) == 0
        assert "VAE exploded" in capsys.readouterr().out


def _has_report() -> bool:
    try:
        import wan_otel.report  # noqa: F401
    except ImportError:
        return False
    return True


def test_record_prompt_and_no_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        _run(
            capsys,
            "--store",
            str(tmp_path),
            "--run-id",
            "p",
            "--record-prompt",
            "--prompt",
            "a red fox",
        )[0]
        == 0
    )
    (root,) = [s for s in RunStore(tmp_path).read("p").spans if s.name == sc.SPAN_GENERATE]
    assert root.attributes[sc.REQUEST_PROMPT] == "a red fox"
    elsewhere = tmp_path / "unused"
    code, out, _ = _run(capsys, "--store", str(elsewhere), "--no-store", "--steps", "1")
    assert code == 0 and not elsewhere.exists() and "report:" not in out


def test_image_to_video(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("ftfy")
    from PIL import Image

    image = tmp_path / "first.png"
    Image.new("RGB", (48, 40), (10, 200, 10)).save(image)
    code, _, err = _run(
        capsys, "--store", str(tmp_path), "--run-id", "i2v", "--image", str(image), "--steps", "1"
    )
    assert code == 0, err
    (root,) = [s for s in RunStore(tmp_path).read("i2v").spans if s.name == sc.SPAN_GENERATE]
    assert root.attributes[sc.REQUEST_HAS_IMAGE] is True


def test_group_offload_run_stores_transfer_spans(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = _run(
        capsys, "--store", str(tmp_path), "--run-id", "g", "--offload", "group", "--steps", "1"
    )
    assert code == 0, err
    spans = RunStore(tmp_path).read("g").spans
    transfers = [s for s in spans if s.name == sc.SPAN_WEIGHT_TRANSFER]
    assert transfers and all(s.attributes[sc.TRANSFER_BYTES] > 0 for s in transfers)  # type: ignore[operator]


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--height", "48"], "--height 48: must be a multiple of 32 from 32 to 1024"),
        (["--frames", "10"], "--frames 10: must be 4k+1"),
        (["--run-id", "bad/id"], "invalid run id 'bad/id'"),
        (["--model", "/nonexistent/wan"], "--model /nonexistent/wan: no such folder"),
        (["--image", "/nonexistent.png"], "--image /nonexistent.png: no such file"),
        (["--run-id", "ok\n"], "invalid run id 'ok\\n'"),
        (["--frames", "129"], "--frames 129: must be 4k+1 from 1 to 125"),
        (["--width", "2048"], "--width 2048: must be a multiple of 32 from 32 to 1024"),
        (["--steps", "0"], "--steps 0: must be 1 to 10000"),
        (["--fps", "0"], "--fps 0: must be 1 to 240"),
        (["--guidance", "nan"], "--guidance nan: must be 0 to 100"),
        (["--seed", "-1"], "--seed -1: must be 0 to"),
        (["--prometheus-port", "99999"], "--prometheus-port 99999: must be 0 to 65535"),
        (["--offload", "model"], "--offload model on a CPU device"),
        (["--offload", "sequential"], "--offload sequential on a CPU device"),
        (["--device", "cuda:7"], "--device cuda:7"),
        (["--device", "meta"], "--device meta: only cpu and cuda"),
        (["--max-sequence-length", "0"], "--max-sequence-length 0: must be 1 to 512"),
    ],
)
def test_bad_flags_are_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], message: str
) -> None:
    code = main(["run", "--store", str(tmp_path), *flags])  # no --preset: tiny by default
    err = capsys.readouterr().err
    assert code == 2
    assert (
        err.strip().startswith("wan-otel: ")
        and message in err
        and len(err.strip().splitlines()) == 1
    )
    assert not any(tmp_path.iterdir())


def test_a_model_that_is_a_file_and_a_store_that_is_a_file_are_refused_up_front(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    afile = tmp_path / "plain-file"
    afile.write_text("not a folder")
    assert main(["run", "--model", str(afile), "--no-store"]) == 2
    assert capsys.readouterr().err == f"wan-otel: --model {afile}: a file, not a model folder\n"
    assert main(["run", "--store", str(afile)]) == 2
    assert capsys.readouterr().err == f"wan-otel: run store {afile} is not a folder\n"
    assert afile.read_text() == "not a folder"


def test_a_busy_prometheus_port_is_refused_up_front(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as busy:
        busy.bind(("0.0.0.0", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        code = main(["run", "--store", str(tmp_path), "--prometheus-port", str(port)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith(f"wan-otel: --prometheus-port {port}: cannot listen")
    assert len(err.splitlines()) == 1 and not any(tmp_path.iterdir())


def test_a_folder_without_model_index_is_bad_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["run", "--model", str(tmp_path), "--no-store"])
    assert code == 2
    assert "no model_index.json" in capsys.readouterr().err


def test_a_checkpoint_folder_loads_component_by_component(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--model DIR`` on a diffusers folder saved from the tiny preset (a real TI2V-5B
    checkpoint takes the same path, with 20 GB of weights)."""
    from tests.pipeline.helpers import build_tiny

    model = tmp_path / "Wan-tiny-Diffusers"
    build_tiny().save_pretrained(model)
    store = tmp_path / "store"
    code = main(
        ["run", "--model", str(model), "--steps", "2", "--height", "32", "--width", "32",
         "--frames", "9", "--max-sequence-length", "16", "--store", str(store), "--run-id", "ck"]
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    spans = RunStore(store).read("ck").spans
    components = [
        s.attributes[sc.COMPONENT_NAME] for s in spans if s.name == sc.SPAN_COMPONENT_INITIALIZE
    ]
    assert sorted(components) == ["scheduler", "text_encoder", "tokenizer", "transformer", "vae"]  # type: ignore[type-var]
    (root,) = [s for s in spans if s.name == sc.SPAN_GENERATE]
    assert root.attributes[sc.MODEL_SOURCE] == "checkpoint"
    assert root.attributes[sc.MODEL_NAME] == "Wan-tiny"
    assert root.attributes[sc.MODEL_TASK] == "ti2v"
    assert len([s for s in spans if s.name == sc.SPAN_DENOISE_STEP]) == 2


def test_a_reused_run_id_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "taken").mkdir()
    code, _, err = _run(capsys, "--store", str(tmp_path), "--run-id", "taken")
    assert code == 2
    assert err == f"wan-otel: run 'taken' already exists in {tmp_path}: choose another run id\n"
    assert list((tmp_path / "taken").iterdir()) == []  # nothing appended
