"""The HTTP API (Starlette): routes, request bodies in, JSON and files out, errors in OpenAI's
shape. Routes::

    POST   /v1/videos                    queue a generation (JSON or form)   202
    POST   /v1/videos/sync               generate and answer the mp4         200
    GET    /v1/videos                    a cursor page (after, limit, order) 200
    GET    /v1/videos/{id}[?wait=S]      a job (long poll up to S s)         200
    GET    /v1/videos/{id}/content       the mp4, or ?variant=thumbnail      200 (409)
    DELETE /v1/videos/{id}               delete (a running job is stopped)   200
    POST   /v1/videos/{id}/remix ...     not supported here                  400
    GET    /v1/models[/{id}]             the served model                    200
    GET    /healthz /readyz /metrics     probes and Prometheus (no key needed)

Handlers run on the event loop and hand blocking work (validation with image decoding,
disk) to threads; long polls and the sync route wait without a thread (``waiters.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import FileResponse, Response
from starlette.routing import BaseRoute, Match, Route

from wan_otel import semconv
from wan_otel.pipeline.serve.body import BodyLimits, read_fields
from wan_otel.pipeline.serve.errors import JSON_TYPE, ApiError, json_bytes
from wan_otel.pipeline.serve.jobs import COMPLETED, FINAL
from wan_otel.pipeline.serve.service import Content, Service
from wan_otel.pipeline.serve.tracing import request_context
from wan_otel.pipeline.serve.waiters import FinalWaiters

_log = logging.getLogger(__name__)

MAX_WAIT_S = 60.0
"""Longest long poll (``?wait=``)."""
POLL_AFTER_HEADER = "openai-poll-after-ms"
"""The poll interval OpenAI's SDK reads (``videos.poll``, ``create_and_poll``)."""
ROUTE_KEY = "wan_otel.route"
IMAGE_FIELDS = ("input_reference", "image_reference")
UNSUPPORTED = {
    "remix": "remix is not supported here: this server generates from a prompt (and a first "
    "frame); create a new video with POST /v1/videos",
    "edits": "video edits are not supported here; create a new video with POST /v1/videos",
    "extensions": "video extensions are not supported here; create a new video with POST "
    "/v1/videos",
    "characters": "characters are not supported here",
}


