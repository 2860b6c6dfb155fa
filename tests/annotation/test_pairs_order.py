"""The data browser's label filters (agreement below a threshold, gold failures, disagreement with
the model) and its orderings, on pairs whose votes, gold answers, flags and model scores are
planted so that every answer is known; keyset pages in each ordering at one query each; the
model's view on the pair page; the same through the API."""

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from annotation.models import Assignment, Flag, Membership
from annotation.selectors.pair_order import ORDERINGS
from annotation.selectors.pairs import PairFilter, pair_list, pair_page
from tests.conftest import login
from tests.factories import (
    AssignmentFactory,
    BatchFactory,
    JudgmentFactory,
    MembershipFactory,
    PairFactory,
    ProjectFactory,
    UserFactory,
    count_as_the_engine_does,
)

# name: (votes, gold answer, model_p_a, flags)
PLANTED = {
    "p1": (["a", "a", "b"], "", 0.1, 0),  # agreement 2/3; the model says b at 0.9
    "p2": (["a", "a", "a"], "", 0.85, 1),  # agreement 1; the model agrees
    "p3": (["b", "b", "tie"], "", 0.95, 0),  # agreement 1 (ties left out); the model says a
    "p4": (["a", "b"], "", 0.99, 0),  # a split: no majority to disagree with
    "p5": (["a", "b"], "a", None, 0),  # a gold failure; not scored
    "p6": (["b", "b"], "b", None, 0),  # gold, right
    "p7": (["tie"], "tie", None, 0),  # gold tie, right; no decisive vote
    "p8": ([], "", 0.7, 2),  # unjudged
    "p9": (["both_bad", "tie"], "", 0.5, 0),  # no decisive vote
}


@pytest.fixture
def planted(db):
    project = ProjectFactory(raters_per_pair=3)
    lead = UserFactory(username="lena")
    MembershipFactory(project=project, user=lead, role=Membership.Role.LEAD)
    raters = [UserFactory(username=f"rater{i}") for i in range(3)]
    for rater in raters:
        MembershipFactory(project=project, user=rater)
    batch = BatchFactory(project=project, uploaded_by=lead)
    pairs = {}
    for name, (votes, gold, p_a, flags) in PLANTED.items():
        pair = PairFactory(
            prompt__batch=batch,
            gold_choice=gold,
            model_p_a=p_a,
            model_uncertainty=None if p_a is None else 0.08,
            model_version=None if p_a is None else 3,
        )
        for rater, choice in zip(raters, votes, strict=False):
            JudgmentFactory(
                assignment__pair=pair,
                assignment__rater=rater,
                choice=choice,
                strength=2 if choice in ("a", "b") else None,
            )
        for rater in UserFactory.create_batch(flags):
            lease = AssignmentFactory(pair=pair, rater=rater, status=Assignment.Status.SKIPPED)
            Flag.objects.create(pair=pair, rater=rater, assignment=lease, reason="broken")
        pairs[name] = count_as_the_engine_does(pair)
    return project, lead, pairs


def _ids(project, pairs, **filters):
    found = {p.id for p in pair_list(project=project, filters=PairFilter(**filters))}
    return sorted(name for name, pair in pairs.items() if pair.id in found)


def test_label_filters_return_the_planted_pairs(planted):
    project, _, pairs = planted
    assert _ids(project, pairs, agreement_below=0.67) == ["p1", "p4", "p5"]
    assert _ids(project, pairs, agreement_below=0.5) == []
    assert _ids(project, pairs, agreement_below=1.01) == ["p1", "p2", "p3", "p4", "p5", "p6"]
    assert _ids(project, pairs, gold_failures=True) == ["p5"]
    assert _ids(project, pairs, disagrees_with_model=True) == ["p1", "p3"]
    assert _ids(project, pairs, disagrees_with_model=True, agreement_below=0.9) == ["p1"]


