"""Reading JSON-lines files that may be torn, corrupt or hostile, and naming what was skipped.

The reader is total: any byte sequence gives the parseable lines plus warnings; only a file
that cannot be opened as a regular file raises (``UnreadableFile``). It opens without following
a final symbolic link (unless asked) and without blocking, then refuses anything but a regular
file, so a FIFO or a device in a run folder can never hang a reader. Memory is bounded by the
longest accepted line (``MAX_LINE_BYTES``): a longer line is measured in chunks and skipped
without ever being held whole.

NaN and Infinity literals are accepted: Python's ``json`` writes them for non-finite floats and
OTLP JSON allows non-finite doubles, so refusing them would drop whole batches of spans for one
odd attribute. The decoders check every number where its meaning is known (timestamps, sample
counters) and skip what is not finite there.
"""

from __future__ import annotations

import json
import os
import reprlib
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from wan_otel.errors import WanOtelError

MAX_LINE_BYTES = 64 << 20
"""Longest line parsed (64 MiB). A Collector batch or a store line is far smaller; a longer
line is skipped with a warning, read in chunks so that it never sits in memory whole."""

_CHUNK = 1 << 20
_EXAMPLES = 3
"""Places named per kind of problem; the rest are counted."""


class UnreadableFile(WanOtelError, OSError):
    """A file that cannot be read: missing, not permitted, a symbolic link not to be followed,
    or not a regular file. A ``WanOtelError`` (one line, exit 2) and an ``OSError`` too, so a
    caller that skips unreadable files with a note (``except OSError``) skips these as well."""

    def __init__(self, path: Path, reason: str, errno: int | None = None) -> None:
        self.message = f"{path}: cannot be read ({reason})"
        super().__init__(self.message)
        self.errno = errno
        self.strerror = reason
        self.filename = str(path)

    def __str__(self) -> str:
        return self.message


_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxstring, _REPR.maxother = 3, 60, 60


def shown(value: object, limit: int = 60) -> str:
    """``repr`` of a value from a file, cut to ``limit`` characters: one line, bounded length
    and depth (``reprlib``: a value nested 900 deep is not walked), whatever the file holds."""
    text = _REPR.repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


_PLURAL_VERBS = {"is": "are", "has": "have", "goes": "go"}


def _plural(problem: str) -> str:
    verb, _, rest = problem.partition(" ")
    return f"{_PLURAL_VERBS.get(verb, verb)} {rest}"


class Skips:
    """What a reader skipped, tallied per kind of problem, so that 10,000 bad lines make one
    warning (the first few places named, the rest counted), not 10,000."""

    def __init__(self, source: str) -> None:
        self.source = source
        self._kinds: dict[tuple[str, str], tuple[list[str], str, list[int]]] = {}

    def add(self, where: str, problem: str, detail: str = "", action: str = "skipped") -> None:
        """One skipped item. ``problem`` is a singular verb phrase (``is not valid JSON``,
        ``has an invalid t_ns``); ``detail`` (the first one is shown) says what was seen."""
        places, _, count = self._kinds.setdefault((problem, action), ([], detail, [0]))
        count[0] += 1
        if len(places) < _EXAMPLES:
            places.append(where)

    def __len__(self) -> int:
        return sum(count[0] for _, _, count in self._kinds.values())

    def lines(self) -> list[str]:
        """One warning per kind of problem, in the order the kinds were first seen."""
        out = []
        for (problem, action), (places, detail, (count,)) in self._kinds.items():
            if count == 1:
                text = f"{places[0]} {problem}" + (f" ({detail})" if detail else "")
            else:
                more = f" and {count - len(places)} more" if count > len(places) else ""
                text = f"{', '.join(places)}{more} {_plural(problem)}" + (
                    f" (first: {detail})" if detail else ""
                )
            out.append(f"{self.source}: {text}; {action}")
        return out

    def flush(self, warnings: list[str]) -> None:
        """Append the warnings and start counting afresh."""
        warnings.extend(self.lines())
        self._kinds.clear()


