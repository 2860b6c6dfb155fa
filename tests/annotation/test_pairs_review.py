"""The data browser and adjudication: every filter on pairs with known answers, keyset pages at a
pinned query count, the pair page, and a lead's decision overriding exports and training (and
never agreement), then undone."""

import json
import threading

import pytest
from django.db import connection
from django.urls import reverse
from rest_framework.test import APIClient

from annotation.models import Adjudication, Assignment, Membership
from annotation.selectors.exports import ExportOptions, export_stream
from annotation.selectors.pairs import PairFilter, pair_list, pair_page
from annotation.services.adjudication import (
    AdjudicationError,
    AlreadyAdjudicated,
    NotAdjudicated,
    adjudication_undo,
    pair_adjudicate,
)
from annotation.services.agreement import agreement_report_create
from rewardtrain.selectors import training_data_at
from tests.conftest import login
from tests.factories import (
    BatchFactory,
    JudgmentFactory,
    MembershipFactory,
    PairFactory,
    ProjectFactory,
    PromptFactory,
    ResponseFactory,
    UserFactory,
    count_as_the_engine_does,
)


def pair_with_judgments(batch, prompt, a, b, models, judgments=(), **kwargs):
    """A pair with `judgments` [(rater, choice)] and its counts kept as the engine keeps them."""
    prompt_row = PromptFactory(batch=batch, project=batch.project, text=prompt)
    pair = PairFactory(
        prompt=prompt_row,
        project=batch.project,
        batch=batch,
        response_a=ResponseFactory(prompt=prompt_row, text=a, model_name=models[0]),
        response_b=ResponseFactory(prompt=prompt_row, text=b, model_name=models[1]),
        **kwargs,
    )
    for rater, choice in judgments:
        JudgmentFactory(
            assignment__pair=pair,
            assignment__rater=rater,
            choice=choice,
            strength=2 if choice in ("a", "b") else None,
            rationale=f"{rater.username} thinks {choice}",
        )
    return count_as_the_engine_does(pair)


@pytest.fixture
def world(db):
    project = ProjectFactory(raters_per_pair=2, max_raters_per_pair=2)
    lead = UserFactory(username="lena")
    MembershipFactory(project=project, user=lead, role=Membership.Role.LEAD)
    r1, r2, r3 = (UserFactory(username=f"rater{i}") for i in (1, 2, 3))
    for rater in (r1, r2, r3):
        MembershipFactory(project=project, user=rater)
    b1 = BatchFactory(project=project, uploaded_by=lead)
    b2 = BatchFactory(project=project, uploaded_by=lead)
    pairs = {
        "open": pair_with_judgments(
            b1, "The capital of France?", "Paris", "Lyon", ("alpha", "beta"), [(r1, "a")]
        ),
        "agreed": pair_with_judgments(
            b1, "Two plus two?", "Four", "Five", ("alpha", "gamma"), [(r1, "a"), (r2, "a")]
        ),
        "disputed": pair_with_judgments(
            b2,
            "Describe a zebra.",
            "Zebras have stripes.",
            "Horses are brown.",
            ("beta", "gamma"),
            [(r1, "a"), (r2, "b")],
        ),
        "disputed2": pair_with_judgments(
            b2, "Best colour?", "Blue", "Red", ("alpha", "beta"), [(r2, "tie"), (r3, "a")]
        ),
        "gold": pair_with_judgments(
            b1, "Gold question?", "Right", "Wrong", ("alpha", "beta"), gold_choice="a"
        ),
        "settled": pair_with_judgments(
            b2, "Settled question?", "Yes", "No", ("delta", "beta"), [(r1, "a"), (r3, "b")]
        ),
    }
    pair_adjudicate(
        project=project, pair_id=pairs["settled"].id, decided_by=lead, decision="b", note="b wins"
    )
    return project, lead, (r1, r2, r3), (b1, b2), pairs


def _ids(project, **filters):
    return {p.id for p in pair_list(project=project, filters=PairFilter(**filters))}


def _names(pairs, *names):
    return {pairs[n].id for n in names}


