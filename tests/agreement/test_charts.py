"""The dashboard's chart geometry (annotation.agreement.charts) from 2 to 200 raters: sized to
be read, never huge, and no label outside the drawing."""

import math

import pytest

from annotation.agreement.charts import COLUMN_ANGLE, heatmap, histogram, label_width
from annotation.selectors.agreement import HEATMAP_RATERS


def _grid(n: int, name_length: int = 14):
    labels = [f"r{i:02d}".ljust(name_length, "x") for i in range(n)]
    agreement = [[None if i == j else 0.5 for j in range(n)] for i in range(n)]
    overlap = [[0 if i == j else 3 for j in range(n)] for i in range(n)]
    return heatmap(labels=labels, agreement=agreement, overlap=overlap)


@pytest.mark.parametrize("n", [2, 3, 10, 30, HEATMAP_RATERS])
def test_every_rater_label_lies_inside_the_heatmap(n):
    grid = _grid(n)
    for label in grid.labels:
        width = label_width(label.text, grid.font_size)
        assert label.row_x - width >= 0
        assert label.column_x + width * math.cos(COLUMN_ANGLE) <= grid.width
        assert label.column_y - width * math.sin(COLUMN_ANGLE) - grid.font_size >= 0
    for cell in grid.cells:
        assert cell.x + grid.cell <= grid.width
        assert cell.y + grid.cell <= grid.height


@pytest.mark.parametrize("n", [2, 3, 10, 30, HEATMAP_RATERS])
def test_the_heatmap_keeps_a_readable_size_whatever_the_number_of_raters(n):
    grid = _grid(n)
    assert grid.width <= 760
    assert grid.height <= 760
    assert grid.cell >= 9
    assert grid.font_size >= 8


def test_three_raters_make_a_small_heatmap_not_a_screenful():
    grid = _grid(3)
    assert grid.width < 320
    assert grid.height < 320


def test_histogram_labels_sit_under_the_middle_of_their_bars():
    buckets = [(f"{i / 10:.1f}\u2013{(i + 1) / 10:.1f}", i) for i in range(10)]
    chart = histogram(buckets=buckets)
    slot = chart.bars[1].x - chart.bars[0].x
    for bar in chart.bars:
        assert bar.center == pytest.approx(bar.x + bar.width / 2, abs=0.1)
        # The label (10 px type) fits within its slot, so neighbours never overlap.
        assert label_width(bar.label, 10) < slot
