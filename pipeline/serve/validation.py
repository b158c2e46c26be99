"""Request validation: a ``POST /v1/videos`` body becomes a ``VideoRequest`` the loaded model
can take, or an ``ApiError`` (400) that names the field and says what is allowed.

The limits come from the model itself (``limits_for``): width and height are multiples of the
VAE's spatial factor times the transformer's patch size (TI2V-5B: 16 x 2 = 32), frame counts
are ``4k + 1`` (the VAE's temporal factor), and the largest sizes, frame counts and step counts
keep one request from holding the GPU for hours or running it out of memory.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import math
import re
import secrets
from dataclasses import dataclass
from typing import Any

from wan_otel.pipeline.runner import presets
from wan_otel.pipeline.serve.errors import ApiError

FIELDS: dict[str, str] = {
    "prompt": "text to generate from (required)",
    "negative_prompt": "text to steer away from",
    "size": "'WIDTHxHEIGHT' in pixels",
    "seconds": "video length in seconds (instead of num_frames)",
    "num_frames": "frame count, 4k+1",
    "num_inference_steps": "denoising steps",
    "guidance_scale": "classifier-free guidance scale",
    "fps": "frames per second of the mp4",
    "seed": "random seed (default: one the server picks and reports)",
    "input_reference": "first frame: a data URL, data:image/png;base64,...",
    "model": "the served model's name (optional)",
}
IMAGE_TYPES = {"image/png": ".png", "image/jpeg": ".jpg", "image/webp": ".webp"}
MAX_SEED = 2**63 - 1
_SIZE = re.compile(r"^\s*(\d{1,5})\s*[xX]\s*(\d{1,5})\s*$")
_DATA_URL = re.compile(r"^data:(image/[a-z]+);base64,(.*)$", re.DOTALL)


@dataclass(frozen=True)
class Limits:
    """What the loaded model takes."""

    spatial_multiple: int
    temporal_multiple: int
    max_side: int
    max_frames: int
    max_steps: int
    min_guidance: float = 1.0
    max_guidance: float = 20.0
    max_fps: int = 60
    max_prompt_chars: int = 10_000
    max_image_bytes: int = 10 * 1024 * 1024
    max_image_side: int = 4096
    image_refusal: str | None = None
    """Why ``input_reference`` is refused on this server; None: it is accepted."""


@dataclass(frozen=True)
class InputImage:
    """A first frame as uploaded (validated by decoding it)."""

    data: bytes
    suffix: str
    width: int
    height: int


@dataclass(frozen=True)
class VideoRequest:
    """One validated generation request, defaults resolved."""

    prompt: str
    negative_prompt: str | None
    width: int
    height: int
    num_frames: int
    num_inference_steps: int
    guidance_scale: float
    fps: int
    seed: int
    image: InputImage | None = None

    @property
    def size(self) -> str:
        return f"{self.width}x{self.height}"


def limits_for(pipe: Any, source: str, *, image_refusal: str | None = None) -> Limits:
    """Limits of a built Wan pipeline: its VAE and patch factors, and caps by model size."""
    patch = getattr(pipe.transformer.config, "patch_size", (1, 2, 2))
    spatial = int(pipe.vae_scale_factor_spatial) * int(patch[1])
    temporal = int(pipe.vae_scale_factor_temporal)
    if source == presets.TINY:  # toy weights on a CPU: keep requests toy-sized too
        return Limits(spatial, temporal, 256, 33, 50, image_refusal=image_refusal)
    return Limits(spatial, temporal, 1280, 121, 100, image_refusal=image_refusal)


def parse_json(raw: bytes) -> dict[str, Any]:
    """The body as a JSON object, or 400 saying where it breaks."""
    try:
        body = json.loads(raw)
    except UnicodeDecodeError as exc:
        raise ApiError(400, f"body is not UTF-8 JSON: {exc.reason}", code="invalid_json") from None
    except json.JSONDecodeError as exc:
        raise ApiError(
            400,
            f"body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
            code="invalid_json",
        ) from None
    if not isinstance(body, dict):
        raise ApiError(400, "body must be a JSON object", code="invalid_json")
    return body


def validate(
    body: dict[str, Any], limits: Limits, defaults: presets.Defaults, model_name: str
) -> VideoRequest:
    """Check every field of a request body against the model's limits."""
    unknown = sorted(set(body) - set(FIELDS))
    if unknown:
        raise ApiError(
            400,
            f"unknown field {unknown[0]!r}; allowed: {', '.join(FIELDS)}",
            code="unknown_parameter",
            param=unknown[0],
        )
    model = body.get("model")
    if model is not None and str(model).lower() != model_name.lower():
        raise ApiError(
            400,
            f"model {model!r} is not served here; this server serves {model_name!r}",
            code="model_not_found",
            param="model",
        )
    prompt = _text(body, "prompt", limits, required=True)
    assert prompt is not None
    width, height = _size(body.get("size"), limits, defaults)
    fps = _integer(body, "fps", 1, limits.max_fps, defaults.fps)
    frames = _frames(body, limits, defaults, fps)
    steps = _integer(body, "num_inference_steps", 1, limits.max_steps, defaults.steps)
    guidance = _number(body, "guidance_scale", limits.min_guidance, limits.max_guidance, None)
    seed = _optional_integer(body, "seed", 0, MAX_SEED)
    return VideoRequest(
        prompt=prompt,
        negative_prompt=_text(body, "negative_prompt", limits, required=False),
        width=width,
        height=height,
        num_frames=frames,
        num_inference_steps=steps,
        guidance_scale=defaults.guidance if guidance is None else guidance,
        fps=fps,
        seed=secrets.randbits(63) if seed is None else seed,
        image=_image(body.get("input_reference"), limits),
    )


