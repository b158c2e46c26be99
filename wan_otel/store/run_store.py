"""The local run store: run ids, the layout of run folders, creating, finding and reading runs.

Layout under the store root (``--store``, ``$WAN_OTEL_STORE``, default ``./wan-otel-runs``)::

    <run id>/run.json                 the run's summary (``summary.RunSummary``)
    <run id>/spans.jsonl              OTLP JSON lines, as the Collector's file exporter writes
    <run id>/gpu_samples.jsonl        GPU samples (``samples.GpuSample``)
    <run id>/spans.<writer>.jsonl     the same, from another process of the run (``rank1``...)

This module is the only one that spells these paths. Each process writing into a run folder
writes files of its own (its writer name in the file name), so no file has two writers.
Creating a run is one ``mkdir``: of two processes starting one run id, one fails. Reading never
follows a symbolic link inside the store and never opens anything but a regular file.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import secrets
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path

from wan_otel.errors import WanOtelError
from wan_otel.store.otlp_json import SpanRecord, read_otlp_file
from wan_otel.store.samples import GpuSample, read_samples
from wan_otel.store.summary import RunSummary

STORE_ENV = "WAN_OTEL_STORE"
DEFAULT_STORE = "wan-otel-runs"
SPANS = "spans"
SAMPLES = "gpu_samples"
SUMMARY_FILE = "run.json"
SUMMARY_MAX_BYTES = 1 << 16

_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_WRITER = re.compile(r"[a-z0-9]{1,32}")


def default_store_root() -> Path:
    return Path(os.environ.get(STORE_ENV) or DEFAULT_STORE)


def check_run_id(run_id: str) -> str:
    """A run id is a folder name: letters, digits, ``.``, ``_``, ``-``; at most 128 characters;
    the whole string (a trailing newline is not part of a valid id)."""
    if not isinstance(run_id, str) or not _RUN_ID.fullmatch(run_id) or ".." in run_id:
        raise WanOtelError(
            f"invalid run id {run_id!r}: use letters, digits, '.', '_' and '-' (at most 128)"
        )
    return run_id


def new_run_id() -> str:
    """A fresh run id: UTC time to the second plus 6 random hex digits (sorts by time)."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    return f"{stamp}-{secrets.token_hex(3)}"


def file_name(kind: str, writer: str | None = None) -> str:
    """``spans.jsonl`` for a run's first writer, ``spans.<writer>.jsonl`` for the others."""
    if writer is None:
        return f"{kind}.jsonl"
    if not _WRITER.fullmatch(writer):
        raise ValueError(f"invalid writer name {writer!r}")
    return f"{kind}.{writer}.jsonl"


def _writer_files(names: list[str], kind: str) -> list[str]:
    pattern = re.compile(rf"{re.escape(kind)}(\.[a-z0-9]{{1,32}})?\.jsonl")
    return sorted(n for n in names if pattern.fullmatch(n))


@dataclass(frozen=True)
class RunFolder:
    """One run's folder: the paths of its files."""

    run_id: str
    path: Path

    def spans(self, writer: str | None = None) -> Path:
        return self.path / file_name(SPANS, writer)

    def samples(self, writer: str | None = None) -> Path:
        return self.path / file_name(SAMPLES, writer)

    @property
    def summary(self) -> Path:
        return self.path / SUMMARY_FILE

    def file(self, name: str) -> Path:
        """Another file of the run (a server's job record, the video)."""
        if "/" in name or name in ("", ".", ".."):
            raise ValueError(f"not a file name: {name!r}")
        return self.path / name

    def write_summary(self, summary: RunSummary) -> None:
        """Replace ``run.json`` atomically (a reader sees the old line or the new one)."""
        temporary = self.path / f".{SUMMARY_FILE}.{os.getpid()}.tmp"
        temporary.write_text(summary.to_json() + "\n", encoding="utf-8")
        os.replace(temporary, self.summary)


@dataclass
class RunData:
    """What the store holds for one run, with everything that could not be read named."""

    run_id: str
    spans: list[SpanRecord]
    samples: list[GpuSample]
    warnings: list[str] = field(default_factory=list)
    summary: RunSummary | None = None


