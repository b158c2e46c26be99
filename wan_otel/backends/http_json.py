"""A small JSON-over-HTTP client (stdlib only) that turns every failure into one clear line."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from typing import Any

from wan_otel.errors import WanOtelError

DEFAULT_TIMEOUT_S = 30.0


class NotFound(WanOtelError):
    """The backend answered 404."""


class HttpJsonClient:
    """GETs JSON from one base URL and counts the requests it makes."""

    def __init__(self, base_url: str, name: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise WanOtelError(f"{name} URL must start with http:// or https://: {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.name = name
        self.timeout_s = timeout_s
        self.requests = 0

    def get(self, path: str, params: Mapping[str, str] | None = None) -> Any:
        url = self.base_url + path
        if params:
            url += "?" + urllib.parse.urlencode(params)
        self.requests += 1
        request = urllib.request.Request(url, headers={"Accept": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                body = response.read()
        except urllib.error.HTTPError as exc:
            detail = _error_detail(exc.read())
            if exc.code == 404:
                raise NotFound(f"{self.name} at {self.base_url} answered 404: {detail}") from exc
            raise WanOtelError(
                f"{self.name} at {self.base_url} answered HTTP {exc.code} for {path}: {detail}"
            ) from exc
        except (TimeoutError, urllib.error.URLError, ConnectionError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise WanOtelError(f"{self.name} at {self.base_url} is unreachable: {reason}") from exc
        try:
            return json.loads(body)
        except ValueError as exc:
            raise WanOtelError(
                f"{self.name} at {self.base_url} answered {path} with something that is not JSON "
                f"({body[:60]!r})"
            ) from exc


def _error_detail(body: bytes) -> str:
    try:
        obj = json.loads(body)
    except ValueError:
        return body[:200].decode("utf-8", "replace").strip() or "no body"
    if isinstance(obj, dict):
        error = obj.get("error")
        if isinstance(error, dict):
            return str(error.get("message", error))
        if error:
            return str(error)
        if obj.get("message"):
            return str(obj["message"])
    return json.dumps(obj)[:200]
