"""The official ``openai`` SDK (pinned in the dev extra) drives the server unmodified: create
(multipart, as the SDK always sends it, with our own fields as extra body), create_and_poll,
retrieve, list with cursor pagination, download_content, delete, remix, models."""

from __future__ import annotations

import io
import json
import typing
import warnings
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from openai.types import Video, VideoDeleteResponse
from PIL import Image

from tests.serve.conftest import MODEL, Running

EXTRA = {"num_inference_steps": 2, "num_frames": 1, "seed": 7, "guidance_scale": 4.5}


@pytest.fixture(autouse=True)
def _no_sora_warning() -> Iterator[None]:
    with warnings.catch_warnings():  # the SDK marks the video API deprecated (Sora's end)
        warnings.simplefilter("ignore", DeprecationWarning)
        yield


def check_video_fields(sdk: openai.OpenAI, video_id: str) -> None:
    """Every field of the SDK's ``Video`` is sent, with its declared type."""
    sent = json.loads(sdk.videos.with_raw_response.retrieve(video_id).text)
    for name, declared in Video.model_fields.items():
        assert name in sent, name
        assert _fits(sent[name], declared.annotation), (name, sent[name], declared.annotation)


def _fits(value: Any, hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if origin is typing.Union:
        return any(_fits(value, arm) for arm in typing.get_args(hint))
    if origin is typing.Literal:
        return isinstance(value, str)  # Sora's sizes and seconds; ours are other strings
    if hint is type(None):
        return value is None
    if isinstance(hint, type) and issubclass(hint, openai.BaseModel):
        return isinstance(value, dict)
    return isinstance(hint, type) and isinstance(value, hint) and not isinstance(value, bool)


def test_create_and_poll_retrieve_download_delete(idle: Running) -> None:
    sdk = idle.sdk()
    video = sdk.videos.create_and_poll(
        prompt="a fox", size="32x32", extra_body=EXTRA, poll_interval_ms=50
    )
    assert (video.status, video.progress, video.model, video.size) == (
        "completed", 100, MODEL, "32x32",
    )  # fmt: skip
    check_video_fields(sdk, video.id)
    assert video.model_extra is not None
    assert (video.model_extra["seed"], video.model_extra["guidance_scale"]) == (7, 4.5)
    assert sdk.videos.retrieve(video.id) == video

    mp4 = sdk.videos.download_content(video.id).content
    assert mp4[4:8] == b"ftyp" and len(mp4) == video.model_extra["bytes"]
    thumbnail = sdk.videos.download_content(video.id, variant="thumbnail")
    with Image.open(io.BytesIO(thumbnail.content)) as image:
        assert image.format == "WEBP"
    with pytest.raises(openai.BadRequestError) as refused:
        sdk.videos.download_content(video.id, variant="spritesheet")
    assert refused.value.code == "unsupported_variant"

    deleted = sdk.videos.delete(video.id)
    assert deleted == VideoDeleteResponse(id=video.id, deleted=True, object="video.deleted")
    with pytest.raises(openai.NotFoundError):
        sdk.videos.retrieve(video.id)


def test_the_poll_helper_follows_the_servers_interval(idle: Running) -> None:
    sdk = idle.sdk()
    idle.switches.hold()  # the job stays in progress until released
    created = sdk.videos.create(prompt="a fox", size="32x32", extra_body=EXTRA)
    assert created.status == "queued"
    assert idle.switches.held.wait(30)
    raw = sdk.videos.with_raw_response.retrieve(created.id)
    assert raw.parse().status == "in_progress"
    assert 100 <= int(raw.headers["openai-poll-after-ms"]) <= 5000
    idle.switches.release()
    assert sdk.videos.poll(created.id).status == "completed"
    final = sdk.videos.with_raw_response.retrieve(created.id)
    assert "openai-poll-after-ms" not in final.headers


def test_list_pages_through_every_video_in_both_orders(idle: Running) -> None:
    sdk = idle.sdk()
    made = [sdk.videos.create(prompt=f"p{i}", size="32x32", extra_body=EXTRA).id for i in range(3)]
    for video_id in made:
        sdk.videos.poll(video_id, poll_interval_ms=50)
    stored = sorted(p.name for p in idle.store.iterdir() if (p / "job.json").is_file())
    newest = [v.id for v in sdk.videos.list(limit=2)]  # auto-paginates with after=last_id
    assert newest == stored[::-1]
    oldest = [v.id for v in sdk.videos.list(limit=2, order="asc")]
    assert oldest == stored
    first = sdk.videos.list(limit=1, order="asc")
    assert [v.id for v in first.data] == stored[:1] and first.has_more is True
    assert [v.id for v in first.get_next_page().data] == stored[1:2]


def test_an_uploaded_first_frame_and_the_model_name(idle: Running) -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), (200, 10, 10)).save(buffer, format="JPEG")
    sdk = idle.sdk()
    video = sdk.videos.create_and_poll(
        prompt="a red square", model=MODEL, input_reference=("first.jpg", buffer.getvalue()),
        extra_body=EXTRA, poll_interval_ms=50,
    )  # fmt: skip
    assert video.status == "completed" and video.model_extra is not None
    assert video.model_extra["has_input_reference"] is True
    assert (idle.store / video.id / "input.jpg").read_bytes() == buffer.getvalue()
    with pytest.raises(openai.BadRequestError) as refused:
        sdk.videos.create(prompt="x", model="sora-2")
    assert refused.value.code == "model_not_found"
    assert refused.value.message.endswith(f"allowed: '{MODEL}', 'tiny'")
    assert [m.id for m in sdk.models.list()] == [MODEL]


def test_what_is_not_supported_is_a_clear_400(idle: Running) -> None:
    sdk = idle.sdk()
    video = sdk.videos.create_and_poll(
        prompt="a fox", size="32x32", extra_body=EXTRA, poll_interval_ms=50
    )
    with pytest.raises(openai.BadRequestError) as remix:
        sdk.videos.remix(video.id, prompt="a wolf")
    assert remix.value.code == "unsupported_operation"
    assert "remix is not supported here" in remix.value.message
    with pytest.raises(openai.BadRequestError) as bad:
        sdk.videos.create(prompt="x", size="1280x720")  # Sora's size, over the tiny model's
    assert bad.value.param == "size"
