from tests.conftest import login
from tests.factories import BatchFactory, JudgmentFactory, PairFactory


def test_my_projects_lists_only_the_projects_i_belong_to(client, project, other_project, rater):
    login(client, rater)
    response = client.get("/")
    assert b"Alpha" in response.content
    assert b"Beta" not in response.content


def test_a_rater_sees_the_overview_counts_but_not_members_or_batches(client, project, rater, lead):
    PairFactory.create_batch(2, project=project, prompt__batch__project=project)
    login(client, rater)
    response = client.get(f"/p/{project.slug}/")
    assert response.status_code == 200
    assert response.context["stats"].pairs == 2
    assert b"Members" not in response.content
    assert b"Recent batches" not in response.content


def test_a_lead_sees_batches_and_the_judgment_count(client, project, lead):
    batch = BatchFactory(project=project, filename="first.jsonl")
    JudgmentFactory(assignment__pair__prompt__batch=batch, assignment__pair__project=project)
    login(client, lead)
    response = client.get(f"/p/{project.slug}/")
    assert b"first.jsonl" in response.content
    assert response.context["stats"].judgments == 1
    assert b"Members" not in response.content


def test_an_admin_sees_the_members(client, project, admin_member, rater):
    login(client, admin_member)
    response = client.get(f"/p/{project.slug}/")
    assert b"Members" in response.content
    assert b"rita" in response.content


def test_a_member_of_another_project_gets_404(client, project, outsider):
    login(client, outsider)
    assert client.get(f"/p/{project.slug}/").status_code == 404


def test_a_file_name_with_markup_is_shown_as_text(client, project, lead):
    BatchFactory(project=project, filename='<img src=x onerror="alert(1)">.jsonl')
    login(client, lead)
    response = client.get(f"/p/{project.slug}/")
    assert b"<img src=x" not in response.content
    assert b"&lt;img src=x onerror=&quot;alert(1)&quot;&gt;.jsonl" in response.content


def test_the_overview_needs_few_queries_however_many_pairs(
    client, project, admin_member, django_assert_max_num_queries
):
    PairFactory.create_batch(20, project=project, prompt__batch__project=project)
    login(client, admin_member)
    with django_assert_max_num_queries(12):
        assert client.get(f"/p/{project.slug}/").status_code == 200