EXPECTED = {
    "id": ["p1", "p2", "p3", "p4", "p5", "p6", "p7", "p8", "p9"],
    "newest": ["p9", "p8", "p7", "p6", "p5", "p4", "p3", "p2", "p1"],
    # ties broken by id in the key's direction; a missing key sorts last
    "most_judgments": ["p3", "p2", "p1", "p9", "p6", "p5", "p4", "p7", "p8"],
    "lowest_agreement": ["p4", "p5", "p1", "p2", "p3", "p6", "p7", "p8", "p9"],
    "most_flags": ["p8", "p2", "p9", "p7", "p6", "p5", "p4", "p3", "p1"],
    "model_confidence": ["p4", "p3", "p1", "p2", "p8", "p9", "p7", "p6", "p5"],
    "model_disagreement": ["p3", "p1", "p2", "p9", "p8", "p7", "p6", "p5", "p4"],
}


@pytest.mark.parametrize("ordering", list(ORDERINGS))
def test_every_ordering_pages_through_every_pair_once_at_one_query_a_page(
    planted, ordering, django_assert_num_queries
):
    project, _, pairs = planted
    names = {pair.id: name for name, pair in pairs.items()}
    seen, after = [], None
    while True:
        with django_assert_num_queries(1):
            page = pair_page(
                project=project, filters=PairFilter(), ordering=ordering, after=after, size=2
            )
        seen += [names[p.id] for p in page.pairs]
        if page.next_after is None:
            break
        after = page.next_after
    assert seen == EXPECTED[ordering]


def test_orderings_apply_within_filters(planted):
    project, _, pairs = planted
    names = {pair.id: name for name, pair in pairs.items()}
    page = pair_page(
        project=project,
        filters=PairFilter(agreement_below=0.9),
        ordering="lowest_agreement",
        after=pairs["p4"].id,
    )
    assert [names[p.id] for p in page.pairs] == ["p5", "p1"]


def test_the_api_filters_and_orders_and_refuses_unknown_values(planted):
    project, lead, pairs = planted
    api = APIClient()
    api.force_authenticate(lead)
    base = f"/api/v1/projects/{project.slug}/pairs/"
    listed = api.get(base, {"disagrees_with_model": "true", "ordering": "model_disagreement"})
    assert [r["id"] for r in listed.json()["results"]] == [pairs["p3"].id, pairs["p1"].id]
    row = listed.json()["results"][0]
    assert row["agreement"] == 1.0
    assert row["model_p_a"] == 0.95
    assert row["model_version"] == 3
    gold = api.get(base, {"gold_failures": "true", "agreement_below": "0.6"}).json()
    assert [r["id"] for r in gold["results"]] == [pairs["p5"].id]
    for bad in ({"ordering": "random"}, {"agreement_below": "2"}, {"agreement_below": "x"}):
        refused = api.get(base, bad)
        assert refused.status_code == 400, bad
        assert next(iter(bad)) in refused.json()


def test_the_browser_page_filters_and_orders(planted, client):
    project, lead, pairs = planted
    login(client, lead)
    url = reverse("annotation:pairs", args=[project.slug])
    page = client.get(url, {"disagrees_with_model": "on", "ordering": "model_disagreement"})
    rows = page.context["rows"]
    assert [pair.id for pair, _ in rows] == [pairs["p3"].id, pairs["p1"].id]
    body = page.content.decode()
    assert "0.95" in body  # the model's p(a wins) in the list
    refused = client.get(url, {"agreement_below": "1.5"}).content.decode()
    assert "Agreement below: Ensure this value is less than or equal to 1" in refused


def test_pair_page_shows_the_model_view_or_says_it_is_not_scored(planted, client):
    project, lead, pairs = planted
    login(client, lead)
    scored = client.get(reverse("annotation:pair-detail", args=[project.slug, pairs["p1"].id]))
    text = " ".join(scored.content.decode().split())
    assert "Version 3 gives A a 10% chance of being better (ensemble disagreement 0.08)" in text
    assert "The raters' majority chose A" in text
    assert "the model gives B 90%" in text
    unscored = client.get(reverse("annotation:pair-detail", args=[project.slug, pairs["p5"].id]))
    assert "No published model has scored this pair yet." in unscored.content.decode()


def test_raters_reach_none_of_it(planted):
    project, _, pairs = planted
    rater = Membership.objects.get(project=project, user__username="rater0").user
    api = APIClient()
    api.force_authenticate(rater)
    base = f"/api/v1/projects/{project.slug}/pairs/"
    assert api.get(base, {"disagrees_with_model": "true"}).status_code == 403
    assert api.get(f"{base}{pairs['p1'].id}/").status_code == 403