def test_every_filter_returns_the_known_pairs(world):
    project, _, (_r1, _r2, r3), (b1, _b2), pairs = world
    assert _ids(project) == _names(pairs, *pairs)
    assert _ids(project, batch_id=b1.id) == _names(pairs, "open", "agreed", "gold")
    assert _ids(project, status="open") == _names(pairs, "open")
    assert _ids(project, status="complete") == _names(
        pairs, "agreed", "disputed", "disputed2", "settled"
    )
    assert _ids(project, status="disputed") == _names(pairs, "disputed", "disputed2")
    assert _ids(project, status="adjudicated") == _names(pairs, "settled")
    assert _ids(project, status="gold") == _names(pairs, "gold")
    assert _ids(project, model="gamma") == _names(pairs, "agreed", "disputed")
    assert _ids(project, model="delta") == _names(pairs, "settled")
    assert _ids(project, rater_id=r3.id) == _names(pairs, "disputed2", "settled")
    assert _ids(project, text="zebra") == _names(pairs, "disputed")  # prompt and response
    assert _ids(project, text="Lyon") == _names(pairs, "open")  # a response only
    assert _ids(project, status="disputed", batch_id=b1.id) == set()


def test_keyset_pages_cover_every_pair_once_at_one_query_each(world, django_assert_num_queries):
    project, *_, pairs = world
    seen, after = [], None
    while True:
        with django_assert_num_queries(1):
            page = pair_page(project=project, filters=PairFilter(), after=after, size=2)
        seen += [p.id for p in page.pairs]
        if page.next_after is None:
            break
        after = page.next_after
    assert seen == sorted(p.id for p in pairs.values())


def _trl(project):
    body = b"".join(export_stream(project=project, options=ExportOptions(format="trl")).chunks)
    return [json.loads(line) for line in body.decode().splitlines()]


def test_adjudication_overrides_export_and_training_and_undo_restores_them(world):
    project, lead, _, _, pairs = world
    rows = _trl(project)
    assert sorted((r["chosen"], r["decided_by"]) for r in rows) == [
        ("Four", "aggregation"),
        ("No", "adjudicated"),
        ("Paris", "aggregation"),
    ]
    training = training_data_at(project=project, judgment_cutoff=10**9, pair_cutoff=10**9)
    assert sorted(p.chosen for p in training.pairs) == ["Four", "No", "Paris"]

    pair_adjudicate(project=project, pair_id=pairs["disputed"].id, decided_by=lead, decision="a")
    pair_adjudicate(
        project=project, pair_id=pairs["agreed"].id, decided_by=lead, decision="exclude"
    )
    rows = _trl(project)
    assert sorted((r["chosen"], r["decided_by"]) for r in rows) == [
        ("No", "adjudicated"),
        ("Paris", "aggregation"),
        ("Zebras have stripes.", "adjudicated"),
    ]
    training = training_data_at(project=project, judgment_cutoff=10**9, pair_cutoff=10**9)
    assert sorted(p.chosen for p in training.pairs) == ["No", "Paris", "Zebras have stripes."]

    for name in ("disputed", "agreed", "settled"):
        adjudication_undo(project=project, pair_id=pairs[name].id, undone_by=lead)
    assert sorted((r["chosen"], r["decided_by"]) for r in _trl(project)) == [
        ("Four", "aggregation"),
        ("Paris", "aggregation"),
    ]
    training = training_data_at(project=project, judgment_cutoff=10**9, pair_cutoff=10**9)
    assert sorted(p.chosen for p in training.pairs) == ["Four", "Paris"]
    assert Adjudication.objects.filter(undone_at__isnull=False).count() == 3  # kept as history


def test_adjudications_never_enter_agreement(world):
    project, lead, _, _, pairs = world
    before = agreement_report_create(project=project)
    for name in ("disputed", "disputed2", "open"):
        pair_adjudicate(project=project, pair_id=pairs[name].id, decided_by=lead, decision="b")
    after = agreement_report_create(project=project)
    assert after.judgments == before.judgments
    assert after.metrics == before.metrics


def test_a_second_decision_is_refused_until_the_first_is_undone(world):
    project, lead, _, _, pairs = world
    pair_id = pairs["settled"].id
    with pytest.raises(AlreadyAdjudicated, match="already decided \\(b\\) by lena"):
        pair_adjudicate(project=project, pair_id=pair_id, decided_by=lead, decision="a")
    adjudication_undo(project=project, pair_id=pair_id, undone_by=lead)
    with pytest.raises(NotAdjudicated):
        adjudication_undo(project=project, pair_id=pair_id, undone_by=lead)
    pair_adjudicate(project=project, pair_id=pair_id, decided_by=lead, decision="a")
    with pytest.raises(AdjudicationError, match="decision: 'maybe'"):
        pair_adjudicate(project=project, pair_id=pair_id, decided_by=lead, decision="maybe")


