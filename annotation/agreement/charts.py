"""Geometry of the agreement dashboard's SVG charts, computed on the server.

Each function returns plain numbers and label strings; the template draws the ``<svg>`` elements
from them, so every label (usernames included) goes through Django's autoescaping and no chart
library or inline script is needed. Coordinates are in the SVG's own units (its viewBox).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

# Plot margins inside the viewBox: room for tick labels on the left and below.
LEFT, RIGHT, TOP, BOTTOM = 48, 16, 12, 40


@dataclass(frozen=True)
class Tick:
    position: float  # x for the x axis, y for the y axis
    label: str


@dataclass(frozen=True)
class Series:
    name: str
    css_class: str  # the stroke colour comes from static/css/agreement.css
    points: str  # "x,y x,y ..." for <polyline points=...>
    dots: list[tuple[float, float]]


@dataclass(frozen=True)
class Mark:
    """A point drawn as a dot whose hover title gives its exact value."""

    x: float
    y: float
    title: str
    hollow: bool = False  # drawn hollow: a value that rests on too little to be read alone


@dataclass(frozen=True)
class LineChart:
    width: int
    height: int
    series: list[Series]
    x_ticks: list[Tick]
    y_ticks: list[Tick]
    plot_left: float = LEFT
    plot_right: float = 0.0
    plot_top: float = TOP
    plot_bottom: float = 0.0
    marks: list[Mark] = field(default_factory=list)
    reference: Tick | None = None  # a dashed horizontal line at `position`, e.g. a ceiling


@dataclass(frozen=True)
class Axis:
    """A fixed value range; values outside it are drawn at its ends."""

    low: float
    high: float
    ticks: Sequence[tuple[float, str]] = ()  # (value, label)

    def fraction(self, value: float) -> float:
        span = self.high - self.low or 1.0
        return (min(max(value, self.low), self.high) - self.low) / span


def _nice_range(low: float, high: float) -> tuple[float, float]:
    """Agreement coefficients live in [-1, 1]; show [min(0, low), 1] rounded out to tenths."""
    return min(0.0, math.floor(low * 10) / 10), max(1.0, math.ceil(high * 10) / 10)


def line_chart(
    *,
    times: Sequence[datetime],
    series: Sequence[tuple[str, str, Sequence[float | None]]],
    width: int = 720,
    height: int = 260,
) -> LineChart:
    """Lines over time: `series` holds (name, css class, one value or None per time)."""
    right, bottom = width - RIGHT, height - BOTTOM
    present = [v for _, _, values in series for v in values if v is not None]
    low, high = _nice_range(min(present, default=0.0), max(present, default=1.0))
    start = times[0].timestamp() if times else 0.0
    span = (times[-1].timestamp() - start) if len(times) > 1 else 1.0

    def x_of(moment: datetime) -> float:
        if len(times) == 1:
            return (LEFT + right) / 2
        return LEFT + (moment.timestamp() - start) / span * (right - LEFT)

    def y_of(value: float) -> float:
        return bottom - (value - low) / (high - low) * (bottom - TOP)

    drawn = []
    for name, css_class, values in series:
        dots = [
            (round(x_of(t), 1), round(y_of(v), 1))
            for t, v in zip(times, values, strict=True)
            if v is not None
        ]
        drawn.append(Series(name, css_class, " ".join(f"{x},{y}" for x, y in dots), dots))
    steps = round((high - low) / 0.2)
    y_ticks = [
        Tick(round(y_of(low + 0.2 * i), 1), f"{low + 0.2 * i:.1f}") for i in range(steps + 1)
    ]
    x_ticks = []
    if times:
        chosen = {0, len(times) - 1, (len(times) - 1) // 2}
        x_ticks = [
            Tick(round(x_of(times[i]), 1), times[i].strftime("%Y-%m-%d %H:%M"))
            for i in sorted(chosen)
        ]
    return LineChart(
        width=width,
        height=height,
        series=drawn,
        x_ticks=x_ticks,
        y_ticks=y_ticks,
        plot_right=right,
        plot_bottom=bottom,
    )


def value_chart(
    *,
    points: Sequence[tuple[float, float, str, bool]],
    x_axis: Axis,
    y_axis: Axis,
    reference: tuple[float, str] | None = None,
    width: int = 360,
    height: int = 170,
) -> LineChart:
    """One line over fixed axes: `points` holds (x, y, hover title, hollow), each drawn as a
    Mark; `reference` is a (y, label) horizontal line."""
    right, bottom = width - RIGHT, height - BOTTOM

    def x_of(value: float) -> float:
        return round(LEFT + x_axis.fraction(value) * (right - LEFT), 1)

    def y_of(value: float) -> float:
        return round(bottom - y_axis.fraction(value) * (bottom - TOP), 1)

    marks = [Mark(x_of(x), y_of(y), title, hollow) for x, y, title, hollow in points]
    line = " ".join(f"{mark.x},{mark.y}" for mark in marks)
    return LineChart(
        width=width,
        height=height,
        series=[Series("", "line", line, [(mark.x, mark.y) for mark in marks])],
        x_ticks=[Tick(x_of(value), label) for value, label in x_axis.ticks],
        y_ticks=[Tick(y_of(value), label) for value, label in y_axis.ticks],
        plot_right=right,
        plot_bottom=bottom,
        marks=marks,
        reference=None if reference is None else Tick(y_of(reference[0]), reference[1]),
    )


@dataclass(frozen=True)
class Cell:
    x: float
    y: float
    fill: str
    title: str


@dataclass(frozen=True)
class RaterLabel:
    text: str
    row_x: float  # the row label's right end, left of the grid
    row_y: float
    column_x: float  # the column label's start, above the grid (drawn rotated by -60 degrees)
    column_y: float


@dataclass(frozen=True)
class Heatmap:
    """Drawn at its own size in px (`width` x `height`), never stretched to the page: the grid
    aims at HEATMAP_SIDE whatever the number of raters, and the label room is measured from the
    longest label, so three raters do not fill the screen and no label is clipped."""

    width: float
    height: float
    cell: float
    font_size: float
    labels: list[RaterLabel]
    cells: list[Cell] = field(default_factory=list)


HEATMAP_SIDE = 480.0  # px of the whole grid
HEATMAP_CELL = (9.0, 36.0)  # px: the smallest cell still holds a readable label; the largest
CHAR_WIDTH = 0.62  # a system-ui character's width per unit of font size, a generous average
COLUMN_ANGLE = math.radians(60)  # column labels rise at this angle from the grid's top edge


def _blue(share: float) -> str:
    """From near white (0) to dark blue (1): one hue, so the scale reads without a legend key."""
    light, dark = (239, 246, 255), (8, 48, 107)
    r, g, b = (round(a + (z - a) * share) for a, z in zip(light, dark, strict=True))
    return f"#{r:02x}{g:02x}{b:02x}"


def label_width(text: str, font_size: float) -> float:
    """An upper estimate of a label's drawn width: the layout reserves this much room."""
    return len(text) * font_size * CHAR_WIDTH


