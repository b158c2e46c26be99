"""The HTTP API end to end on the tiny model: a job from POST to mp4, concurrent requests,
a full queue, delete in every state, images, the cursor list, content variants, models,
probes, and the answers for not-ready content and bad requests (all JSON, OpenAI's shape)."""

from __future__ import annotations

import io
import json
import re
import threading

from PIL import Image

from tests.serve.conftest import FAST, MODEL, Answer, Client, Running, error_of
from wan_otel import semconv as sc
from wan_otel.pipeline.serve.persist import JOB_FILE

VIDEO_FIELDS = {
    "id", "object", "model", "status", "progress", "created_at", "completed_at", "expires_at",
    "prompt", "remixed_from_video_id", "size", "seconds", "error",
}  # fmt: skip
"""OpenAI's ``Video``."""


def test_a_job_from_post_to_mp4(idle: Running) -> None:
    client = idle.client()
    answer = client.submit({**FAST, "num_inference_steps": 3})
    assert answer.status == 202
    record = answer.body
    job_id = record["id"]
    assert answer.headers[sc.HEADER_RUN_ID] == job_id
    assert re.fullmatch(r"[0-9a-f]{32}", answer.headers[sc.HEADER_TRACE_ID])
    assert answer.headers[sc.HEADER_TRACE_ID] == record["trace_id"]
    assert answer.headers["Location"] == f"/v1/videos/{job_id}"
    assert int(answer.headers["openai-poll-after-ms"]) >= 100
    assert set(record) >= VIDEO_FIELDS
    assert (record["object"], record["status"], record["model"]) == ("video", "queued", MODEL)
    assert (record["size"], record["num_frames"], record["seed"]) == ("32x32", 1, 1)
    assert record["prompt"] is None and record["remixed_from_video_id"] is None
    assert record["expires_at"] is None  # set when it ends

    done = client.wait(job_id)
    assert (done["status"], done["progress"], done["steps_done"]) == ("completed", 100, 3)
    assert done["error"] is None and done["bytes"] > 0
    assert done["expires_at"] == done["completed_at"] + 3600  # the fixture's retention
    timings = done["timings"]
    assert 0 <= timings["queue_wait_s"] < timings["total_s"]
    assert 0 < timings["generation_s"] < timings["total_s"]
    final = client.request("GET", f"/v1/videos/{job_id}")
    assert "openai-poll-after-ms" not in final.headers

    video = client.request("GET", f"/v1/videos/{job_id}/content")
    assert video.status == 200 and video.headers["content-type"] == "video/mp4"
    assert video.headers[sc.HEADER_RUN_ID] == job_id
    assert len(video.raw) == done["bytes"] and video.raw[4:8] == b"ftyp"
    assert json.loads((idle.store / job_id / JOB_FILE).read_text()) == done

    thumbnail = client.request("GET", f"/v1/videos/{job_id}/content?variant=thumbnail")
    assert thumbnail.status == 200 and thumbnail.headers["content-type"] == "image/webp"
    with Image.open(io.BytesIO(thumbnail.raw)) as image:
        assert (image.format, image.size) == ("WEBP", (32, 32))
    sprites = client.request("GET", f"/v1/videos/{job_id}/content?variant=spritesheet")
    assert sprites.status == 400
    assert error_of(sprites)["message"] == (
        "variant 'spritesheet' is not available here; allowed: video, thumbnail"
    )


