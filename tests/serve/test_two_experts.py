"""A two-expert model served: `wan-otel serve --preset tiny-a14b` takes jobs like TI2V-5B's,
each a run whose steps name their expert, with the second expert's guidance as
``guidance_scale_2``; it refuses a first frame it cannot use."""

from __future__ import annotations

from pathlib import Path

from tests.serve.conftest import Switches, start_server
from wan_otel import semconv as sc
from wan_otel.store import RunStore


def test_a_served_two_expert_job_records_both_experts(tmp_path: Path, switches: Switches) -> None:
    running = start_server(tmp_path, switches, preset="tiny-a14b")
    try:
        client = running.client()
        body = {"prompt": "a fox", "size": "32x32", "num_frames": 5, "num_inference_steps": 4}
        job = client.submit(body).body
        done = client.wait(job["id"])
        assert done["status"] == "completed", done
        spans = RunStore(tmp_path).read(job["id"]).spans
        experts = {
            s.attributes.get(sc.DENOISE_EXPERT) for s in spans if s.name == sc.SPAN_DENOISE_STEP
        }
        assert experts == {"transformer", "transformer_2"}
        (root,) = [s for s in spans if s.name == sc.SPAN_GENERATE]
        assert root.attributes[sc.MODEL_NAME] == "Wan2.2-T2V-A14B-tiny"
        assert root.attributes[sc.REQUEST_GUIDANCE_2] == 3.0
        refused = client.submit(dict(body, input_reference="data:image/png;base64,AAAA"))
        assert refused.status == 400
        assert "takes no input image" in refused.body["error"]["message"]
        second = client.submit(dict(body, guidance_scale_2=2.5)).body
        assert client.wait(second["id"])["guidance_scale_2"] == 2.5
        spans = RunStore(tmp_path).read(second["id"]).spans
        (root,) = [s for s in spans if s.name == sc.SPAN_GENERATE]
        assert root.attributes[sc.REQUEST_GUIDANCE_2] == 2.5
    finally:
        running.stop()
