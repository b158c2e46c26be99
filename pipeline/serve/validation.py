"""Request validation: the fields of a ``POST /v1/videos`` (JSON or form, OpenAI's and
vLLM-Omni's names) become a ``VideoRequest`` the loaded model can take, or an ``ApiError``
(400) that names the field and says what is allowed.

The limits come from the model itself (``limits_for``): width and height are multiples of the
VAE's spatial factor times the transformer's patch size (TI2V-5B: 16 x 2 = 32), frame counts
are ``4k + 1`` (the VAE's temporal factor), and the largest sizes, frame counts and step counts
keep one request from holding the GPU for hours or running it out of memory. A form sends
every value as text, so numbers are taken as JSON numbers or as decimal strings alike.
"""

from __future__ import annotations

import math
import re
import secrets
from dataclasses import dataclass
from typing import Any

from wan_otel.pipeline.runner import presets
from wan_otel.pipeline.serve.errors import ApiError, short_param
from wan_otel.pipeline.serve.images import InputImage, decode_image, image_from_reference

FIELDS: dict[str, str] = {
    "prompt": "text to generate from (required)",
    "negative_prompt": "text to steer away from",
    "model": "the served model's name (optional)",
    "size": "'WIDTHxHEIGHT' in pixels (or width and height)",
    "width": "width in pixels",
    "height": "height in pixels",
    "seconds": "video length in seconds (instead of num_frames)",
    "num_frames": "frame count, 4k+1",
    "fps": "frames per second of the mp4",
    "num_inference_steps": "denoising steps",
    "guidance_scale": "classifier-free guidance scale",
    "guidance_scale_2": "the second expert's guidance scale (two-expert models)",
    "seed": "random seed (default: one the server picks and reports)",
    "input_reference": "first frame: an uploaded image, a data URL or {'image_url': data URL}",
    "image_reference": "first frame as {'image_url': data URL} (vLLM-Omni's name)",
    "user": "an end-user id (accepted, not stored)",
}
MAX_SEED = 2**63 - 1
MAX_USER_CHARS = 256
_SIZE = re.compile(r"\s*(\d{1,5})\s*[xX]\s*(\d{1,5})\s*")
_INT_TEXT = re.compile(r"\s*[+-]?\d{1,20}\s*")
_FLOAT_TEXT = re.compile(r"\s*[+-]?(\d{1,20}(\.\d{0,20})?|\.\d{1,20})([eE][+-]?\d{1,3})?\s*")


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
    two_experts: bool = False
    """``guidance_scale_2`` is taken (a model with a second expert)."""


@dataclass(frozen=True)
class ModelNames:
    """The names a request's ``model`` may give: the served model's, then its aliases."""

    served: str
    aliases: tuple[str, ...] = ()

    @property
    def allowed(self) -> tuple[str, ...]:
        return (self.served, *(a for a in self.aliases if a.lower() != self.served.lower()))

    def accepts(self, name: str) -> bool:
        return name.lower() in {a.lower() for a in self.allowed}


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
    guidance_scale_2: float | None = None

    @property
    def size(self) -> str:
        return f"{self.width}x{self.height}"


def limits_for(
    pipe: Any, source: str, *, image_refusal: str | None = None, two_experts: bool = False
) -> Limits:
    """Limits of a built Wan pipeline: its VAE and patch factors, and caps by model size."""
    patch = getattr(pipe.transformer.config, "patch_size", (1, 2, 2))
    spatial = int(pipe.vae_scale_factor_spatial) * int(patch[1])
    temporal = int(pipe.vae_scale_factor_temporal)
    if source in (presets.TINY, presets.TINY_A14B):  # toy weights: keep requests toy-sized too
        return Limits(spatial, temporal, 256, 33, 50, image_refusal=image_refusal,
                      two_experts=two_experts)  # fmt: skip
    return Limits(
        spatial, temporal, 1280, 121, 100, image_refusal=image_refusal, two_experts=two_experts
    )