def _bad(param: str, message: str) -> ApiError:
    return ApiError(400, f"{param}: {message}", code="invalid_value", param=param)


def _text(body: dict[str, Any], name: str, limits: Limits, *, required: bool) -> str | None:
    value = body.get(name)
    if value is None:
        if required:
            raise ApiError(
                400, f"{name} is required", code="missing_required_parameter", param=name
            )
        return None
    if not isinstance(value, str) or (required and not value.strip()):
        raise _bad(name, "must be a non-empty string")
    if len(value) > limits.max_prompt_chars:
        raise _bad(name, f"{len(value)} characters; at most {limits.max_prompt_chars}")
    return value


def _size(value: Any, limits: Limits, defaults: presets.Defaults) -> tuple[int, int]:
    if value is None:
        return defaults.width, defaults.height
    m, lo, hi = limits.spatial_multiple, limits.spatial_multiple, limits.max_side
    allowed = (
        f"width and height must be multiples of {m} from {lo} to {hi} "
        f"(e.g. '{defaults.width}x{defaults.height}')"
    )
    match = _SIZE.match(value) if isinstance(value, str) else None
    if match is None:
        raise _bad("size", f"{value!r} is not 'WIDTHxHEIGHT'; {allowed}")
    width, height = int(match[1]), int(match[2])
    for side in (width, height):
        if side % m or not lo <= side <= hi:
            raise _bad("size", f"{value!r}: {allowed}")
    return width, height


def _frames(body: dict[str, Any], limits: Limits, defaults: presets.Defaults, fps: int) -> int:
    k = limits.temporal_multiple
    allowed = f"must be {k}k+1 from 1 to {limits.max_frames} (1, {k + 1}, {2 * k + 1}, ...)"
    if body.get("seconds") is not None:
        if body.get("num_frames") is not None:
            raise _bad("seconds", "give seconds or num_frames, not both")
        seconds = _number(body, "seconds", 0.0, float(limits.max_frames), None, text_ok=True)
        assert seconds is not None
        frames = k * round(seconds * fps / k) + 1
        if frames > limits.max_frames:
            longest = (limits.max_frames - 1) / fps
            raise _bad(
                "seconds",
                f"{seconds:g} s at {fps} fps is {frames} frames; at most "
                f"{limits.max_frames} ({longest:.2f} s)",
            )
        return frames
    frames = _integer(body, "num_frames", 1, limits.max_frames, defaults.frames)
    if (frames - 1) % k:
        raise _bad("num_frames", f"{frames} {allowed}")
    return frames


def _integer(body: dict[str, Any], name: str, lo: int, hi: int, default: int) -> int:
    value = _optional_integer(body, name, lo, hi)
    return default if value is None else value


def _optional_integer(body: dict[str, Any], name: str, lo: int, hi: int) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad(name, f"{value!r} is not an integer; allowed {lo} to {hi}")
    if not lo <= value <= hi:
        raise _bad(name, f"{value} is out of range; allowed {lo} to {hi}")
    return value


def _number(
    body: dict[str, Any],
    name: str,
    lo: float,
    hi: float,
    default: float | None,
    *,
    text_ok: bool = False,
) -> float | None:
    value = body.get(name)
    if value is None:
        return default
    if text_ok and isinstance(value, str):  # OpenAI's API sends seconds as a string
        try:
            value = float(value)
        except ValueError:
            raise _bad(name, f"{value!r} is not a number") from None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _bad(name, f"{value!r} is not a number; allowed {lo:g} to {hi:g}")
    if not lo <= value <= hi or (text_ok and value <= 0):
        raise _bad(name, f"{value:g} is out of range; allowed {lo:g} to {hi:g}")
    return float(value)


def _image(value: Any, limits: Limits) -> InputImage | None:
    if value is None:
        return None
    if limits.image_refusal is not None:
        raise ApiError(
            400, limits.image_refusal, code="unsupported_parameter", param="input_reference"
        )
    types = ", ".join(IMAGE_TYPES)
    match = _DATA_URL.match(value) if isinstance(value, str) else None
    if match is None or match[1] not in IMAGE_TYPES:
        raise _bad("input_reference", f"must be a base64 data URL of {types}")
    try:
        data = base64.b64decode(match[2], validate=True)
    except (binascii.Error, ValueError):
        raise _bad("input_reference", "the data URL's base64 is malformed") from None
    if len(data) > limits.max_image_bytes:
        raise _bad("input_reference", f"{len(data)} bytes; at most {limits.max_image_bytes}")
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            if max(width, height) > limits.max_image_side:
                raise _bad("input_reference", f"{width}x{height}; at most {limits.max_image_side}")
            image.load()  # decode fully: a truncated file fails here, not in the worker
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as exc:
        raise _bad("input_reference", f"not a readable image ({exc})") from None
    return InputImage(data, IMAGE_TYPES[match[1]], width, height)
