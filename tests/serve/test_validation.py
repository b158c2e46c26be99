"""Request validation: defaults resolved from the model, JSON numbers and form text alike,
OpenAI's and vLLM-Omni's names, and every bad field named with what is allowed (limits of
TI2V-5B: sizes in multiples of 32, 4k+1 frames)."""

from __future__ import annotations

import base64
import io

import pytest
from PIL import Image

from wan_otel.pipeline.runner import presets
from wan_otel.pipeline.serve.errors import ApiError
from wan_otel.pipeline.serve.images import Upload
from wan_otel.pipeline.serve.validation import Limits, ModelNames, VideoRequest, validate

LIMITS = Limits(
    spatial_multiple=32, temporal_multiple=4, max_side=1280, max_frames=121, max_steps=100
)
NAMES = ModelNames("Wan2.2-TI2V-5B", ("ti2v-5b-random",))


def check(body: dict[str, object], limits: Limits = LIMITS) -> VideoRequest:
    return validate(body, limits, presets.TI2V_5B_DEFAULTS, NAMES)


def refused(body: dict[str, object], limits: Limits = LIMITS) -> ApiError:
    with pytest.raises(ApiError) as info:
        check(body, limits)
    assert info.value.status == 400
    return info.value


def png(width: int = 8, height: int = 8, kind: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 10, 10)).save(buffer, format=kind)
    return buffer.getvalue()


def data_url(data: bytes, media: str = "image/png") -> str:
    return f"data:{media};base64," + base64.b64encode(data).decode()


def test_defaults_are_the_models_reference_settings() -> None:
    request = check({"prompt": "a cat", "seed": 7})
    assert (request.width, request.height, request.num_frames) == (1280, 704, 121)
    assert request.num_inference_steps == 50 and request.guidance_scale == 5.0
    assert request.fps == 24 and request.seed == 7 and request.image is None
    assert request.guidance_scale_2 is None


def test_a_seed_is_picked_when_none_is_given() -> None:
    seeds = {check({"prompt": "a"}).seed for _ in range(5)}
    assert len(seeds) == 5 and all(0 <= s < 2**63 for s in seeds)


def test_form_text_and_json_numbers_are_alike() -> None:
    text = check({"prompt": "a", "width": "640", "height": "352", "num_frames": "9",
                  "fps": "16", "num_inference_steps": "4", "guidance_scale": "3.5",
                  "seed": "12"})  # fmt: skip
    numbers = check({"prompt": "a", "size": "640x352", "num_frames": 9, "fps": 16,
                     "num_inference_steps": 4.0, "guidance_scale": 3.5, "seed": 12})  # fmt: skip
    assert text == numbers
    assert (text.width, text.height, text.num_frames, text.seed) == (640, 352, 9, 12)


def test_seconds_become_4k_plus_1_frames_at_the_fps() -> None:
    assert check({"prompt": "a", "seconds": "4", "fps": 24}).num_frames == 97
    assert check({"prompt": "a", "seconds": 1.1, "fps": 10}).num_frames == 13


