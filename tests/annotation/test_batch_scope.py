"""The one check that named batches belong to the project: agreement, leaderboard and export
scopes (pages, API and commands) all ask batches_outside."""

from django.db import connection
from django.test.utils import CaptureQueriesContext

from annotation.selectors.batches import batches_outside
from tests.factories import BatchFactory, UserFactory


def test_batches_outside_names_foreign_and_missing_ids_in_order(project, other_project):
    ours = BatchFactory(project=project, uploaded_by=UserFactory())
    theirs = BatchFactory(project=other_project, uploaded_by=UserFactory())
    missing = theirs.id + 1000
    got = batches_outside(project=project, batch_ids=[missing, ours.id, theirs.id, missing, None])
    assert got == [missing, theirs.id]
    assert batches_outside(project=other_project, batch_ids=[theirs.id]) == []


def test_no_batch_named_costs_no_query(project):
    with CaptureQueriesContext(connection) as queries:
        assert batches_outside(project=project, batch_ids=[None]) == []
        assert batches_outside(project=project, batch_ids=()) == []
    assert len(queries) == 0


def test_an_id_past_64_bits_is_outside_without_reaching_the_database(project):
    ours = BatchFactory(project=project, uploaded_by=UserFactory())
    huge = 669258425238476819526439665664  # what the schema fuzzer sent; SQLite raised on it
    assert batches_outside(project=project, batch_ids=[huge, ours.id, 0]) == [huge, 0]


def test_the_export_api_answers_400_for_a_batch_id_past_64_bits(client, project, lead):
    from rest_framework.authtoken.models import Token

    token, _ = Token.objects.get_or_create(user=lead)
    response = client.get(
        f"/api/v1/projects/{project.slug}/export/",
        {"batch": "669258425238476819526439665664"},
        headers={"Authorization": f"Token {token.key}"},
    )
    assert response.status_code == 400