def validate(
    body: dict[str, Any], limits: Limits, defaults: presets.Defaults, names: ModelNames
) -> VideoRequest:
    """Check every field of a request against the model's limits."""
    unknown = sorted(set(body) - set(FIELDS))
    if unknown:
        raise ApiError(
            400,
            f"unknown field {_shown(unknown[0])}; allowed: {', '.join(FIELDS)}",
            code="unknown_parameter",
            param=short_param(unknown[0]),
        )
    model = body.get("model")
    if model is not None and (not isinstance(model, str) or not names.accepts(model)):
        allowed = ", ".join(repr(n) for n in names.allowed)
        raise ApiError(
            400,
            f"model {_shown(model)} is not served here; allowed: {allowed}",
            code="model_not_found",
            param="model",
        )
    user = body.get("user")
    if user is not None and (not isinstance(user, str) or len(user) > MAX_USER_CHARS):
        raise _bad("user", f"must be a string of at most {MAX_USER_CHARS} characters")
    prompt = _text(body, "prompt", limits, required=True)
    assert prompt is not None
    width, height = _size(body, limits, defaults)
    fps = _integer(body, "fps", 1, limits.max_fps, defaults.fps)
    frames = _frames(body, limits, defaults, fps)
    steps = _integer(body, "num_inference_steps", 1, limits.max_steps, defaults.steps)
    guidance = _number(body, "guidance_scale", limits.min_guidance, limits.max_guidance)
    guidance_2 = _number(body, "guidance_scale_2", limits.min_guidance, limits.max_guidance)
    if guidance_2 is not None and not limits.two_experts:
        raise ApiError(
            400,
            "guidance_scale_2: this server's model has one expert; use guidance_scale",
            code="unsupported_parameter",
            param="guidance_scale_2",
        )
    seed = _optional_integer(body, "seed", 0, MAX_SEED)
    return VideoRequest(
        prompt=prompt,
        negative_prompt=_text(body, "negative_prompt", limits, required=False),
        width=width,
        height=height,
        num_frames=frames,
        num_inference_steps=steps,
        guidance_scale=defaults.guidance if guidance is None else guidance,
        guidance_scale_2=defaults.guidance_2 if guidance_2 is None else guidance_2,
        fps=fps,
        seed=secrets.randbits(63) if seed is None else seed,
        image=_image(body, limits),
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
    try:
        value.encode("utf-8")  # a lone surrogate (JSON "\ud800") has no UTF-8 form
    except UnicodeEncodeError as exc:
        raise _bad(name, f"not valid Unicode text (a lone surrogate at {exc.start})") from None
    return value


def _size(body: dict[str, Any], limits: Limits, defaults: presets.Defaults) -> tuple[int, int]:
    m, lo, hi = limits.spatial_multiple, limits.spatial_multiple, limits.max_side
    allowed = (
        f"width and height must be multiples of {m} from {lo} to {hi} "
        f"(e.g. '{defaults.width}x{defaults.height}')"
    )
    value = body.get("size")
    width = _optional_integer(body, "width", 1, 99_999)
    height = _optional_integer(body, "height", 1, 99_999)
    if value is not None:
        match = _SIZE.fullmatch(value) if isinstance(value, str) else None
        if match is None:
            raise _bad("size", f"{_shown(value)} is not 'WIDTHxHEIGHT'; {allowed}")
        given = int(match[1]), int(match[2])
        if (width is not None and width != given[0]) or (height is not None and height != given[1]):
            raise _bad("size", f"{_shown(value)} disagrees with width {width} and height {height}")
        param = "size"
    elif width is None and height is None:
        return defaults.width, defaults.height
    else:
        if width is None or height is None:
            missing = "width" if width is None else "height"
            raise _bad(missing, "give width and height together (or size)")
        given, param, value = (width, height), "width", f"{width}x{height}"
    for side in given:
        if side % m or not lo <= side <= hi:
            raise _bad(param, f"{_shown(value)}: {allowed}")
    return given


def _frames(body: dict[str, Any], limits: Limits, defaults: presets.Defaults, fps: int) -> int:
    k = limits.temporal_multiple
    allowed = f"must be {k}k+1 from 1 to {limits.max_frames} (1, {k + 1}, {2 * k + 1}, ...)"
    if body.get("seconds") is not None:
        if body.get("num_frames") is not None:
            raise _bad("seconds", "give seconds or num_frames, not both")
        seconds = _number(body, "seconds", 0.0, float(limits.max_frames))
        assert seconds is not None
        if seconds <= 0:
            raise _bad("seconds", f"{seconds:g} must be more than 0")
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
    text = isinstance(value, str) and _INT_TEXT.fullmatch(value) is not None
    whole = isinstance(value, float) and value.is_integer() and abs(value) < 2**63
    if text or whole:
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad(name, f"{_shown(value)} is not an integer; allowed {lo} to {hi}")
    if not lo <= value <= hi:
        raise _bad(name, f"{value} is out of range; allowed {lo} to {hi}")
    return value


def _number(body: dict[str, Any], name: str, lo: float, hi: float) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, str) and _FLOAT_TEXT.fullmatch(value):
        value = float(value)  # OpenAI's API sends seconds as a string; a form sends them all
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _bad(name, f"{_shown(value)} is not a number; allowed {lo:g} to {hi:g}")
    if not lo <= value <= hi:
        raise _bad(name, f"{value:g} is out of range; allowed {lo:g} to {hi:g}")
    return float(value)


def _shown(value: Any) -> str:
    """A value in a message: its repr, cut short (a hostile one can be megabytes)."""
    text = repr(value) if not isinstance(value, bytes | bytearray) else "a file"
    return text if len(text) <= 40 else text[:37] + "..."


def _image(body: dict[str, Any], limits: Limits) -> InputImage | None:
    given = [name for name in ("input_reference", "image_reference") if body.get(name) is not None]
    if not given:
        return None
    if len(given) > 1:
        raise _bad("image_reference", "give input_reference or image_reference, not both")
    name = given[0]
    if limits.image_refusal is not None:
        raise ApiError(400, limits.image_refusal, code="unsupported_parameter", param=name)
    data = image_from_reference(name, body[name])
    return decode_image(name, data, limits.max_image_bytes, limits.max_image_side)