def open_regular(path: Path, *, follow_symlinks: bool = False) -> IO[bytes]:
    """``path`` opened for binary reading, if it is a regular file; never blocks (a FIFO is
    refused, not opened for a writer that never comes). Raises ``UnreadableFile`` otherwise."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    if not follow_symlinks:
        flags |= getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError as exc:
        raise UnreadableFile(path, "it does not exist", exc.errno) from None
    except OSError as exc:
        if not follow_symlinks and os.path.islink(path):
            reason = "a symbolic link; links are not followed"
        else:
            reason = exc.strerror or type(exc).__name__
        raise UnreadableFile(path, reason, exc.errno) from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise UnreadableFile(path, f"not a regular file but {_kind(mode)}")
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    ):
        if test(mode):
            return name
    return "a special file"


def _raw_lines(file: IO[bytes], limit: int) -> Iterator[tuple[int, bytes | None, bool]]:
    """``(number, bytes, ends_with_newline)`` of each line, without its newline; bytes None for
    a line over ``limit``. Reads in chunks; a line longer than a chunk is measured first, then
    read again if it fits, so a line over the limit is never held."""
    number, offset, partial = 0, 0, b""  # offset: where ``partial`` starts in the file
    while chunk := file.read(_CHUNK):
        lines = (partial + chunk if partial else chunk).split(b"\n")
        partial = lines.pop()
        for line in lines:
            number += 1
            offset += len(line) + 1
            yield number, (line if len(line) <= limit else None), True
        if len(partial) <= _CHUNK:
            continue
        length, complete = len(partial), False
        partial = b""
        while more := file.read(_CHUNK):
            end = more.find(b"\n")
            if end >= 0:
                length, complete = length + end, True
                break
            length += len(more)
        number += 1
        held: bytes | None = None
        if length <= limit:
            file.seek(offset)
            held = file.read(length)
        yield number, held, complete
        if not complete:
            return
        offset += length + 1
        file.seek(offset)
    if partial:
        yield number + 1, (partial if len(partial) <= limit else None), False


def _size(n: int) -> str:
    return f"{n >> 20} MiB" if n >= 1 << 20 and not n % (1 << 20) else f"{n} bytes"


_DECODER = json.JSONDecoder()
_JSON_SPACE = " \t\r\n"


def _parse(raw: bytes) -> Any:
    """The one JSON value of a line (``raw_decode`` on the stripped text: half the cost of
    ``json.loads`` a line, which matters for files of 20,000 samples)."""
    text = raw.decode("utf-8").strip(_JSON_SPACE)
    value, end = _DECODER.raw_decode(text)
    if end != len(text):
        raise ValueError("extra data after the JSON value")
    return value


def read_json_lines(
    path: Path,
    warnings: list[str],
    *,
    follow_symlinks: bool = False,
    max_line_bytes: int = MAX_LINE_BYTES,
) -> Iterator[tuple[int, Any]]:
    """Yield ``(line_number, object)`` for each parseable line of ``path``.

    A torn last line (a writer killed mid-write), a line that is not UTF-8 JSON, nested beyond
    the parser's depth, or longer than ``max_line_bytes`` is skipped and named in ``warnings``
    (one line per kind of problem, appended when the file is done). Raises ``UnreadableFile``
    only for a file that cannot be opened as a regular file; never for its content.
    """
    skips = Skips(str(path))
    try:
        with open_regular(path, follow_symlinks=follow_symlinks) as file:
            for number, raw, complete in _raw_lines(file, max_line_bytes):
                if raw is None:
                    skips.add(f"line {number}", f"is longer than {_size(max_line_bytes)}")
                    continue
                if not raw.strip():
                    continue
                try:
                    value = _parse(raw)
                except UnicodeDecodeError:
                    skips.add(f"line {number}", "is not valid UTF-8")
                    continue
                except RecursionError:
                    skips.add(f"line {number}", "is nested too deeply to parse")
                    continue
                except ValueError:
                    if complete:
                        skips.add(f"line {number}", "is not valid JSON")
                    else:
                        skips.add(f"last line {number}", "is torn (incomplete write)")
                    continue
                yield number, value
    finally:
        skips.flush(warnings)
