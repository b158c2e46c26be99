"""Under load and against slow or idle clients: a burst of 200 clients creating jobs gets 202
or 429, never a reset; connections past the bound get a JSON 503; idle connections, heads
that never complete and bodies that stop arriving are timed out; a body shorter than its
Content-Length never becomes a job."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from typing import Any

from tests.serve.conftest import FAST, STRICT, STRICT_KEY, Running

CLIENTS = 200


def post_once(port: int, barrier: threading.Barrier, results: list[Any], index: int) -> None:
    """One client: its own connection, one POST, at the same moment as the others."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        barrier.wait(30)
        conn.request("POST", "/v1/videos", json.dumps(FAST), {"Content-Type": "application/json"})
        response = conn.getresponse()
        results[index] = (response.status, json.loads(response.read()))
    except Exception as exc:  # a reset or a refusal is what this test looks for
        results[index] = exc
    finally:
        conn.close()


def test_a_burst_of_200_clients_gets_202_or_429_never_a_reset(idle: Running) -> None:
    idle.switches.hold()
    client = idle.client()
    running = client.submit().body["id"]
    assert idle.switches.held.wait(10)
    before = {p.name for p in idle.store.iterdir()}
    results: list[Any] = [None] * CLIENTS
    barrier = threading.Barrier(CLIENTS)
    threads = [
        threading.Thread(target=post_once, args=(idle.server.port, barrier, results, i))
        for i in range(CLIENTS)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(90)
    errors = [r for r in results if not isinstance(r, tuple)]
    assert errors == []
    statuses = sorted(status for status, _ in results)
    assert statuses == [202] * 3 + [429] * (CLIENTS - 3)  # --max-queue 3, one running
    assert {b["error"]["code"] for s, b in results if s == 429} == {"queue_full"}
    accepted = {b["id"] for s, b in results if s == 202}
    assert {p.name for p in idle.store.iterdir()} - before == accepted
    idle.switches.release()
    assert [client.wait(i)["status"] for i in [running, *accepted]] == ["completed"] * 4


def open_connections(running: Running) -> int:
    return len(running.server._http._server.server_state.connections)  # type: ignore[union-attr]


def settle(running: Running) -> None:
    """Until earlier tests' connections are closed (idle ones close after 0.3 s)."""
    deadline = time.monotonic() + 10
    while open_connections(running) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert open_connections(running) == 0


def raw(port: int, data: bytes, *, half_close: bool = False) -> bytes:
    """Send ``data`` on a fresh connection and read until the server closes it."""
    with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
        sock.sendall(data)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def json_answer(data: bytes) -> tuple[int, dict[str, str], dict[str, Any]]:
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    lowered = {k.lower(): v for k, v in headers.items()}
    assert lowered["content-type"] == "application/json", data[:300]
    return int(lines[0].split()[1]), lowered, json.loads(body)


AUTH = f"Authorization: Bearer {STRICT_KEY}\r\n".encode()


def test_connections_past_the_bound_get_a_json_503(strict: Running) -> None:
    strict.switches.hold()
    client = strict.client(keepalive=False)
    held = client.submit().body["id"]
    assert strict.switches.held.wait(10)
    settle(strict)  # the POST's connection is gone: the polls below are the only ones
    polls = [socket.create_connection(("127.0.0.1", strict.server.port), timeout=15)
             for _ in range(STRICT.max_connections)]  # fmt: skip
    try:
        for sock in polls:  # long polls: busy connections, not idle ones
            sock.sendall(f"GET /v1/videos/{held}?wait=10 HTTP/1.1\r\nHost: x\r\n".encode()
                         + AUTH + b"Connection: close\r\n\r\n")  # fmt: skip
        deadline = time.monotonic() + 10
        while open_connections(strict) < STRICT.max_connections and time.monotonic() < deadline:
            time.sleep(0.02)
        answer = raw(strict.server.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        status, headers, body = json_answer(answer)
        assert (status, headers["retry-after"], headers["connection"]) == (503, "1", "close")
        assert body["error"]["code"] == "too_many_connections"
    finally:
        strict.switches.release()
    answers = []
    for sock in polls:  # every poll within the bound was served: the job's final record
        with sock:
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
            answers.append(json_answer(b"".join(chunks)))
    assert [(s, b["status"]) for s, _, b in answers] == [(200, "completed")] * len(polls)


def test_idle_connections_and_slow_heads_are_closed(strict: Running) -> None:
    port = strict.server.port
    assert raw(port, b"") == b""  # never sent a byte: closed after the idle timeout
    after_answer = raw(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert after_answer.startswith(b"HTTP/1.1 200 ")  # then closed while idle
    status, headers, body = json_answer(raw(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n"))
    assert (status, headers["connection"]) == (408, "close")
    assert body["error"]["message"] == "the request head did not arrive within 0.5 s"


def test_bodies_that_stop_or_fall_short_never_become_jobs(strict: Running) -> None:
    port = strict.server.port
    before = {p.name for p in strict.store.iterdir()}
    head = (b"POST /v1/videos HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + AUTH + b"Content-Length: 100\r\n\r\n")  # fmt: skip
    status, headers, body = json_answer(raw(port, head + b'{"prompt": "a cat"'))
    assert (status, headers["connection"]) == (408, "close")
    assert body["error"]["message"] == "the body did not arrive in full within 0.5 s"
    # Shorter than its Content-Length, then the client ends its side: no answer, no job.
    assert raw(port, head + b'{"prompt": "a cat"}', half_close=True) == b""
    big = head.replace(b"100", str(17 * 2**20).encode())
    status, _, body = json_answer(raw(port, big))
    assert (status, body["error"]["code"]) == (413, "body_too_large")
    assert {p.name for p in strict.store.iterdir()} == before