def test_pair_page_shows_judgments_label_history_and_queue_link(world, client):
    project, lead, _, _, pairs = world
    first, _ = Assignment.objects.filter(pair=pairs["disputed"]).order_by("id")
    Assignment.objects.filter(id=first.id).update(served_by=Assignment.ServedBy.EXPLORATION)
    login(client, lead)
    url = reverse("annotation:pair-detail", args=[project.slug, pairs["disputed"].id])
    page = client.get(url).content.decode()
    assert "<td>Random share of the uncertainty order</td>" in page
    assert "<td>not recorded</td>" in page  # the second lease predates the field
    assert "Zebras have stripes." in page
    assert "beta" in page
    assert "gamma" in page
    assert "rater1 thinks a" in page
    assert "rater2 thinks b" in page
    assert "No majority" in page
    assert f"Next disputed pair (#{pairs['disputed2'].id})" in page
    settled = client.get(
        reverse("annotation:pair-detail", args=[project.slug, pairs["settled"].id])
    ).content.decode()
    assert "lena decided b is better (b wins)" in settled


def test_deciding_from_the_queue_goes_on_to_the_next_disputed_pair(world, client):
    project, lead, _, _, pairs = world
    login(client, lead)
    url = reverse("annotation:pair-adjudicate", args=[project.slug, pairs["disputed"].id])
    response = client.post(url, {"decision": "a", "then": "queue"})
    assert response["Location"] == reverse(
        "annotation:pair-detail", args=[project.slug, pairs["disputed2"].id]
    )
    url = reverse("annotation:pair-adjudicate", args=[project.slug, pairs["disputed2"].id])
    response = client.post(url, {"decision": "exclude", "then": "queue"})
    assert response["Location"].endswith("?status=disputed")
    listing = client.get(response["Location"]).content.decode()
    assert "No pairs match these filters" in listing


def test_api_lists_filters_and_adjudicates(world):
    project, lead, (r1, *_), _, pairs = world
    api = APIClient()
    api.force_authenticate(lead)
    base = f"/api/v1/projects/{project.slug}/pairs/"
    listed = api.get(base, {"status": "disputed"}).json()
    assert [row["id"] for row in listed["results"]] == sorted(
        _names(pairs, "disputed", "disputed2")
    )
    assert listed["results"][0]["model_a"] == "beta"
    assert listed["next_after"] is None
    assert api.get(base, {"status": "maybe"}).status_code == 400
    first, _ = Assignment.objects.filter(pair=pairs["disputed"]).order_by("id")
    Assignment.objects.filter(id=first.id).update(served_by=Assignment.ServedBy.EXPLORATION)
    detail = api.get(f"{base}{pairs['disputed'].id}/").json()
    assert [j["choice"] for j in detail["judgments"]] == ["a", "b"]
    assert [j["served_by"] for j in detail["judgments"]] == ["exploration", ""]
    assert detail["majority"] is None
    assert detail["status"] == "disputed"
    adjudication = f"{base}{pairs['disputed'].id}/adjudication/"
    created = api.post(adjudication, {"decision": "a", "note": "clear"}, format="json")
    assert created.status_code == 201
    assert created.json()["decided_by"] == "lena"
    assert api.post(adjudication, {"decision": "b"}, format="json").status_code == 409
    assert api.delete(adjudication).status_code == 200
    assert api.delete(adjudication).status_code == 409
    assert api.post(adjudication, {"decision": "nope"}, format="json").status_code == 400
    rater = APIClient()
    rater.force_authenticate(r1)
    assert rater.get(base).status_code == 403
    assert rater.post(adjudication, {"decision": "a"}, format="json").status_code == 403


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_two_leads_deciding_one_pair_at_once_one_decision_wins():
    project = ProjectFactory()
    leads = [UserFactory(), UserFactory()]
    pair = PairFactory(prompt__batch=BatchFactory(project=project))
    start = threading.Barrier(2)
    outcomes: list[str] = ["", ""]

    def decide(i: int) -> None:
        try:
            start.wait()
            pair_adjudicate(
                project=project, pair_id=pair.id, decided_by=leads[i], decision=("a", "b")[i]
            )
            outcomes[i] = "won"
        except AlreadyAdjudicated:
            outcomes[i] = "refused"
        finally:
            connection.close()

    threads = [threading.Thread(target=decide, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(outcomes) == ["refused", "won"]
    live = Adjudication.objects.get(pair=pair, undone_at__isnull=True)
    assert live.decided_by == leads[outcomes.index("won")]
    assert live.decision == ("a", "b")[outcomes.index("won")]
