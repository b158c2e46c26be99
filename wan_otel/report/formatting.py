"""How the report prints figures: durations, shares, n/a, signs and text cut for a table cell.

One set of rules for every format (text, Markdown, the recommendations' sentences), so a
figure reads the same wherever it appears:

- a duration's precision follows its magnitude: seconds with two decimals from 0.1 s, below
  that milliseconds with three significant digits (``42.1 ms``), so a fast step never prints
  as ``0.00 s``;
- a missing figure is ``n/a`` alone, never ``n/a s`` or ``n/a%``;
- shares are rounded by largest remainder, so the printed rows add up to the printed total;
- negative numbers use the ASCII hyphen-minus in every format (copied into a spreadsheet or a
  shell, a U+2212 minus is not a number);
- text cut for a table cell is cut at a word boundary, with an ellipsis.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

NA = "n/a"
ELLIPSIS = "…"
SECONDS_FROM = 0.1
"""Durations from this many seconds print in seconds; shorter ones in milliseconds."""

_ASCII = {"±": "+/-", "Δ": "delta", "−": "-", "›": "-", "×": "x", ELLIPSIS: "...", "–": "-"}


def duration(seconds: float | None) -> str:
    """``593.45 s``, ``0.12 s``, ``42.1 ms``, ``4.21 ms``, ``0.421 ms``; ``n/a`` for None."""
    if seconds is None:
        return NA
    if seconds == 0:
        return "0 s"
    ms = seconds * 1e3
    if abs(round(ms, 1)) >= SECONDS_FROM * 1e3:  # 99.96 ms would print as 100.0 ms
        return f"{seconds:.2f} s"
    # Each band starts where the finer format would print its first value: 9.99 ms, 10.0 ms.
    if abs(round(ms, 2)) >= 10:
        return f"{ms:.1f} ms"
    if abs(round(ms, 3)) >= 1:
        return f"{ms:.2f} ms"
    return f"{ms:.3f} ms"


def signed_duration(seconds: float) -> str:
    """A duration with its sign: ``+13.10 s``, ``-68.1 ms``."""
    return ("+" if seconds >= 0 else "-") + duration(abs(seconds))


def number(value: float | None, spec: str = ".2f", unit: str = "") -> str:
    """``value`` formatted with ``spec`` and followed by ``unit`` (``%`` glued, a word after a
    space); ``n/a`` alone when the value is missing."""
    if value is None:
        return NA
    text = format(value, spec)
    if not unit:
        return text
    return text + unit if unit == "%" else f"{text} {unit}"


def gib_or_mib(gib: float, decimals: int = 2) -> str:
    """GiB, or MiB where GiB would print as zero (a tiny model's components and messages)."""
    if round(gib, decimals) >= 0.1:
        return f"{gib:.{decimals}f} GiB"
    return f"{gib * 1024:.{decimals}f} MiB"


def rounded_shares(values: Sequence[float | None], decimals: int = 1) -> list[float | None]:
    """Shares rounded to ``decimals`` by largest remainder: each is its value rounded down or
    up, and together they add up to the rounded sum of the values (100.0 for a breakdown), so
    a table's rows add up to the total it prints. None stays None."""
    scale = 10**decimals
    present = [(i, v * scale) for i, v in enumerate(values) if v is not None]
    units = [math.floor(x) for _, x in present]
    target = round(sum(x for _, x in present))
    by_remainder = sorted(range(len(present)), key=lambda k: units[k] - present[k][1])
    for k in by_remainder[: max(0, target - sum(units))]:
        units[k] += 1
    out: list[float | None] = [None] * len(values)
    for (i, _), unit in zip(present, units, strict=True):
        out[i] = unit / scale
    return out


def one_line(text: str) -> str:
    """The text with every run of whitespace (newlines included) as one space."""
    return " ".join(text.split())


def shorten(text: str, width: int) -> str:
    """The text on one line, cut at the last word boundary that fits ``width`` characters
    (ellipsis included) when it is longer."""
    text = one_line(text)
    if len(text) <= width:
        return text
    room = width - len(ELLIPSIS)
    cut = text.rfind(" ", 0, room + 1)
    head = text[:cut] if cut > 0 else text[:room]
    return head.rstrip(" ,;:") + ELLIPSIS


def activity_label(source: str | None, title_case: bool = False) -> str:
    """What the activity figure is called: NVML utilization (``nvml_util``: time any kernel
    ran) is "GPU Busy"; GPM's share of SMs busy is "SM activity"."""
    if source == "nvml_util":
        return "GPU Busy"
    return "SM Activity" if title_case else "SM activity"


def to_ascii(text: str) -> str:
    """Plain ASCII: symbols spelled out, anything else non-ASCII (emoji) replaced."""
    for glyph, plain in _ASCII.items():
        text = text.replace(glyph, plain)
    return text.encode("ascii", "replace").decode("ascii")
