"""The HTTP API end to end on the tiny model: a job from POST to mp4, concurrent requests,
a full queue, cancel, the answers for not-ready content and bad requests."""

from __future__ import annotations

import base64
import io
import json
import re
import socket
import threading
from typing import Any

from PIL import Image

from tests.serve.conftest import FAST, Answer, Client, Running
from wan_otel import semconv as sc
from wan_otel.pipeline.serve.persist import JOB_FILE


def error_of(answer: Answer) -> dict[str, Any]:
    assert answer.headers["Content-Type"] == "application/json"
    return dict(answer.body["error"])


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
    assert (record["object"], record["status"], record["model"]) == (
        "video", "queued", "Wan2.2-TI2V-5B-tiny",
    )  # fmt: skip
    assert (record["size"], record["num_frames"], record["seed"]) == ("32x32", 1, 1)

    done = client.wait(job_id)
    assert (done["status"], done["progress"], done["steps_done"]) == ("completed", 100, 3)
    assert done["error"] is None and done["bytes"] > 0
    timings = done["timings"]
    assert 0 <= timings["queue_wait_s"] < timings["total_s"]
    assert 0 < timings["generation_s"] < timings["total_s"]

    video = client.request("GET", f"/v1/videos/{job_id}/content")
    assert video.status == 200 and video.headers["Content-Type"] == "video/mp4"
    assert video.headers[sc.HEADER_RUN_ID] == job_id
    assert len(video.raw) == done["bytes"] and video.raw[4:8] == b"ftyp"
    assert json.loads((idle.store / job_id / JOB_FILE).read_text()) == done


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
    done = [client.wait(job_id) for job_id in [first, *(a.body["id"] for a in answers)]]
    assert [d["status"] for d in done] == ["completed"] * 4
    by_position = sorted(done[1:], key=lambda d: d["id"] and _position(answers, d["id"]))
    starts = [d["timings"]["queue_wait_s"] + d["created_at"] for d in by_position]
    assert [d["started_at"] for d in by_position] == sorted(d["started_at"] for d in by_position)
    assert starts == sorted(starts)


def _position(answers: list[Answer], job_id: str) -> int:
    return next(a.body["queue_position"] for a in answers if a.body["id"] == job_id)


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
    assert error["code"] == "queue_full"
    assert error["message"].startswith("the queue is full (3 jobs waiting); retry in about")
    assert idle.server.queue.depth() == 3
    switches.release()
    assert [client.wait(i)["status"] for i in ids] == ["completed"] * 4
    assert client.submit().status == 202


def test_cancel_queued_and_running_jobs(idle: Running) -> None:
    switches, client = idle.switches, idle.client()
    switches.hold()
    running = client.submit().body["id"]
    assert switches.held.wait(10)
    queued = client.submit().body["id"]

    cancelled = client.request("DELETE", f"/v1/videos/{queued}")
    assert cancelled.status == 200 and cancelled.body["status"] == "cancelled"
    again = client.request("DELETE", f"/v1/videos/{queued}")
    assert again.status == 409
    assert error_of(again)["message"] == f"video {queued!r} is cancelled; nothing to cancel"
    gone = client.request("GET", f"/v1/videos/{queued}/content")
    assert gone.status == 409 and "is cancelled" in error_of(gone)["message"]

    view = client.request("GET", f"/v1/videos/{running}").body
    assert (view["status"], view["stage"], view["steps_done"]) == ("in_progress", "denoising", 0)
    early = client.request("GET", f"/v1/videos/{running}/content")
    assert early.status == 409
    assert error_of(early)["message"] == (
        f"video {running!r} is in_progress (denoising, step 0 of 2); its content exists once "
        "status is completed"
    )
    stopping = client.request("DELETE", f"/v1/videos/{running}")
    assert stopping.status == 202 and stopping.body["cancel_requested"] is True
    switches.release()
    done = client.wait(running)
    # The step under way finishes, then the run stops: one of two steps, no video.
    assert (done["status"], done["steps_done"], done["bytes"]) == ("cancelled", 1, None)
    assert not (idle.store / running / "video.mp4").exists()
    roots = [
        s
        for s in idle.finished_spans()
        if s.name == sc.SPAN_GENERATE and s.attributes[sc.RUN_ID] == running
    ]
    assert len(roots) == 1 and roots[0].attributes[sc.ERROR_TYPE] == "GenerationStopped"