def test_concurrent_requests_queue_in_order_and_all_finish(idle: Running) -> None:
    switches = idle.switches
    switches.hold()
    first = idle.client().submit().body["id"]
    assert switches.held.wait(10)
    answers: list[Answer] = []
    lock = threading.Lock()

    def submit() -> None:
        answer = Client(idle.server.port).submit()
        with lock:
            answers.append(answer)

    threads = [threading.Thread(target=submit) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [a.status for a in answers] == [202, 202, 202]
    assert sorted(a.body["queue_position"] for a in answers) == [1, 2, 3]
    switches.release()
    client = idle.client()
    by_position = sorted(answers, key=lambda a: a.body["queue_position"])
    done = [client.wait(job_id) for job_id in [first, *(a.body["id"] for a in by_position)]]
    assert [d["status"] for d in done] == ["completed"] * 4
    starts = [d["created_at"] + d["timings"]["queue_wait_s"] for d in done[1:]]
    assert starts == sorted(starts)


def test_a_full_queue_answers_429_with_retry_after(idle: Running) -> None:
    switches, client = idle.switches, idle.client()
    switches.hold()
    ids = [client.submit().body["id"]]
    assert switches.held.wait(10)
    ids += [client.submit().body["id"] for _ in range(3)]  # --max-queue 3
    refused = client.submit()
    assert refused.status == 429
    assert int(refused.headers["Retry-After"]) >= 1
    error = error_of(refused)
    assert (error["code"], error["type"]) == ("queue_full", "invalid_request_error")
    assert error["message"].startswith("the queue is full (3 jobs waiting); retry in about")
    assert idle.server.queue.depth() == 3
    switches.release()
    assert [client.wait(i)["status"] for i in ids] == ["completed"] * 4
    assert client.submit().status == 202


def test_delete_a_queued_a_running_and_a_finished_job(idle: Running) -> None:
    switches, client = idle.switches, idle.client()
    done = client.submit().body["id"]
    assert client.wait(done)["status"] == "completed"
    switches.hold()
    running = client.submit().body["id"]
    assert switches.held.wait(10)
    queued = client.submit().body["id"]

    view = client.request("GET", f"/v1/videos/{running}").body
    assert (view["status"], view["stage"], view["steps_done"]) == ("in_progress", "denoising", 0)
    early = client.request("GET", f"/v1/videos/{running}/content")
    assert early.status == 409
    assert error_of(early)["message"] == (
        f"video {running!r} is in_progress (denoising, step 0 of 2); its content exists once "
        "status is completed"
    )
    for job_id in (queued, running, done):
        deleted = client.request("DELETE", f"/v1/videos/{job_id}")
        assert deleted.status == 200
        assert deleted.body == {"id": job_id, "object": "video.deleted", "deleted": True}
        assert client.request("GET", f"/v1/videos/{job_id}").status == 404
        assert client.request("DELETE", f"/v1/videos/{job_id}").status == 404
    assert not (idle.store / queued).exists() and not (idle.store / done).exists()
    switches.release()
    assert idle.server.queue.wait_idle(30)
    # The running one stopped after its current step and was removed with its files.
    assert not (idle.store / running).exists()
    roots = [
        s
        for s in idle.finished_spans()
        if s.name == sc.SPAN_GENERATE and s.attributes[sc.RUN_ID] == running
    ]
    assert len(roots) == 1 and roots[0].attributes[sc.ERROR_TYPE] == "GenerationStopped"
    listed = {v["id"] for v in client.request("GET", "/v1/videos?limit=100").body["data"]}
    assert not listed & {queued, running, done}


def png(width: int = 32, height: int = 32) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (0, 120, 255)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_images_as_a_data_url_an_image_url_object_and_an_upload(idle: Running) -> None:
    import base64

    data_url = "data:image/png;base64," + base64.b64encode(png()).decode()
    client = idle.client()
    ids = [
        client.submit({**FAST, "input_reference": data_url}).body["id"],
        client.submit({**FAST, "input_reference": {"image_url": data_url}}).body["id"],
        client.request(
            "POST", "/v1/videos",
            data={k: str(v) for k, v in FAST.items()},
            files={"input_reference": ("first.png", png(), "image/png")},
        ).body["id"],
        client.submit().body["id"],
    ]  # fmt: skip
    records = [client.wait(job_id) for job_id in ids]
    assert [r["status"] for r in records] == ["completed"] * 4
    assert [r["has_input_reference"] for r in records] == [True, True, True, False]
    for job_id in ids[:3]:
        assert (idle.store / job_id / "input.png").read_bytes() == png()
    roots = {
        s.attributes[sc.RUN_ID]: s for s in idle.finished_spans() if s.name == sc.SPAN_GENERATE
    }
    assert [roots[i].attributes[sc.REQUEST_HAS_IMAGE] for i in ids] == [True, True, True, False]


def test_the_list_is_a_cursor_over_ids_in_both_orders(idle: Running) -> None:
    client = idle.client()
    for job_id in [client.submit().body["id"] for _ in range(3)]:
        client.wait(job_id)
    everything = sorted(p.parent.name for p in idle.store.glob(f"*/{JOB_FILE}"))
    newest = everything[::-1]
    page = client.request("GET", "/v1/videos?limit=2").body
    assert (page["object"], page["has_more"]) == ("list", True)
    assert [d["id"] for d in page["data"]] == newest[:2]
    assert (page["first_id"], page["last_id"]) == (newest[0], newest[1])
    rest = client.request("GET", f"/v1/videos?limit=100&after={page['last_id']}").body
    assert [d["id"] for d in rest["data"]] == newest[2:] and rest["has_more"] is False
    oldest = client.request("GET", "/v1/videos?limit=2&order=asc").body
    assert [d["id"] for d in oldest["data"]] == everything[:2] and oldest["has_more"] is True
    after = client.request("GET", f"/v1/videos?order=asc&after={everything[-2]}").body
    assert [d["id"] for d in after["data"]] == everything[-1:] and after["has_more"] is False
    empty = client.request("GET", f"/v1/videos?after={everything[0]}").body
    assert empty == {
        "object": "list", "data": [], "first_id": None, "last_id": None, "has_more": False,
    }  # fmt: skip


def test_models_and_probes(idle: Running) -> None:
    client = idle.client()
    models = client.request("GET", "/v1/models").body
    assert [m["id"] for m in models["data"]] == [MODEL]
    assert models["data"][0]["object"] == "model" and models["object"] == "list"
    assert client.request("GET", f"/v1/models/{MODEL.lower()}").body["id"] == MODEL
    assert client.request("GET", "/v1/models/tiny").body["id"] == MODEL  # the preset's name
    assert error_of(client.request("GET", "/v1/models/sora-2"))["code"] == "model_not_found"
    assert client.request("GET", "/healthz").body == {"status": "ok"}
    assert client.request("GET", "/readyz").body == {"status": "ready"}


def test_bad_requests_say_what_is_allowed(idle: Running) -> None:
    client = idle.client()
    cases = [
        (client.request("POST", "/v1/videos", content=b'{"prompt": "a",',
                        headers={"Content-Type": "application/json"}), 400, "invalid_json"),
        (client.submit({**FAST, "size": "48x32"}), 400, "invalid_value"),
        (client.submit({**FAST, "num_frames": 4}), 400, "invalid_value"),
        (client.submit({**FAST, "num_inference_steps": 51}), 400, "invalid_value"),
        (client.submit({"size": "32x32"}), 400, "missing_required_parameter"),
        (client.submit({**FAST, "model": "sora-2"}), 400, "model_not_found"),
        (client.request("GET", "/v1/videos/20260101T000000Z-000000"), 404, "not_found"),
        (client.request("GET", "/v1/videos/20260101T000000Z-000000/content"), 404, "not_found"),
        (client.request("DELETE", "/v1/videos/nope"), 404, "not_found"),
        (client.request("GET", "/v1/videos/a/b/c"), 404, "not_found"),
        (client.request("GET", "/v1/videos/x?wait=600"), 400, "invalid_value"),
        (client.request("DELETE", "/v1/videos"), 405, "method_not_allowed"),
        (client.request("PUT", "/v1/videos/x"), 405, "method_not_allowed"),
        (client.request("POST", "/v1/videos", content=b"<xml/>",
                        headers={"Content-Type": "text/xml"}), 415, "unsupported_media_type"),
        (client.request("GET", "/v1/videos?order=sideways"), 400, "invalid_value"),
        (client.request("POST", "/v1/videos/x/remix", json={"prompt": "p"}), 400,
         "unsupported_operation"),
    ]  # fmt: skip
    for answer, status, code in cases:
        assert (answer.status, error_of(answer)["code"]) == (status, code), answer.body
    messages = [error_of(a)["message"] for a, _, _ in cases]
    assert messages[0].startswith("body is not valid JSON: Expecting property name")
    assert messages[1] == (
        "size: '48x32': width and height must be multiples of 32 from 32 to 256 (e.g. '32x32')"
    )
    assert messages[2] == "num_frames: 4 must be 4k+1 from 1 to 33 (1, 5, 9, ...)"
    assert messages[3] == "num_inference_steps: 51 is out of range; allowed 1 to 50"
    assert messages[5] == f"model 'sora-2' is not served here; allowed: '{MODEL}', 'tiny'"
    assert messages[11] == "DELETE is not allowed on /v1/videos; allowed: POST, GET, HEAD"
    assert cases[11][0].headers["Allow"] == "POST, GET, HEAD"
    assert messages[15].startswith("remix is not supported here")
    assert client.submit().status == 202  # the connection survived the errors


def test_many_first_requests_for_a_thumbnail_at_once(idle: Running) -> None:
    """The thumbnail is made on its first request: requests racing to make it each get it."""
    client = idle.client()
    job_id = client.submit().body["id"]
    assert client.wait(job_id)["status"] == "completed"
    answers: list[Answer] = []

    def fetch() -> None:
        answers.append(
            Client(idle.server.port).request(
                "GET", f"/v1/videos/{job_id}/content?variant=thumbnail"
            )
        )

    threads = [threading.Thread(target=fetch) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert [a.status for a in answers] == [200] * 8
    assert len({a.raw for a in answers}) == 1
    assert not [p.name for p in (idle.store / job_id).iterdir() if p.name.endswith(".tmp")]


def test_a_field_given_twice_or_a_hostile_name_is_a_short_400(idle: Running) -> None:
    client = idle.client()
    twice = b'{"prompt": "a cat", "seed": 1, "seed": 2}'
    answer = client.request(
        "POST", "/v1/videos", content=twice, headers={"Content-Type": "application/json"}
    )
    assert answer.status == 400
    assert (error_of(answer)["code"], error_of(answer)["param"]) == ("duplicate_parameter", "seed")
    long_name = "x" * 1_000_000
    answer = client.submit({"prompt": "a cat", long_name: 1})
    assert answer.status == 400 and error_of(answer)["code"] == "unknown_parameter"
    assert len(answer.raw) < 2_000
    answer = client.submit({"prompt": "a cat", "model": "m" * 1_000_000})
    assert answer.status == 400 and len(answer.raw) < 2_000
