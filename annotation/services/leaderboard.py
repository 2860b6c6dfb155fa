"""The leaderboard, computed on demand and kept a short while in the cache.

A leaderboard of a large project takes seconds (docs/benchmarks.md), so the page, the API and
the command share one cached result per project and filters for `CACHE_SECONDS`. The cache key
also holds the project's newest judgment id and its judgment count, so a new judgment or an undo
makes the next request recompute at once; the time limit only bounds how long an unused result
takes memory. With the default (per process) cache each web process computes its own copy.

Computing also fills, once, the style counts of responses that have none yet (the only write).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from django.core.cache import cache
from django.db import transaction
from django.db.models import Count, Max

from annotation.leaderboard.fit import FitError, Leaderboard, leaderboard_fit
from annotation.leaderboard.style import style_counts
from annotation.models import Judgment, Project, Response
from annotation.selectors.agreement import AgreementScope
from annotation.selectors.leaderboard import (
    BiasLens,
    LeaderboardScope,
    bias_lens,
    leaderboard_battles,
    responses_missing_style,
)

CACHE_SECONDS = 60
DEFAULT_ROUNDS = 1000
_FILL_CHUNK = 2_000


def response_styles_fill(*, project: Project) -> int:
    """Compute the style counts of the project's named responses that lack them; how many."""
    filled = 0
    while True:
        batch = list(responses_missing_style(project=project).only("id", "text")[:_FILL_CHUNK])
        if not batch:
            return filled
        for response in batch:
            counts = style_counts(response.text)
            response.style_length = counts.length
            response.style_headers = counts.headers
            response.style_list_items = counts.list_items
            response.style_bold = counts.bold
        with transaction.atomic():
            Response.objects.bulk_update(
                batch, ["style_length", "style_headers", "style_list_items", "style_bold"]
            )
        filled += len(batch)


def bias_lens_compute(*, project: Project, scope: AgreementScope) -> BiasLens:
    """The agreement page's bias lens, after filling any missing style counts."""
    response_styles_fill(project=project)
    return bias_lens(project=project, scope=scope)


def _cache_key(project: Project, scope: LeaderboardScope, style_control: bool, rounds: int) -> str:
    state = Judgment.objects.filter(pair__project=project).aggregate(last=Max("id"), n=Count("id"))
    raw = json.dumps(
        [project.id, scope.as_json(), style_control, rounds, state["last"], state["n"]],
        sort_keys=True,
    )
    return "leaderboard:" + hashlib.sha256(raw.encode()).hexdigest()


def leaderboard_compute(
    *,
    project: Project,
    scope: LeaderboardScope,
    style_control: bool = False,
    rounds: int = DEFAULT_ROUNDS,
    use_cache: bool = True,
) -> Leaderboard | None:
    """The project's leaderboard in `scope`, or None when fewer than two models battled."""
    key = _cache_key(project, scope, style_control, rounds) if use_cache else ""
    cached: Leaderboard | None = cache.get(key) if use_cache else None
    if cached is not None:
        return cached
    if style_control:
        response_styles_fill(project=project)
    battles = leaderboard_battles(project=project, scope=scope)
    try:
        board = leaderboard_fit(battles, rounds=rounds, style_control=style_control)
    except FitError:
        return None
    if use_cache:
        cache.set(key, board, CACHE_SECONDS)
    return board


def leaderboard_as_json(board: Leaderboard | None, *, scope: LeaderboardScope) -> dict[str, Any]:
    """The API's and `manage.py leaderboard --json`'s shape (docs/leaderboard.md); `board` None
    (no two models battled) gives the same keys, empty."""
    if board is None:
        board = Leaderboard(ratings=[], battles=0, rounds=0, clusters=0)
    return {
        "models": [
            {
                "model": row.model,
                "rating": round(row.rating, 2),
                "ci_low": round(row.ci_low, 2),
                "ci_high": round(row.ci_high, 2),
                "rank": row.rank,
                "rank_ci": list(row.rank_ci),
                "wins": row.wins,
                "losses": row.losses,
                "ties": row.ties,
                "battles": row.battles,
            }
            for row in board.ratings
        ],
        "battles": board.battles,
        "style": {
            "controlled": bool(board.style),
            "coefficients": [
                {
                    "name": effect.name,
                    "coefficient": round(effect.coefficient, 4),
                    "ci_low": round(effect.ci_low, 4),
                    "ci_high": round(effect.ci_high, 4),
                    "twice_as_much_wins": round(effect.twice_as_much_wins, 4),
                }
                for effect in board.style
            ],
        },
        "bootstrap": {"rounds": board.rounds, "clusters": board.clusters, "unit": "prompt"},
        "win_probability": {
            "models": board.order,
            "matrix": [[round(float(p), 4) for p in row] for row in board.win_probability],
        },
        "scope": scope.as_json(),
    }