def test_an_image_request_then_a_text_request(idle: Running) -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), (0, 120, 255)).save(buffer, format="PNG")
    image = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
    client = idle.client()
    with_image = client.submit({**FAST, "input_reference": image}).body["id"]
    text = client.submit().body["id"]
    assert client.wait(with_image)["status"] == "completed"
    assert client.wait(text)["status"] == "completed"
    assert (idle.store / with_image / "input.png").read_bytes() == buffer.getvalue()
    roots = {
        s.attributes[sc.RUN_ID]: s for s in idle.finished_spans() if s.name == sc.SPAN_GENERATE
    }
    assert roots[with_image].attributes[sc.REQUEST_HAS_IMAGE] is True
    assert roots[text].attributes[sc.REQUEST_HAS_IMAGE] is False


def test_list_by_id_newest_first(idle: Running) -> None:
    client = idle.client()
    for job_id in [client.submit().body["id"] for _ in range(3)]:
        client.wait(job_id)
    everything = sorted((p.parent.name for p in idle.store.glob(f"*/{JOB_FILE}")), reverse=True)
    page = client.request("GET", "/v1/videos?limit=2").body
    assert page["object"] == "list" and page["has_more"] is True
    assert [d["id"] for d in page["data"]] == everything[:2]
    after = client.request("GET", f"/v1/videos?limit=100&after={everything[0]}").body
    assert [d["id"] for d in after["data"]] == everything[1:] and after["has_more"] is False


def test_probes(idle: Running) -> None:
    client = idle.client()
    assert (client.request("GET", "/healthz").raw, client.request("GET", "/readyz").raw) == (
        b"ok\n",
        b"ready\n",
    )


def test_bad_requests_say_what_is_allowed(idle: Running) -> None:
    client = idle.client()
    cases = [
        (client.request("POST", "/v1/videos", raw=b'{"prompt": "a",'), 400, "invalid_json"),
        (client.submit({**FAST, "size": "48x32"}), 400, "invalid_value"),
        (client.submit({**FAST, "num_frames": 4}), 400, "invalid_value"),
        (client.submit({**FAST, "num_inference_steps": 51}), 400, "invalid_value"),
        (client.submit({"size": "32x32"}), 400, "missing_required_parameter"),
        (client.request("GET", "/v1/videos/20260101T000000Z-000000"), 404, "not_found"),
        (client.request("GET", "/v1/videos/20260101T000000Z-000000/content"), 404, "not_found"),
        (client.request("DELETE", "/v1/videos/nope"), 404, "not_found"),
        (client.request("GET", "/v1/videos/a/b/c"), 404, "not_found"),
        (client.request("GET", "/v1/videos/x?wait=600"), 400, "invalid_value"),
        (client.request("DELETE", "/v1/videos"), 405, "method_not_allowed"),
        (client.request("POST", "/v1/videos/x", body={}), 405, "method_not_allowed"),
    ]
    for answer, status, code in cases:
        assert (answer.status, error_of(answer)["code"]) == (status, code), answer.body
    messages = [error_of(a)["message"] for a, _, _ in cases]
    assert messages[0].startswith("body is not valid JSON: Expecting property name")
    assert messages[1] == (
        "size: '48x32': width and height must be multiples of 32 from 32 to 256 (e.g. '32x32')"
    )
    assert messages[2] == "num_frames: 4 must be 4k+1 from 1 to 33 (1, 5, 9, ...)"
    assert messages[3] == "num_inference_steps: 51 is out of range; allowed 1 to 50"
    assert messages[10] == "DELETE is not allowed on /v1/videos; allowed: POST, GET"
    assert cases[10][0].headers["Allow"] == "POST, GET"
    assert client.submit().status == 202  # the connection survived the errors


def _raw(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_bodies_without_length_or_too_large(idle: Running) -> None:
    port = idle.server.port
    missing = _raw(port, b"POST /v1/videos HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert missing.startswith(b"HTTP/1.1 411 ")
    huge = _raw(
        port,
        b"POST /v1/videos HTTP/1.1\r\nHost: x\r\nContent-Length: 999999999\r\n\r\n{",
    )
    assert huge.startswith(b"HTTP/1.1 413 ") and b"body over 16777216 bytes" in huge
