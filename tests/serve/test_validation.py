"""Request validation: defaults resolved from the model, and every bad field named with what
is allowed (limits of TI2V-5B: sizes in multiples of 32, 4k+1 frames)."""

from __future__ import annotations

import base64
import io
import json

import pytest
from PIL import Image

from wan_otel.pipeline.runner import presets
from wan_otel.pipeline.serve.errors import ApiError
from wan_otel.pipeline.serve.validation import Limits, VideoRequest, parse_json, validate

LIMITS = Limits(
    spatial_multiple=32, temporal_multiple=4, max_side=1280, max_frames=121, max_steps=100
)
MODEL = "Wan2.2-TI2V-5B"


def check(body: dict[str, object], limits: Limits = LIMITS) -> VideoRequest:
    return validate(body, limits, presets.TI2V_5B_DEFAULTS, MODEL)


def refused(body: dict[str, object], limits: Limits = LIMITS) -> ApiError:
    with pytest.raises(ApiError) as info:
        check(body, limits)
    assert info.value.status == 400
    return info.value


def png(width: int = 8, height: int = 8) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 10, 10)).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def test_defaults_are_the_models_reference_settings() -> None:
    request = check({"prompt": "a cat", "seed": 7})
    assert (request.width, request.height, request.num_frames) == (1280, 704, 121)
    assert request.num_inference_steps == 50 and request.guidance_scale == 5.0
    assert request.fps == 24 and request.seed == 7 and request.image is None


def test_a_seed_is_picked_when_none_is_given() -> None:
    seeds = {check({"prompt": "a"}).seed for _ in range(5)}
    assert len(seeds) == 5 and all(0 <= s < 2**63 for s in seeds)


def test_seconds_become_4k_plus_1_frames_at_the_fps() -> None:
    request = check({"prompt": "a", "seconds": "4", "fps": 24})
    assert request.num_frames == 97
    assert check({"prompt": "a", "seconds": 1.1, "fps": 10}).num_frames == 13


@pytest.mark.parametrize(
    ("body", "param", "says"),
    [
        ({}, "prompt", "prompt is required"),
        ({"prompt": "  "}, "prompt", "prompt: must be a non-empty string"),
        ({"prompt": 3}, "prompt", "prompt: must be a non-empty string"),
        ({"prompt": "a", "size": "1000x704"}, "size",
         "width and height must be multiples of 32 from 32 to 1280 (e.g. '1280x704')"),
        ({"prompt": "a", "size": "1280x1312"}, "size", "multiples of 32 from 32 to 1280"),
        ({"prompt": "a", "size": "wide"}, "size", "'wide' is not 'WIDTHxHEIGHT'"),
        ({"prompt": "a", "num_frames": 120}, "num_frames",
         "num_frames: 120 must be 4k+1 from 1 to 121 (1, 5, 9, ...)"),
        ({"prompt": "a", "num_frames": 125}, "num_frames", "125 is out of range; allowed 1 to 121"),
        ({"prompt": "a", "num_frames": 8.5}, "num_frames", "8.5 is not an integer"),
        ({"prompt": "a", "num_inference_steps": 0}, "num_inference_steps",
         "0 is out of range; allowed 1 to 100"),
        ({"prompt": "a", "num_inference_steps": True}, "num_inference_steps", "is not an integer"),
        ({"prompt": "a", "guidance_scale": 0.5}, "guidance_scale",
         "0.5 is out of range; allowed 1 to 20"),
        ({"prompt": "a", "guidance_scale": "high"}, "guidance_scale", "'high' is not a number"),
        ({"prompt": "a", "seconds": 6, "fps": 24}, "seconds",
         "6 s at 24 fps is 145 frames; at most 121 (5.00 s)"),
        ({"prompt": "a", "seconds": 2, "num_frames": 9}, "seconds", "not both"),
        ({"prompt": "a", "seed": -1}, "seed", "allowed 0 to 9223372036854775807"),
        ({"prompt": "a", "fps": 0}, "fps", "allowed 1 to 60"),
        ({"prompt": "a", "num_steps": 4}, "num_steps",
         "unknown field 'num_steps'; allowed: prompt, negative_prompt, size"),
        ({"prompt": "a", "model": "sora-2"}, "model",
         "model 'sora-2' is not served here; this server serves 'Wan2.2-TI2V-5B'"),
        ({"prompt": "a", "input_reference": "/etc/passwd"}, "input_reference",
         "must be a base64 data URL of image/png, image/jpeg, image/webp"),
        ({"prompt": "a", "input_reference": "data:image/png;base64,@@@"}, "input_reference",
         "base64 is malformed"),
        ({"prompt": "a", "input_reference": "data:image/png;base64,aGVsbG8="}, "input_reference",
         "not a readable image"),
    ],
)  # fmt: skip
def test_bad_fields_are_named_with_what_is_allowed(
    body: dict[str, object], param: str, says: str
) -> None:
    error = refused(body)
    assert error.param == param
    assert says in error.message
    assert error.body()["error"]["param"] == param
    assert error.body()["error"]["type"] == "invalid_request_error"


def test_the_model_name_matches_case_insensitively() -> None:
    assert check({"prompt": "a", "model": "wan2.2-ti2v-5b"}).prompt == "a"


def test_an_image_is_decoded_and_kept_as_sent() -> None:
    request = check({"prompt": "a", "input_reference": png(12, 8)})
    image = request.image
    assert image is not None
    assert (image.width, image.height, image.suffix) == (12, 8, ".png")
    assert image.data.startswith(b"\x89PNG")


def test_images_too_large_or_refused_by_the_server() -> None:
    small = Limits(32, 4, 1280, 121, 100, max_image_side=10)
    assert (
        "16x16; at most 10"
        in refused({"prompt": "a", "input_reference": png(16, 16)}, small).message
    )
    no_images = Limits(32, 4, 1280, 121, 100, image_refusal="input_reference: needs --offload none")
    error = refused({"prompt": "a", "input_reference": png()}, no_images)
    assert error.message == "input_reference: needs --offload none"
    assert error.code == "unsupported_parameter"


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        (
            b"{",
            "body is not valid JSON: Expecting property name enclosed in double quotes at line 1 "
            "column 2",
        ),
        (b"[1, 2]", "body must be a JSON object"),
        (b"\xff\xfe", "body is not"),
    ],
)
def test_malformed_json_says_where(raw: bytes, says: str) -> None:
    with pytest.raises(ApiError) as info:
        parse_json(raw)
    assert info.value.status == 400 and info.value.code == "invalid_json"
    assert says in info.value.message


def test_a_good_body_parses() -> None:
    assert parse_json(json.dumps({"prompt": "x"}).encode()) == {"prompt": "x"}
