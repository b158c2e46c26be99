"""Images in and out of the API: a request's first frame (an upload, a data URL or OpenAI's
``{"image_url": ...}`` object), checked by decoding it, and a finished video's thumbnail (its
first frame, as WebP).

A first frame is never fetched from a URL or read from a server path: a request must not
make the server reach the network or its own files.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import io
import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wan_otel.pipeline.serve.errors import ApiError

FORMATS = {"PNG": ".png", "JPEG": ".jpg", "WEBP": ".webp"}
"""Decoded image formats taken as a first frame, and their file suffix in the run folder."""
THUMBNAIL_MEDIA_TYPE = "image/webp"
_DATA_URL = re.compile(r"data:(image/[A-Za-z0-9.+-]{1,40});base64,(.*)", re.DOTALL)


@dataclass(frozen=True)
class Upload:
    """A file part of a multipart body."""

    filename: str | None
    content_type: str | None
    data: bytes = b""

    def __repr__(self) -> str:  # never the bytes: messages and logs show this
        return f"<file {self.filename!r}, {len(self.data)} bytes>"


@dataclass(frozen=True)
class InputImage:
    """A first frame as uploaded (validated by decoding it)."""

    data: bytes
    suffix: str
    width: int
    height: int


def _bad(param: str, message: str) -> ApiError:
    return ApiError(400, f"{param}: {message}", code="invalid_value", param=param)


def image_from_reference(name: str, value: Any) -> bytes:
    """The image bytes of ``input_reference`` / ``image_reference``: an upload, a data URL, or
    ``{"image_url": data URL}`` (as an object, or as JSON text in a form field)."""
    if isinstance(value, Upload):
        return value.data
    if isinstance(value, str) and value.lstrip().startswith("{"):
        try:
            value = json.loads(value)
        except (ValueError, RecursionError):
            raise _bad(name, "is not a JSON object {'image_url': ...}") from None
    if isinstance(value, dict):
        if "file_id" in value:
            raise ApiError(
                400,
                f"{name}: file_id references need a Files API this server does not have; "
                "upload the image or send it as a data URL",
                code="unsupported_parameter",
                param=name,
            )
        if set(value) != {"image_url"}:
            raise _bad(name, "an object must be {'image_url': 'data:image/png;base64,...'}")
        value = value["image_url"]
    if not isinstance(value, str):
        raise _bad(name, "must be an uploaded image, a data URL or {'image_url': data URL}")
    match = _DATA_URL.fullmatch(value.strip())
    if match is None:
        if value.startswith(("http://", "https://")):
            raise ApiError(
                400,
                f"{name}: the server fetches no URLs; upload the image or send a data URL",
                code="unsupported_parameter",
                param=name,
            )
        raise _bad(name, "must be a base64 data URL (data:image/png;base64,...)")
    try:
        return base64.b64decode(match[2], validate=True)
    except (binascii.Error, ValueError):
        raise _bad(name, "the data URL's base64 is malformed") from None


def decode_image(name: str, data: bytes, max_bytes: int, max_side: int) -> InputImage:
    """Decode ``data`` fully (a truncated or hostile file fails here, not in the worker)."""
    if len(data) > max_bytes:
        raise _bad(name, f"{len(data)} bytes; at most {max_bytes}")
    from PIL import Image, UnidentifiedImageError

    allowed = ", ".join(FORMATS)
    try:
        with Image.open(io.BytesIO(data), formats=list(FORMATS)) as image:
            width, height = image.size
            if max(width, height) > max_side:
                raise _bad(name, f"{width}x{height}; at most {max_side} a side")
            image.load()
            suffix = FORMATS[str(image.format)]
    except UnidentifiedImageError:
        raise _bad(name, f"not a readable image; allowed formats: {allowed}") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise _bad(name, f"not a readable image ({type(exc).__name__})") from None
    return InputImage(data, suffix, width, height)


class NoVideoReader(Exception):
    """Neither imageio's ffmpeg nor OpenCV can read the video back."""


def write_thumbnail(video: Path, out: Path) -> None:
    """The first frame of ``video`` as WebP at ``out`` (written to a temporary file, then
    renamed, so a reader never sees half of one)."""
    frame = _first_frame(video)
    from PIL import Image

    # A name of its own per writer: two requests for a new thumbnail write at once, and each
    # rename must find its own file.
    handle, name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    try:
        with os.fdopen(handle, "wb") as file:
            Image.fromarray(frame).save(file, format="WEBP", quality=90)
        os.replace(name, out)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(name)
        raise


def _first_frame(video: Path) -> Any:
    try:
        import imageio.v2 as imageio

        with imageio.get_reader(str(video), format="ffmpeg") as reader:
            return reader.get_data(0)  # type: ignore[attr-defined]
    except (ImportError, RuntimeError, OSError, ValueError):
        pass  # no ffmpeg: diffusers wrote the mp4 with OpenCV; read it back the same way
    try:
        import cv2
    except ImportError:
        raise NoVideoReader("no video reader (imageio-ffmpeg or opencv) is installed") from None
    capture = cv2.VideoCapture(str(video))
    try:
        ok, frame = capture.read()
    finally:
        capture.release()
    if not ok:
        raise NoVideoReader(f"cannot read a frame of {video.name}")
    return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
