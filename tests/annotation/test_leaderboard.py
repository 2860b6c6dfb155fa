"""The leaderboard over real judgments: which battles count, the page, its CSV, the API, the
command, and the cache."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta

import pytest
from django.core.cache import cache
from django.core.management import call_command
from django.utils import timezone

from annotation.leaderboard.style import style_counts
from annotation.models import Judgment, Response
from annotation.selectors.leaderboard import LeaderboardScope, leaderboard_battles
from annotation.services.leaderboard import leaderboard_compute, response_styles_fill
from tests.conftest import login
from tests.factories import (
    BatchFactory,
    JudgmentFactory,
    PairFactory,
    PromptFactory,
    ResponseFactory,
    UserFactory,
)

ROUNDS = 50


@pytest.fixture(autouse=True)
def _fresh_cache():
    cache.clear()


def battle(batch, model_a, model_b, choices, *, text_a="short", text_b="short", **pair_fields):
    """One pair of `model_a` against `model_b` on a new prompt, judged once per choice."""
    prompt = PromptFactory(batch=batch)
    pair = PairFactory(
        prompt=prompt,
        response_a=ResponseFactory(
            prompt=prompt, model_name=model_a, text=f"{text_a} (a{prompt.id})"
        ),
        response_b=ResponseFactory(
            prompt=prompt, model_name=model_b, text=f"{text_b} (b{prompt.id})"
        ),
        **pair_fields,
    )
    for choice, criteria in choices:
        strength = 2 if choice in ("a", "b") else None
        JudgmentFactory(
            assignment__pair=pair, choice=choice, strength=strength, criteria=criteria or {}
        )
    return pair


def plain(*choices):
    return [(choice, None) for choice in choices]


@pytest.fixture
def arena(project):
    """Three models: strong beats mid and weak, mid beats weak, with some ties and both-bad."""
    batch = BatchFactory(project=project)
    for _ in range(6):
        battle(batch, "strong", "mid", plain("a", "a", "b"))
        battle(batch, "mid", "weak", plain("a", "tie", "a"))
        battle(batch, "weak", "strong", plain("b", "b", "both_bad"))
    return batch


def test_each_judgment_is_a_battle_and_a_tie_is_half_a_win(project, arena):
    battles = leaderboard_battles(project=project, scope=LeaderboardScope())
    assert sorted(battles.models) == ["mid", "strong", "weak"]
    assert battles.count.sum() == 54
    assert battles.ties.sum() == 6 + 6  # the ties, and both-bad counted as a tie
    mid = battles.models.index("mid")
    mid_vs_weak = battles.model_a == mid
    assert battles.wins_a[mid_vs_weak].sum() == 6 * 2.5
    assert battles.n_clusters == 18


def test_both_bad_can_be_left_out(project, arena):
    battles = leaderboard_battles(project=project, scope=LeaderboardScope(both_bad="exclude"))
    assert battles.count.sum() == 48
    assert battles.ties.sum() == 6


def test_gold_and_seed_pairs_and_unnamed_models_are_left_out_unless_asked(project, arena):
    battle(arena, "strong", "weak", plain("a"), gold_choice="a")
    battle(arena, "strong", "weak", plain("a"), seed_choice="a")
    battle(arena, "strong", "", plain("a"))
    assert leaderboard_battles(project=project, scope=LeaderboardScope()).count.sum() == 54
    known = LeaderboardScope(include_known=True)
    assert leaderboard_battles(project=project, scope=known).count.sum() == 56


def test_a_criterion_rates_on_that_criterions_choices(project):
    project.criteria = ["safety"]
    project.save(update_fields=["criteria"])
    batch = BatchFactory(project=project)
    for _ in range(5):
        battle(batch, "careful", "reckless", [("b", {"safety": "a"}), ("b", {"safety": "a"})])
    overall = leaderboard_compute(project=project, scope=LeaderboardScope(), rounds=ROUNDS)
    safety = leaderboard_compute(
        project=project, scope=LeaderboardScope(criterion="safety"), rounds=ROUNDS
    )
    assert overall.ratings[0].model == "reckless"
    assert safety.ratings[0].model == "careful"


def test_batch_rater_and_dates_filter_the_battles(project, arena):
    other = BatchFactory(project=project)
    battle(other, "weak", "strong", plain("a", "a"))
    assert (
        leaderboard_battles(project=project, scope=LeaderboardScope(batch_id=other.id)).count.sum()
        == 2
    )
    one = Judgment.objects.filter(pair__batch=other).first()
    scope = LeaderboardScope(rater_id=one.rater_id)
    assert leaderboard_battles(project=project, scope=scope).count.sum() == 1
    Judgment.objects.filter(pair__batch=other).update(
        created_at=timezone.now() - timedelta(days=10)
    )
    recent = LeaderboardScope(since=timezone.now().date() - timedelta(days=1))
    assert leaderboard_battles(project=project, scope=recent).count.sum() == 54


def test_style_counts_follow_lmarena_and_skip_code():
    text = (
        "# Title\n\nSome **bold** and __more__.\n\n- one\n* two\n1. three\n"
        "```\n# not a header\n- no\n```"
    )
    counts = style_counts(text)
    assert (counts.headers, counts.list_items, counts.bold) == (1, 3, 2)
    assert counts.length == len(text)


def test_style_counts_are_filled_once_for_named_responses(project, arena):
    assert Response.objects.filter(style_length__isnull=True).count() == 36
    assert response_styles_fill(project=project) == 36
    assert response_styles_fill(project=project) == 0
    response = Response.objects.first()
    assert response.style_length == len(response.text)


def test_style_control_finds_that_the_longer_answer_wins(project):
    batch = BatchFactory(project=project)
    long_text = "A long and careful answer, " * 10
    for number in range(40):
        # Each model writes the long answer half the time, and the long answer wins.
        a_long = number % 2 == 0
        battle(
            batch,
            "m1" if number % 4 < 2 else "m2",
            "m2" if number % 4 < 2 else "m1",
            plain("a" if a_long else "b", "a" if a_long else "b"),
            text_a=long_text if a_long else "Short.",
            text_b="Short." if a_long else long_text,
        )
    board = leaderboard_compute(
        project=project, scope=LeaderboardScope(), style_control=True, rounds=ROUNDS
    )
    length = next(effect for effect in board.style if effect.name == "length")
    assert length.coefficient > 1
    assert length.twice_as_much_wins > 0.6


def test_a_lead_sees_the_table_the_matrices_and_a_reading(client, project, lead, arena):
    response = login(client, lead).get(f"/p/{project.slug}/leaderboard/")
    assert response.status_code == 200
    page = response.content.decode()
    assert page.index(">strong<") < page.index(">mid<") < page.index(">weak<")
    assert "strong leads with" in page
    assert "Win rate, model against model" in page
    assert page.count("<svg") == 2
    assert 'aria-current="page">Leaderboard' in page


def test_model_names_are_escaped_on_the_page(client, project, lead):
    batch = BatchFactory(project=project)
    for _ in range(3):
        battle(batch, "<script>x</script>", "plain", plain("a", "b", "a"))
    page = login(client, lead).get(f"/p/{project.slug}/leaderboard/").content.decode()
    assert "<script>x</script>" not in page
    assert "&lt;script&gt;x&lt;/script&gt;" in page


def test_a_rater_may_not_see_the_leaderboard(client, project, rater, arena):
    assert login(client, rater).get(f"/p/{project.slug}/leaderboard/").status_code == 403


def test_the_csv_holds_one_row_per_model_and_guards_formulas(client, project, lead, arena):
    battle(arena, "=cmd()", "weak", plain("a", "a"))
    response = login(client, lead).get(f"/p/{project.slug}/leaderboard.csv?batch={arena.id}")
    assert response["Content-Disposition"] == 'attachment; filename="alpha-leaderboard.csv"'
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert {row["model"] for row in rows} == {"strong", "mid", "weak", "'=cmd()"}
    assert rows[0]["rank"] == "1"
    assert sum(int(row["battles"]) for row in rows) == 2 * 56


def test_the_api_answers_the_documented_shape(client, project, lead, arena):
    login(client, lead)
    body = client.get(f"/api/v1/projects/{project.slug}/leaderboard/?style_control=true").json()
    assert set(body) == {
        "models", "battles", "style", "davidson", "bootstrap", "win_probability", "scope",
    }  # fmt: skip
    first = body["models"][0]
    assert set(first) == {
        "model", "rating", "ci_low", "ci_high", "rank", "rank_ci",
        "wins", "losses", "ties", "battles", "davidson_rating",
    }  # fmt: skip
    assert first["davidson_rating"] is None  # Davidson's model has no style covariates
    assert body["davidson"] == {"tie_parameter": None}
    assert first["model"] == "strong"
    assert body["battles"] == 54
    assert body["style"]["controlled"] is True
    assert [c["name"] for c in body["style"]["coefficients"]] == [
        "length", "headers", "list_items", "bold",
    ]  # fmt: skip
    assert body["bootstrap"] == {"rounds": 1000, "clusters": 18, "unit": "prompt"}


def test_the_raw_ratings_come_with_davidsons_beside_them(client, project, lead, arena):
    battle(arena, "strong", "weak", plain("tie", "tie"))
    login(client, lead)
    body = client.get(f"/api/v1/projects/{project.slug}/leaderboard/").json()
    assert body["davidson"]["tie_parameter"] > 0
    davidson = {row["model"]: row["davidson_rating"] for row in body["models"]}
    assert davidson["strong"] > davidson["mid"] > davidson["weak"]
    page = client.get(f"/p/{project.slug}/leaderboard/").content.decode()
    assert '<th scope="col" class="num">Davidson rating</th>' in page


def test_the_api_says_which_filter_is_wrong(client, project, lead, other_project):
    login(client, lead)
    other_batch = BatchFactory(project=other_project)
    answer = client.get(f"/api/v1/projects/{project.slug}/leaderboard/?batch={other_batch.id}")
    assert answer.status_code == 400
    assert "batch" in answer.json()
    answer = client.get(f"/api/v1/projects/{project.slug}/leaderboard/?criterion=nope")
    assert answer.status_code == 400
    assert "criterion" in answer.json()


def test_an_empty_project_has_an_empty_leaderboard(client, project, lead):
    login(client, lead)
    body = client.get(f"/api/v1/projects/{project.slug}/leaderboard/").json()
    assert body["models"] == []
    page = client.get(f"/p/{project.slug}/leaderboard/").content.decode()
    assert "No leaderboard yet" in page


def test_a_new_judgment_is_counted_at_once_despite_the_cache(project, arena):
    before = leaderboard_compute(project=project, scope=LeaderboardScope(), rounds=ROUNDS)
    battle(arena, "weak", "strong", plain("a"))
    after = leaderboard_compute(project=project, scope=LeaderboardScope(), rounds=ROUNDS)
    assert after.battles == before.battles + 1


def test_the_command_prints_the_table_or_the_api_json(project, arena):
    out = io.StringIO()
    call_command("leaderboard", project.slug, "--rounds", "50", stdout=out)
    assert "strong leads with" in out.getvalue()
    out = io.StringIO()
    call_command("leaderboard", project.slug, "--json", "--rounds", "50", stdout=out)
    body = json.loads(out.getvalue())
    assert [m["model"] for m in body["models"]] == ["strong", "mid", "weak"]


def test_the_command_says_what_is_wrong(project):
    with pytest.raises(Exception, match="no criterion 'nope'"):
        call_command("leaderboard", project.slug, "--criterion", "nope")


# --- the bias lens on the agreement page ---------------------------------------------------------


def test_a_rater_who_always_picks_the_longer_response_is_flagged(client, project, lead):
    batch = BatchFactory(project=project)
    long_text = "A long answer with many words. " * 8
    fair = [UserFactory(username=f"fair{i}") for i in range(3)]
    verbose_fan = UserFactory(username="fan")
    for number in range(30):
        a_long = number % 2 == 0
        pair = battle(
            batch,
            "m1",
            "m2",
            [],
            text_a=long_text if a_long else "Short.",
            text_b="Short." if a_long else long_text,
        )
        # The fan always takes the longer one; the fair raters always take A, long or not.
        for rater in fair:
            JudgmentFactory(assignment__pair=pair, assignment__rater=rater, choice="a")
        JudgmentFactory(
            assignment__pair=pair, assignment__rater=verbose_fan, choice="a" if a_long else "b"
        )
    login(client, lead)
    response = client.get(f"/p/{project.slug}/agreement/lean/", headers={"HX-Request": "true"})
    lens = response.context["lens"]
    assert lens.length.judgments == 120
    assert lens.length.rate == pytest.approx(75 / 120)
    assert lens.flagged == ["fan"]
    page = response.content.decode()
    assert page.lstrip().startswith('<section id="bias-lens"')
    assert "length lean far from the project" in page


def test_the_agreement_page_loads_the_lens_separately(client, project, lead):
    page = login(client, lead).get(f"/p/{project.slug}/agreement/").content.decode()
    assert f'hx-get="/p/{project.slug}/agreement/lean/"' in page


def test_the_page_needs_few_queries_however_many_judgments(
    client, project, lead, arena, django_assert_max_num_queries
):
    for _ in range(20):
        battle(BatchFactory(project=project), "strong", "weak", plain("a", "a", "b"))
    response_styles_fill(project=project)  # done once, by the first style-controlled request
    login(client, lead)
    with django_assert_max_num_queries(10):
        assert client.get(f"/p/{project.slug}/leaderboard/?style_control=on").status_code == 200
