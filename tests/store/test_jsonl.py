"""The JSON-lines reader: any bytes give parsed lines plus named skips; only a file that cannot
be opened as a regular file raises, and memory stays bounded on huge lines."""

from __future__ import annotations

import math
import os
import tracemalloc
from pathlib import Path

import pytest

from wan_otel.errors import WanOtelError
from wan_otel.store.jsonl import MAX_LINE_BYTES, Skips, UnreadableFile, read_json_lines


def _read(path: Path, **options: object) -> tuple[list[tuple[int, object]], list[str]]:
    warnings: list[str] = []
    rows = list(read_json_lines(path, warnings, **options))  # type: ignore[arg-type]
    return rows, warnings


def test_every_kind_of_bad_line_is_skipped_and_named(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    path.write_bytes(
        b"\n".join(
            [
                b'{"a": 1}',
                b"[" * 100_000,  # deeper than the parser goes: RecursionError inside json
                b'{"s": "\xff\xfe"}',
                b"garbage",
                b"",
                b"   ",
                b'{"a": 1} {"b": 2}',
                b"\xef\xbb\xbf{}",  # a UTF-8 byte order mark is not JSON
                b'{"torn": ',
            ]
        )
    )
    rows, warnings = _read(path)
    assert rows == [(1, {"a": 1})]
    assert warnings == [
        f"{path}: line 2 is nested too deeply to parse; skipped",
        f"{path}: line 3 is not valid UTF-8; skipped",
        f"{path}: line 4, line 7, line 8 are not valid JSON; skipped",
        f"{path}: last line 9 is torn (incomplete write); skipped",
    ]


def test_nan_and_infinity_literals_are_accepted(tmp_path: Path) -> None:
    # Python's json writes them for non-finite floats; the decoders judge each number.
    path = tmp_path / "x.jsonl"
    path.write_text('{"v": NaN}\n[Infinity, -Infinity]\n')
    rows, warnings = _read(path)
    assert warnings == []
    assert math.isnan(rows[0][1]["v"])  # type: ignore[index]
    assert rows[1] == (2, [math.inf, -math.inf])


def test_ten_thousand_bad_lines_make_one_warning(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    path.write_text("{}\n" + "nope\n" * 10_000 + "{}")
    rows, warnings = _read(path)
    assert [n for n, _ in rows] == [1, 10_002]
    assert warnings == [f"{path}: line 2, line 3, line 4 and 9997 more are not valid JSON; skipped"]


def test_a_line_over_the_limit_is_skipped_without_being_held(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    line_bytes = 70 << 20
    with path.open("wb") as out:
        out.write(b'{"first": 1}\n{"big": "')
        for _ in range(line_bytes >> 20):
            out.write(b"a" * (1 << 20))
        out.write(b'"}\n{"mid": "' + b"b" * (3 << 20) + b'"}\n{"last": 2}\n')
    tracemalloc.start()
    try:
        rows = []
        warnings: list[str] = []
        for number, obj in read_json_lines(path, warnings):
            rows.append((number, sorted(obj)))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert rows == [(1, ["first"]), (3, ["mid"]), (4, ["last"])]
    assert warnings == [f"{path}: line 2 is longer than {MAX_LINE_BYTES >> 20} MiB; skipped"]
    # The 3 MiB line is held (and decoded) once; the 70 MiB one never is.
    assert peak < 16 << 20


def test_a_line_longer_than_a_chunk_but_within_the_limit_is_read(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    text = "x" * (5 << 20)
    path.write_text(f'{{"a": "{text}"}}\n{{"b": 1}}\n{{"c": "{text}"}}')
    rows, warnings = _read(path)
    assert warnings == []
    assert rows == [(1, {"a": text}), (2, {"b": 1}), (3, {"c": text})]
    rows, warnings = _read(path, max_line_bytes=1 << 20)
    assert rows == [(2, {"b": 1})]
    assert warnings == [f"{path}: line 1, line 3 are longer than 1 MiB; skipped"]


def test_a_fifo_is_refused_at_once_not_waited_on(tmp_path: Path) -> None:
    fifo = tmp_path / "spans.jsonl"
    os.mkfifo(fifo)
    with pytest.raises(UnreadableFile) as caught:
        _read(fifo)
    assert str(caught.value) == f"{fifo}: cannot be read (not a regular file but a FIFO)"
    assert isinstance(caught.value, WanOtelError) and isinstance(caught.value, OSError)


def test_folders_missing_files_and_links(tmp_path: Path) -> None:
    with pytest.raises(UnreadableFile, match="not a regular file but a folder"):
        _read(tmp_path)
    with pytest.raises(UnreadableFile, match="it does not exist"):
        _read(tmp_path / "missing.jsonl")
    target = tmp_path / "target.jsonl"
    target.write_text("{}\n")
    link = tmp_path / "link.jsonl"
    link.symlink_to(target)
    with pytest.raises(UnreadableFile, match="a symbolic link; links are not followed"):
        _read(link)
    assert _read(link, follow_symlinks=True) == ([(1, {})], [])


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_a_file_without_read_permission(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    path.write_text("{}\n")
    path.chmod(0)
    with pytest.raises(UnreadableFile, match="Permission denied"):
        _read(path)


def test_a_not_a_folder_component_is_unreadable_not_a_crash(tmp_path: Path) -> None:
    # What root can still not open: a path through a regular file (ENOTDIR).
    (tmp_path / "file").write_text("")
    with pytest.raises(UnreadableFile, match="Not a directory"):
        _read(tmp_path / "file" / "spans.jsonl")


def test_warnings_are_written_when_the_reader_stops_early(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    path.write_text("bad\n{}\n{}\n")
    warnings: list[str] = []
    lines = read_json_lines(path, warnings)
    assert next(lines) == (2, {})
    lines.close()
    assert warnings == [f"{path}: line 1 is not valid JSON; skipped"]


def test_skips_name_places_and_count_the_rest() -> None:
    skips = Skips("src")
    skips.add("line 1", "has a bad t_ns", "'x'")
    skips.add("line 2", "has a bad t_ns", "'y'")
    skips.add("line 3", "goes down", action="dropped")
    assert len(skips) == 3
    assert skips.lines() == [
        "src: line 1, line 2 have a bad t_ns (first: 'x'); skipped",
        "src: line 3 goes down; dropped",
    ]
