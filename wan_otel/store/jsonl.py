"""Reading JSON-lines files that may be torn or partly corrupt, without losing the rest."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def read_json_lines(path: Path, warnings: list[str]) -> Iterator[tuple[int, Any]]:
    """Yield ``(line_number, object)`` for each parseable line of ``path``.

    A torn last line (a writer killed mid-write) or a corrupt line is skipped and described in
    ``warnings``; it never raises for content, only for a file that cannot be opened.
    """
    data = path.read_bytes()
    lines = data.split(b"\n")
    torn_tail = not data.endswith(b"\n")
    last = len(lines) - 1
    numbered = [(i + 1, raw) for i, raw in enumerate(lines) if raw.strip()]
    try:  # fast path: one parse of the whole file as a JSON array
        parsed = json.loads(b"[" + b",".join(raw for _, raw in numbered) + b"]")
    except (ValueError, UnicodeDecodeError):
        parsed = None
    if parsed is not None and len(parsed) == len(numbered):
        yield from zip((n for n, _ in numbered), parsed)
        return
    for index, raw in enumerate(lines):
        if not raw.strip():
            continue
        number = index + 1
        try:
            yield number, json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            if index == last and torn_tail:
                warnings.append(f"{path}: last line {number} is torn (incomplete write); skipped")
            else:
                warnings.append(f"{path}: line {number} is not valid JSON; skipped")