def heatmap(
    *,
    labels: Sequence[str],
    agreement: Sequence[Sequence[float | None]],
    overlap: Sequence[Sequence[int]],
) -> Heatmap:
    """A rater x rater grid; a cell's shade is the share of shared pairs the two agreed on."""

    def cell_of(i: int, j: int) -> tuple[str, str]:
        value = agreement[i][j]
        if value is None:
            return EMPTY_FILL, f"{labels[i]} and {labels[j]}: no pairs in common"
        text = f"{value:.2f} on {overlap[i][j]} shared pairs"
        return _blue(value), f"{labels[i]} and {labels[j]}: {text}"

    return square_grid(labels=labels, cell_of=cell_of)


EMPTY_FILL = "#eaeef2"  # a cell with nothing to show


def square_grid(
    *, labels: Sequence[str], cell_of: Callable[[int, int], tuple[str, str]]
) -> Heatmap:
    """A label x label grid laid out at its own size; `cell_of(i, j)` gives the fill and hover
    title of row i, column j (the diagonal is left empty). The rater grid and the leaderboard's
    model matrices share it."""
    n = len(labels)
    low, high = HEATMAP_CELL
    cell = round(max(low, min(high, HEATMAP_SIDE / max(n, 1))), 1)
    font_size = round(max(8.0, min(12.0, cell * 0.8)), 1)
    longest = max((label_width(label, font_size) for label in labels), default=0.0) + 6
    left = longest
    top = longest * math.sin(COLUMN_ANGLE) + font_size
    # The last column's label leans right past the grid by its run along the x axis.
    right = longest * math.cos(COLUMN_ANGLE) - cell / 2 + font_size
    cells = []
    for i in range(n):
        for j in range(n):
            if i == j:
                continue
            fill, title = cell_of(i, j)
            cells.append(
                Cell(
                    x=round(left + j * cell, 1), y=round(top + i * cell, 1), fill=fill, title=title
                )
            )
    placed = [
        RaterLabel(
            text=label,
            row_x=round(left - 4, 1),
            row_y=round(top + (i + 0.5) * cell, 1),
            column_x=round(left + (i + 0.5) * cell, 1),
            column_y=round(top - 4, 1),
        )
        for i, label in enumerate(labels)
    ]
    return Heatmap(
        width=round(left + n * cell + max(right, 4), 1),
        height=round(top + n * cell + 4, 1),
        cell=cell,
        font_size=font_size,
        labels=placed,
        cells=cells,
    )


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    label: str
    count: int

    @property
    def center(self) -> float:
        """Where the bar's label goes: centred under it, not under its edge."""
        return round(self.x + self.width / 2, 1)


@dataclass(frozen=True)
class Histogram:
    width: int
    height: int
    bars: list[Bar]
    y_ticks: list[Tick]
    plot_bottom: float


def histogram(
    *, buckets: Sequence[tuple[str, int]], width: int = 720, height: int = 240
) -> Histogram:
    """Vertical bars, one per (label, count), with a count axis."""
    right, bottom = width - RIGHT, height - BOTTOM
    most = max((count for _, count in buckets), default=0) or 1
    slot = (right - LEFT) / max(len(buckets), 1)
    bars = []
    for i, (label, count) in enumerate(buckets):
        tall = count / most * (bottom - TOP)
        bars.append(
            Bar(
                x=round(LEFT + i * slot + slot * 0.1, 1),
                y=round(bottom - tall, 1),
                width=round(slot * 0.8, 1),
                height=round(tall, 1),
                label=label,
                count=count,
            )
        )
    y_ticks = [
        Tick(round(bottom - f * (bottom - TOP), 1), f"{round(most * f):,}") for f in (0, 0.5, 1)
    ]
    return Histogram(width=width, height=height, bars=bars, y_ticks=y_ticks, plot_bottom=bottom)
