"""The leaderboard's model x model matrices as heatmap geometry for server-drawn SVG.

The same grid as the agreement dashboard's rater grid (annotation.agreement.charts.square_grid),
with titles that speak of models and battles; the template escapes every label.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from annotation.agreement.charts import EMPTY_FILL, Heatmap, _blue, square_grid


def matrix_heatmap(
    *,
    labels: Sequence[str],
    values: NDArray[np.float64],  # (n, n)
    describe: str,
    top: float,
) -> Heatmap:
    """Row model against column model; a cell's shade is its value over `top`, grey if NaN.

    `describe` is a format string with {row}, {column} and {value}: a cell's hover title.
    """

    def cell_of(i: int, j: int) -> tuple[str, str]:
        value = float(values[i, j])
        if math.isnan(value):
            return EMPTY_FILL, f"{labels[i]} and {labels[j]}: no battles"
        fill = _blue(min(1.0, value / top) if top > 0 else 0.0)
        return fill, describe.format(row=labels[i], column=labels[j], value=value)

    return square_grid(labels=labels, cell_of=cell_of)
