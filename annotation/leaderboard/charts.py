"""The leaderboard's model x model matrices as heatmap geometry for server-drawn SVG.

Same shapes as the agreement dashboard's rater grid (annotation.agreement.charts), with titles
that speak of models and battles; the template escapes every label.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from annotation.agreement.charts import Cell, Heatmap, Tick, _blue

EMPTY = "#eaeef2"


def matrix_heatmap(
    *,
    labels: Sequence[str],
    values: NDArray[np.float64],  # (n, n)
    describe: str,
    top: float,
    cell: float = 22.0,
    label_room: float = 140.0,
) -> Heatmap:
    """Row model against column model; a cell's shade is its value over `top`, grey if NaN.

    `describe` is a format string with {row}, {column} and {value}: a cell's hover title.
    """
    n = len(labels)
    cells = []
    for i in range(n):
        for j in range(n):
            value = float(values[i, j])
            if i == j:
                continue
            if math.isnan(value):
                fill, title = EMPTY, f"{labels[i]} and {labels[j]}: no battles"
            else:
                fill = _blue(min(1.0, value / top) if top > 0 else 0.0)
                title = describe.format(row=labels[i], column=labels[j], value=value)
            cells.append(
                Cell(x=label_room + j * cell, y=label_room + i * cell, fill=fill, title=title)
            )
    ticks = [Tick(label_room + (i + 0.5) * cell, label) for i, label in enumerate(labels)]
    return Heatmap(
        size=round(label_room + n * cell + 4),
        cell=cell,
        offset=label_room,
        labels=ticks,
        cells=cells,
    )