@pytest.mark.parametrize(
    ("body", "param", "says"),
    [
        ({}, "prompt", "prompt is required"),
        ({"prompt": "  "}, "prompt", "prompt: must be a non-empty string"),
        ({"prompt": 3}, "prompt", "prompt: must be a non-empty string"),
        ({"prompt": "a\ud800b"}, "prompt", "not valid Unicode text (a lone surrogate at 1)"),
        ({"prompt": "a", "negative_prompt": "\udfff"}, "negative_prompt", "lone surrogate"),
        ({"prompt": Upload("p.txt", "text/plain", b"x")}, "prompt", "must be a non-empty string"),
        ({"prompt": "a", "size": "1000x704"}, "size",
         "width and height must be multiples of 32 from 32 to 1280 (e.g. '1280x704')"),
        ({"prompt": "a", "size": "1280x1312"}, "size", "multiples of 32 from 32 to 1280"),
        ({"prompt": "a", "size": "wide"}, "size", "'wide' is not 'WIDTHxHEIGHT'"),
        ({"prompt": "a", "size": "640x352", "width": 320}, "size", "disagrees with width 320"),
        ({"prompt": "a", "width": 640}, "height", "give width and height together"),
        ({"prompt": "a", "width": "640", "height": "350"}, "width", "'640x350': width and"),
        ({"prompt": "a", "num_frames": 120}, "num_frames",
         "num_frames: 120 must be 4k+1 from 1 to 121 (1, 5, 9, ...)"),
        ({"prompt": "a", "num_frames": 125}, "num_frames", "125 is out of range; allowed 1 to 121"),
        ({"prompt": "a", "num_frames": 8.5}, "num_frames", "8.5 is not an integer"),
        ({"prompt": "a", "num_frames": "9.0"}, "num_frames", "'9.0' is not an integer"),
        ({"prompt": "a", "num_inference_steps": 0}, "num_inference_steps",
         "0 is out of range; allowed 1 to 100"),
        ({"prompt": "a", "num_inference_steps": True}, "num_inference_steps", "is not an integer"),
        ({"prompt": "a", "guidance_scale": 0.5}, "guidance_scale",
         "0.5 is out of range; allowed 1 to 20"),
        ({"prompt": "a", "guidance_scale": "high"}, "guidance_scale", "'high' is not a number"),
        ({"prompt": "a", "guidance_scale": "nan"}, "guidance_scale", "'nan' is not a number"),
        ({"prompt": "a", "guidance_scale": 1e999}, "guidance_scale", "inf is not a number"),
        ({"prompt": "a", "guidance_scale_2": 3.0}, "guidance_scale_2", "has one expert"),
        ({"prompt": "a", "seconds": 6, "fps": 24}, "seconds",
         "6 s at 24 fps is 145 frames; at most 121 (5.00 s)"),
        ({"prompt": "a", "seconds": "0"}, "seconds", "0 must be more than 0"),
        ({"prompt": "a", "seconds": 2, "num_frames": 9}, "seconds", "not both"),
        ({"prompt": "a", "seed": -1}, "seed", "allowed 0 to 9223372036854775807"),
        ({"prompt": "a", "seed": "9" * 40}, "seed", "'999999999999999999999999999999999999..."),
        ({"prompt": "a", "fps": 0}, "fps", "allowed 1 to 60"),
        ({"prompt": "a", "user": "u" * 300}, "user", "at most 256 characters"),
        ({"prompt": "a", "num_steps": 4}, "num_steps",
         "unknown field 'num_steps'; allowed: prompt, negative_prompt, model, size"),
        ({"prompt": "a", "model": "sora-2"}, "model",
         "model 'sora-2' is not served here; allowed: 'Wan2.2-TI2V-5B', 'ti2v-5b-random'"),
        ({"prompt": "a", "model": ["x"]}, "model", "model ['x'] is not served here"),
        ({"prompt": "a", "input_reference": "/etc/passwd"}, "input_reference",
         "must be a base64 data URL"),
        ({"prompt": "a", "input_reference": "data:image/png;base64,@@@"}, "input_reference",
         "base64 is malformed"),
        ({"prompt": "a", "input_reference": "data:image/png;base64,aGVsbG8="}, "input_reference",
         "not a readable image"),
        ({"prompt": "a", "input_reference": {"file_id": "file-1"}}, "input_reference",
         "file_id references need a Files API"),
        ({"prompt": "a", "input_reference": {"image_url": "x", "detail": 1}}, "input_reference",
         "an object must be {'image_url'"),
        ({"prompt": "a", "image_reference": "{not json"}, "image_reference",
         "is not a JSON object"),
        ({"prompt": "a", "input_reference": data_url(png(kind="GIF"), "image/gif")},
         "input_reference", "not a readable image; allowed formats: PNG, JPEG, WEBP"),
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


def test_model_names_match_case_insensitively() -> None:
    assert check({"prompt": "a", "model": "wan2.2-ti2v-5b"}).prompt == "a"
    assert check({"prompt": "a", "model": "TI2V-5B-RANDOM"}).prompt == "a"


def test_images_in_every_form_decode_to_the_same_first_frame() -> None:
    data = png(12, 8)
    forms = [
        data_url(data),
        {"image_url": data_url(data)},
        Upload("first.png", "application/octet-stream", data),  # the bytes decide, not the label
    ]
    for form in forms:
        image = check({"prompt": "a", "input_reference": form}).image
        assert image is not None
        assert (image.width, image.height, image.suffix, image.data) == (12, 8, ".png", data)
    jpeg = check({"prompt": "a", "image_reference": {"image_url": data_url(png(kind="JPEG"))}})
    assert jpeg.image is not None and jpeg.image.suffix == ".jpg"


def test_images_too_large_or_refused_by_the_server() -> None:
    small = Limits(32, 4, 1280, 121, 100, max_image_side=10)
    assert (
        "16x16; at most 10 a side"
        in refused({"prompt": "a", "input_reference": data_url(png(16, 16))}, small).message
    )
    no_images = Limits(32, 4, 1280, 121, 100, image_refusal="input_reference: needs --offload none")
    error = refused({"prompt": "a", "input_reference": data_url(png())}, no_images)
    assert error.message == "input_reference: needs --offload none"
    assert error.code == "unsupported_parameter"


def test_a_second_expert_takes_its_own_guidance() -> None:
    two = Limits(16, 4, 1280, 81, 100, two_experts=True)
    defaults = presets.SPECS["t2v-a14b-random"].defaults
    request = validate({"prompt": "a", "guidance_scale_2": "2.5"}, two, defaults, NAMES)
    assert (request.guidance_scale, request.guidance_scale_2) == (4.0, 2.5)
    assert validate({"prompt": "a"}, two, defaults, NAMES).guidance_scale_2 == 3.0
