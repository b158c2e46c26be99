"""The time axis shared by the HTML report's SVG figures (one scale, so that the timeline and
the charts under it line up), and how SVG text and numbers are written."""

from __future__ import annotations

import html
import math
from dataclasses import dataclass

WIDTH = 1200
"""Every figure's viewBox width; the page scales them together."""
GUTTER = 190
"""Left margin holding lane names and chart scales."""
RIGHT = 12
PLOT_WIDTH = WIDTH - GUTTER - RIGHT
MAX_TICKS = 12


def esc(text: str) -> str:
    """Text for an element or an attribute value."""
    return html.escape(text, quote=True)


def px(value: float) -> str:
    """A coordinate to 0.1 px, without a trailing ``.0`` (pages stay small)."""
    text = f"{value:.1f}"
    return text[:-2] if text.endswith(".0") else text


def seconds_label(seconds: float, step: float) -> str:
    """A tick's label: as many decimals as the tick step needs."""
    decimals = max(0, -math.floor(math.log10(step))) if step < 1 else 0
    return f"{seconds:.{decimals}f} s"


@dataclass(frozen=True)
class Axis:
    """Run time (ns since ``origin_ns``) to x in the plot area."""

    origin_ns: int
    duration_ns: int

    def x(self, t_ns: int) -> float:
        return GUTTER + PLOT_WIDTH * (t_ns - self.origin_ns) / self.duration_ns

    def width(self, start_ns: int, end_ns: int) -> float:
        return PLOT_WIDTH * (end_ns - start_ns) / self.duration_ns

    def ns_per_px(self) -> float:
        return self.duration_ns / PLOT_WIDTH

    def ticks(self) -> list[tuple[float, str]]:
        """(x, label) of round times: steps of 1, 2 or 5 x 10^k seconds, at most
        ``MAX_TICKS`` of them."""
        total = self.duration_ns / 1e9
        step = 10.0 ** math.floor(math.log10(total / MAX_TICKS)) if total > 0 else 1.0
        for factor in (1, 2, 5, 10):
            if total / (step * factor) <= MAX_TICKS:
                step *= factor
                break
        count = int(total / step + 1e-9)
        return [
            (self.x(self.origin_ns + round(k * step * 1e9)), seconds_label(k * step, step))
            for k in range(count + 1)
        ]

    def grid(self, height: float) -> str:
        """Vertical lines at the ticks, the whole height of a figure."""
        lines = "".join(f'<path d="M{px(x)} 0V{px(height)}"/>' for x, _ in self.ticks())
        return f'<g class="grid">{lines}</g>'