class RunStore:
    """Runs under one root folder: creates, finds and reads them."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    # -- writing --------------------------------------------------------------------------

    def check_writable(self) -> None:
        """Refuse a store that cannot take runs (a file, an unwritable folder) before any work
        starts; create the folder if it does not exist."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except FileExistsError:
            raise WanOtelError(f"run store {self.root} is not a folder") from None
        except OSError as exc:
            raise WanOtelError(f"cannot create run store {self.root}: {exc.strerror}") from None
        if not self.root.is_dir():
            raise WanOtelError(f"run store {self.root} is not a folder")
        if not os.access(self.root, os.W_OK | os.X_OK):
            raise WanOtelError(f"run store {self.root} is not writable")

    def create_run(self, run_id: str) -> RunFolder:
        """A new run's folder, made in one step: an existing run id fails (two processes
        starting one id: one of them gets this error, and nothing is mixed)."""
        check_run_id(run_id)
        self.check_writable()
        path = self.root / run_id
        try:
            os.mkdir(path)
        except FileExistsError:
            raise WanOtelError(
                f"run {run_id!r} already exists in {self.root}: choose another run id"
            ) from None
        except OSError as exc:
            raise WanOtelError(f"cannot create run {run_id!r}: {exc.strerror}") from None
        return RunFolder(run_id, path)

    def join_run(self, run_id: str) -> RunFolder:
        """The folder of a run another process created (the other ranks of a run)."""
        folder = self.folder(run_id)
        if not _is_real_dir(folder.path):
            raise WanOtelError(f"run {run_id!r} does not exist in {self.root}")
        return folder

    def ensure_run(self, run_id: str) -> RunFolder:
        """A run's folder, created if missing (spans of runs nobody created: instrumented
        pipelines in users' own processes, with ids of their own)."""
        folder = self.folder(run_id)
        if not _is_real_dir(folder.path):
            folder.path.mkdir(parents=True, exist_ok=True)
        return folder

    # -- finding --------------------------------------------------------------------------

    def folder(self, run_id: str) -> RunFolder:
        return RunFolder(check_run_id(run_id), self.root / run_id)

    def run_ids(self, skipped: list[str] | None = None) -> list[str]:
        """Every run folder's id; symbolic links and other entries are not runs (named in
        ``skipped`` when given)."""
        try:
            entries = list(os.scandir(self.root))
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise WanOtelError(f"cannot read run store {self.root}: {exc.strerror}") from exc
        ids = []
        for entry in entries:
            if not _RUN_ID.fullmatch(entry.name) or ".." in entry.name:
                continue
            try:
                real_dir = entry.is_dir(follow_symlinks=False)
            except OSError:
                real_dir = False
            if real_dir:
                ids.append(entry.name)
            elif entry.is_symlink() and skipped is not None:
                skipped.append(f"{entry.path}: a symbolic link; the store does not follow links")
        return sorted(ids)

    def _missing_run(self, run_id: str) -> WanOtelError:
        if not self.root.is_dir():
            return WanOtelError(
                f"run store {self.root} does not exist (set --store or {STORE_ENV})"
            )
        nearest = difflib.get_close_matches(run_id, self.run_ids(), n=3, cutoff=0.5)
        hint = f"; nearest: {', '.join(nearest)}" if nearest else "; `wan-otel runs` lists them"
        return WanOtelError(f"no run {run_id!r} in {self.root}{hint}")

    def _checked_folder(self, run_id: str) -> RunFolder:
        folder = self.folder(run_id)
        try:
            mode = os.lstat(folder.path).st_mode
        except FileNotFoundError:
            raise self._missing_run(run_id) from None
        except OSError as exc:
            raise WanOtelError(f"cannot read run {folder.path}: {exc.strerror}") from None
        if stat.S_ISLNK(mode):
            raise WanOtelError(
                f"run folder {folder.path} is a symbolic link; the store does not follow links"
            )
        if not stat.S_ISDIR(mode):
            raise WanOtelError(f"{folder.path} is not a run folder")
        return folder

    def _files(self, folder: RunFolder, kind: str, warnings: list[str]) -> list[Path]:
        """The run's regular files of one kind, every writer's; other entries are named."""
        try:
            names = os.listdir(folder.path)
        except OSError as exc:
            raise WanOtelError(f"cannot read run {folder.path}: {exc.strerror}") from None
        paths = []
        for name in _writer_files(names, kind):
            path = folder.path / name
            try:
                mode = os.lstat(path).st_mode
            except OSError:
                continue
            if stat.S_ISREG(mode):
                paths.append(path)
            else:
                warnings.append(f"{path}: not a regular file; skipped")
        return paths

    # -- reading --------------------------------------------------------------------------

    def read(self, run_id: str) -> RunData:
        """Spans and samples of one run; what cannot be read is skipped and named."""
        folder = self._checked_folder(run_id)
        warnings: list[str] = []
        span_files = self._files(folder, SPANS, warnings)
        summary = self.summary(run_id)
        if not span_files and summary is None:
            raise self._missing_run(run_id)
        spans = [s for path in span_files for s in read_spans(path, warnings)]
        samples = [
            s for path in self._files(folder, SAMPLES, warnings) for s in _samples(path, warnings)
        ]
        samples.sort(key=lambda s: (s.uuid, s.t_ns))
        return RunData(run_id, spans, samples, warnings, summary)

    def summary(self, run_id: str) -> RunSummary | None:
        """The run's summary, or None when there is none (or it cannot be read)."""
        data = read_regular(self.folder(run_id).summary, SUMMARY_MAX_BYTES)
        if data is None:
            return None
        try:
            return RunSummary.from_json(json.loads(data))
        except (ValueError, RecursionError):
            return None


def read_spans(path: Path, warnings: list[str]) -> list[SpanRecord]:
    """All decodable spans of an OTLP JSON-lines file; bad lines and spans become warnings."""
    try:
        return read_otlp_file(path, warnings)
    except OSError as exc:
        warnings.append(f"{path}: cannot be read ({exc.strerror}); skipped")
        return []


def _samples(path: Path, warnings: list[str]) -> list[GpuSample]:
    try:
        return read_samples(path, warnings)
    except OSError as exc:
        warnings.append(f"{path}: cannot be read ({exc.strerror}); skipped")
        return []


def read_regular(path: Path, limit: int) -> bytes | None:
    """The bytes of a regular file of at most ``limit`` bytes; None for anything else (missing,
    a link, a pipe, a device, unreadable, too big). Never blocks on a pipe."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > limit:
            return None
        return os.read(fd, limit + 1)[:limit]
    except OSError:
        return None
    finally:
        os.close(fd)


def _is_real_dir(path: Path) -> bool:
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False