def _json(status: int, obj: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(json_bytes(obj), status, headers, media_type=JSON_TYPE)


@dataclass
class Api:
    service: Service
    registry: CollectorRegistry
    ready: Callable[[], str | None]
    """None when ready, else why not."""
    body_limits: BodyLimits

    def __post_init__(self) -> None:
        self.waiters = FinalWaiters(self.service.queue)

    def _job_headers(self, record: dict[str, Any]) -> dict[str, str]:
        headers = {
            semconv.HEADER_RUN_ID: str(record["id"]),
            semconv.HEADER_TRACE_ID: str(record["trace_id"]),
        }
        if record.get("status") not in FINAL:
            headers[POLL_AFTER_HEADER] = str(self.service.queue.poll_after_ms())
        return headers

    async def _submit(self, request: Request) -> dict[str, Any]:
        fields = await read_fields(request.headers, request.receive, self.body_limits)
        parent, trace_id = request_context()
        if _heavy(fields):  # decoding an image, or checking long text, takes milliseconds
            return await run_in_threadpool(self.service.submit, fields, parent, trace_id)
        # The common request is checked and written in well under a millisecond: a round trip
        # through the thread pool would cost more than it saves the loop.
        return self.service.submit(fields, parent, trace_id)

    # -- videos -------------------------------------------------------------------------------

    async def create(self, request: Request) -> Response:
        record = await self._submit(request)
        headers = {**self._job_headers(record), "Location": f"/v1/videos/{record['id']}"}
        return _json(202, record, headers)

    async def create_sync(self, request: Request) -> Response:
        """vLLM-Omni's ``/v1/videos/sync``: the job runs as any other (queued, traced,
        stored), and the answer is its mp4. A client that leaves deletes its job."""
        record = await self._submit(request)
        job_id = str(record["id"])
        finished = asyncio.ensure_future(self.waiters.wait(job_id, None))
        left = asyncio.ensure_future(request.receive())  # only a disconnect can come now
        try:
            await asyncio.wait({finished, left}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (finished, left):
                task.cancel()
        if not finished.done() or finished.cancelled():
            await run_in_threadpool(self._delete_quietly, job_id)
            raise ClientDisconnect()
        record = self.service.view(job_id)
        if record["status"] != COMPLETED:
            error = record.get("error") or {}
            code = str(error.get("code") or record["status"])
            status = 500 if code == "generation_failed" else 503
            raise ApiError(status, f"video {job_id!r}: {error.get('message')}", code=code)
        content = await run_in_threadpool(self.service.content, job_id, "video")
        seconds = (record.get("timings") or {}).get("generation_s")
        extra = {"x-inference-time-s": f"{seconds}"} if seconds is not None else {}
        return self._file(content, extra)

    def _delete_quietly(self, job_id: str) -> None:
        with contextlib.suppress(ApiError):  # gone already
            self.service.delete(job_id)

    async def list_videos(self, request: Request) -> Response:
        query = request.query_params
        limit = _query_number(query.get("limit"), "limit", 20, 1, 100)
        order = query.get("order", "desc")
        page = await run_in_threadpool(self.service.page, query.get("after"), int(limit), order)
        return _json(200, page)

    async def retrieve(self, request: Request) -> Response:
        job_id = request.path_params["video_id"]
        wait = _query_number(request.query_params.get("wait"), "wait", 0, 0, MAX_WAIT_S)
        if wait > 0:
            await self.waiters.wait(job_id, wait)
        record = self.service.view(job_id)
        return _json(200, record, self._job_headers(record))

    async def delete(self, request: Request) -> Response:
        job_id = request.path_params["video_id"]
        return _json(200, await run_in_threadpool(self.service.delete, job_id))

    async def content(self, request: Request) -> Response:
        variant = request.query_params.get("variant", "video")
        job_id = request.path_params["video_id"]
        content = await run_in_threadpool(self.service.content, job_id, variant)
        return self._file(content)

    def _file(self, content: Content, extra: dict[str, str] | None = None) -> Response:
        record = content.record
        suffix = content.path.suffix
        headers = {
            **self._job_headers(record),
            "Content-Disposition": f'inline; filename="{record["id"]}{suffix}"',
            **(extra or {}),
        }
        return FileResponse(content.path, media_type=content.media_type, headers=headers)

    async def unsupported(self, request: Request) -> Response:
        feature = str(request.url.path).rstrip("/").rsplit("/", 1)[-1]
        raise ApiError(400, UNSUPPORTED[feature], code="unsupported_operation")

    # -- models, probes, metrics ----------------------------------------------------------------

    async def models(self, request: Request) -> Response:
        return _json(200, self.service.models())

    async def model(self, request: Request) -> Response:
        return _json(200, self.service.model(request.path_params["model_id"]))

    async def healthz(self, request: Request) -> Response:
        return _json(200, {"status": "ok"})

    async def readyz(self, request: Request) -> Response:
        why = self.ready()
        if why is not None:
            raise ApiError(503, f"not ready: {why}", code="not_ready")
        return _json(200, {"status": "ready"})

    async def metrics(self, request: Request) -> Response:
        encoder, content_type = choose_encoder(request.headers.get("accept", ""))
        return Response(encoder(self.registry), 200, media_type=content_type)

    def routes(self) -> list[BaseRoute]:
        video = "/v1/videos/{video_id}"
        return [
            Route("/v1/videos", self.create, methods=["POST"]),
            Route("/v1/videos", self.list_videos, methods=["GET"]),
            Route("/v1/videos/sync", self.create_sync, methods=["POST"]),
            Route("/v1/videos/edits", self.unsupported, methods=["POST"]),
            Route("/v1/videos/extensions", self.unsupported, methods=["POST"]),
            Route("/v1/videos/characters", self.unsupported, methods=["POST"]),
            Route(video, self.retrieve, methods=["GET"]),
            Route(video, self.delete, methods=["DELETE"]),
            Route(f"{video}/content", self.content, methods=["GET"]),
            Route(f"{video}/remix", self.unsupported, methods=["POST"]),
            Route("/v1/models", self.models, methods=["GET"]),
            Route("/v1/models/{model_id:path}", self.model, methods=["GET"]),
            Route("/healthz", self.healthz, methods=["GET"]),
            Route("/health", self.healthz, methods=["GET"]),
            Route("/readyz", self.readyz, methods=["GET"]),
            Route("/metrics", self.metrics, methods=["GET"]),
        ]


def _heavy(fields: dict[str, Any]) -> bool:
    """Fields whose checks take long enough to belong off the event loop."""
    return any(name in fields for name in IMAGE_FIELDS) or any(
        not isinstance(value, int | float | None) and len(str(value)) > 1000
        for value in fields.values()
    )


def _query_number(value: str | None, name: str, default: float, lo: float, hi: float) -> float:
    if value is None:
        return default
    try:
        number = float(value) if len(value) <= 20 else float("nan")
    except ValueError:
        number = float("nan")
    if not lo <= number <= hi:
        shown = value if len(value) <= 20 else value[:17] + "..."
        raise ApiError(
            400, f"{name}: {shown!r}; allowed {lo:g} to {hi:g}", code="invalid_value",
            param=name,
        )  # fmt: skip
    return number


def route_finder(routes: list[BaseRoute]) -> Callable[[MutableMapping[str, Any]], str]:
    """A request's route template (``/v1/videos/{video_id}``), or ``other``: the label of
    its metrics and the name of its span, never its id."""
    paths = [(route, str(getattr(route, "path", ""))) for route in routes]

    def route_of(scope: MutableMapping[str, Any]) -> str:
        known = scope.get(ROUTE_KEY)
        if known is not None:
            return str(known)
        partial = "other"
        for route, path in paths:
            match, _ = route.matches(scope)
            if match is Match.FULL:
                partial = path
                break
            if match is Match.PARTIAL and partial == "other":
                partial = path
        scope[ROUTE_KEY] = partial
        return partial

    return route_of


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return _json(exc.status, exc.body(), exc.headers)


def _http_errors(routes: list[BaseRoute]) -> Callable[[Request, Exception], Awaitable[Response]]:
    """Starlette's 404 and 405 (and any other ``HTTPException``) in OpenAI's shape; a 405
    names every method the path takes."""

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        path, method = request.url.path, request.method
        if exc.status_code == 405:
            methods: list[str] = []
            for route in routes:
                if route.matches(dict(request.scope))[0] is not Match.NONE:
                    methods += sorted(getattr(route, "methods", None) or ())
            allowed = ", ".join(dict.fromkeys(methods))
            error = ApiError(
                405,
                f"{method} is not allowed on {path}; allowed: {allowed}",
                code="method_not_allowed",
                headers={"Allow": allowed},
            )
        elif exc.status_code == 404:
            error = ApiError(404, f"no route {method} {path}; see /v1/videos", code="not_found")
        else:
            error = ApiError(exc.status_code, str(exc.detail), code="invalid_request")
        return _json(error.status, error.body(), error.headers)

    return http_error


async def _disconnected(request: Request, exc: Exception) -> Response:
    return Response(status_code=499)  # nobody reads it: the client has gone


async def _internal(request: Request, exc: Exception) -> Response:
    _log.error("%s %s failed: %s: %s", request.method, request.url.path, type(exc).__name__, exc)
    error = ApiError(500, "internal error; see the server log", code="internal_error")
    return _json(500, error.body())


def build_app(api: Api) -> Starlette:
    routes = api.routes()
    app = Starlette(
        routes=routes,
        exception_handlers={
            ApiError: _api_error,
            HTTPException: _http_errors(routes),
            ClientDisconnect: _disconnected,
            Exception: _internal,
        },
    )
    app.router.redirect_slashes = False  # one spelling of each path: no redirects
    return app
