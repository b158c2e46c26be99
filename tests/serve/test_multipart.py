"""Plain HTTP clients written for vLLM-Omni's Videos API: multipart forms with its field names
(width, height, num_frames, fps, num_inference_steps, guidance_scale, negative_prompt, seed,
an uploaded input_reference, image_reference as JSON text), URL-encoded forms, curl's JSON
sent as a form, and ``POST /v1/videos/sync`` answering the mp4 itself."""

from __future__ import annotations

import base64
import io
import json

from PIL import Image

from tests.serve.conftest import Running, error_of
from wan_otel import semconv as sc
from wan_otel.store.run_store import RunStore

FORM = {
    "prompt": "A cinematic tracking shot of a mountain lake at sunrise",
    "negative_prompt": "blurry",
    "width": "64",
    "height": "32",
    "num_frames": "5",
    "fps": "8",
    "num_inference_steps": "2",
    "guidance_scale": "4.5",
    "seed": "42",
}


def multipart(fields: dict[str, str]) -> dict[str, tuple[None, str]]:
    """Text parts as ``curl -F name=value`` sends them."""
    return {name: (None, value) for name, value in fields.items()}


def test_a_vllm_omni_form_job(idle: Running) -> None:
    client = idle.client()
    answer = client.request("POST", "/v1/videos", files=multipart(FORM))
    assert answer.status == 202, answer.body
    record = answer.body
    assert (record["size"], record["num_frames"], record["fps"]) == ("64x32", 5, 8)
    assert (record["num_inference_steps"], record["guidance_scale"], record["seed"]) == (2, 4.5, 42)
    assert record["seconds"] == "0.5"
    done = client.wait(record["id"])
    assert done["status"] == "completed"
    content = client.request("GET", f"/v1/videos/{record['id']}/content")
    assert content.status == 200 and content.raw[4:8] == b"ftyp"
    (root,) = [s for s in RunStore(idle.store).read(record["id"]).spans
               if s.name == sc.SPAN_GENERATE]  # fmt: skip
    assert root.attributes[sc.REQUEST_WIDTH] == 64 and root.attributes[sc.REQUEST_GUIDANCE] == 4.5


def png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 32), (10, 200, 10)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_image_uploads_and_image_reference_text(idle: Running) -> None:
    client = idle.client()
    uploaded = client.request(
        "POST", "/v1/videos",
        files={**multipart(FORM), "input_reference": ("input.png", png(), "image/png")},
    )  # fmt: skip
    data_url = "data:image/png;base64," + base64.b64encode(png()).decode()
    referenced = client.request(
        "POST", "/v1/videos",
        files=multipart({**FORM, "image_reference": json.dumps({"image_url": data_url})}),
    )  # fmt: skip
    assert (uploaded.status, referenced.status) == (202, 202)
    for answer in (uploaded, referenced):
        done = client.wait(answer.body["id"])
        assert (done["status"], done["has_input_reference"]) == ("completed", True)
    both = client.request(
        "POST", "/v1/videos",
        files={**multipart({**FORM, "image_reference": json.dumps({"image_url": data_url})}),
               "input_reference": ("input.png", png(), "image/png")},
    )  # fmt: skip
    assert both.status == 400
    assert error_of(both)["message"] == (
        "image_reference: give input_reference or image_reference, not both"
    )
    remote = client.request(
        "POST", "/v1/videos",
        files=multipart({**FORM, "image_reference": '{"image_url": "https://example.com/a.png"}'}),
    )  # fmt: skip
    assert error_of(remote)["message"] == (
        "image_reference: the server fetches no URLs; upload the image or send a data URL"
    )
    not_image = client.request(
        "POST", "/v1/videos",
        files={**multipart(FORM), "input_reference": ("x.png", b"not an image", "image/png")},
    )  # fmt: skip
    assert error_of(not_image)["message"].startswith("input_reference: not a readable image")


def test_url_encoded_forms_and_curls_json(idle: Running) -> None:
    client = idle.client()
    form = client.request("POST", "/v1/videos", data=FORM)
    assert form.status == 202 and form.body["size"] == "64x32"
    # curl -d '{...}' without a Content-Type header sends JSON labelled as a form.
    curl = client.request(
        "POST", "/v1/videos", content=json.dumps({**FORM, "seed": 3}).encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )  # fmt: skip
    assert curl.status == 202 and curl.body["seed"] == 3
    form_type = {"Content-Type": "application/x-www-form-urlencoded"}
    twice = client.request("POST", "/v1/videos", content=b"prompt=a&prompt=b", headers=form_type)
    assert (twice.status, error_of(twice)["message"]) == (400, "field 'prompt' is given twice")
    for answer in (form, curl):
        assert client.wait(answer.body["id"])["status"] == "completed"


def test_sync_answers_the_video_bytes(idle: Running) -> None:
    client = idle.client()
    answer = client.request("POST", "/v1/videos/sync", files=multipart(FORM))
    assert answer.status == 200 and answer.headers["content-type"] == "video/mp4"
    assert answer.raw[4:8] == b"ftyp"
    job_id = answer.headers[sc.HEADER_RUN_ID]
    assert float(answer.headers["x-inference-time-s"]) > 0
    record = client.request("GET", f"/v1/videos/{job_id}").body
    assert record["status"] == "completed" and record["bytes"] == len(answer.raw)
    json_sync = client.request("POST", "/v1/videos/sync", json={"prompt": "x", "size": "32x32",
                                                               "num_frames": 1})  # fmt: skip
    assert json_sync.status == 200 and json_sync.raw[4:8] == b"ftyp"
    refused = client.request("POST", "/v1/videos/sync", files=multipart({**FORM, "fps": "0"}))
    assert (refused.status, error_of(refused)["param"]) == (400, "fps")


def test_a_sync_model_failure_is_a_server_error(idle: Running) -> None:
    idle.switches.fail_decode.set()
    answer = idle.client().request("POST", "/v1/videos/sync", files=multipart(FORM))
    assert answer.status == 500
    error = error_of(answer)
    assert (error["code"], error["type"]) == ("generation_failed", "server_error")
    assert error["message"].endswith("RuntimeError: injected VAE failure")
