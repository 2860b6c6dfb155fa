"""Screen terms (left/right) against pair terms (a/b) under `swapped`, tested both ways."""

import numpy as np
import pytest

from annotation.agreement.metrics import CHOICES, NOT_DECISIVE, left_chosen
from annotation.models import Pair, Response, shown_sides, to_pair_terms, to_screen_terms

SHOWN = ("left", "right", "tie", "both_bad")


@pytest.mark.parametrize(
    ("shown", "swapped", "stored"),
    [
        ("left", False, "a"),
        ("right", False, "b"),
        ("left", True, "b"),
        ("right", True, "a"),
        ("tie", False, "tie"),
        ("tie", True, "tie"),
        ("both_bad", False, "both_bad"),
        ("both_bad", True, "both_bad"),
    ],
)
def test_screen_to_pair_and_back(shown, swapped, stored):
    assert to_pair_terms(shown, swapped) == stored
    assert to_screen_terms(stored, swapped) == shown


@pytest.mark.parametrize("swapped", [False, True])
def test_the_two_mappings_are_inverses(swapped):
    assert [to_screen_terms(to_pair_terms(s, swapped), swapped) for s in SHOWN] == list(SHOWN)
    assert [to_pair_terms(to_screen_terms(c, swapped), swapped) for c in CHOICES] == list(CHOICES)


def test_the_array_form_agrees_with_to_screen_terms():
    codes = np.array([i for i in range(len(CHOICES)) for _ in (False, True)])
    swapped = np.array([s for _ in CHOICES for s in (False, True)])
    expected = [
        {"left": 1, "right": 0}.get(to_screen_terms(CHOICES[c], bool(s)), NOT_DECISIVE)
        for c, s in zip(codes, swapped, strict=True)
    ]
    assert left_chosen(codes, swapped).tolist() == expected


@pytest.mark.parametrize("swapped", [False, True])
def test_shown_sides_puts_the_chosen_response_where_to_screen_terms_says(swapped):
    a, b = Response(text="A"), Response(text="B")
    left, right = shown_sides(Pair(response_a=a, response_b=b), swapped)
    assert {to_screen_terms("a", swapped): "A", to_screen_terms("b", swapped): "B"} == {
        "left": left.text,
        "right": right.text,
    }
