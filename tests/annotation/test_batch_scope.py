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
