"""The small frictions a new user meets in the first hour (issue 12, items 10 and 11): empty
fields that say `null`, ids used twice, a login that forgets the username, bare error pages, no
favicon, a flash list that hides its items, copy buttons for secrets shown once."""

import re

from django.test import Client, RequestFactory
from django.urls import reverse
from django.views.defaults import server_error

from tests.conftest import login


def _ids(page: str) -> list[str]:
    return re.findall(r'\sid="([^"]+)"', page)


def test_a_new_project_form_leaves_the_train_config_empty_not_null(client, staff):
    login(client, staff)
    page = client.get(reverse("annotation:project-create")).content.decode()
    box = re.search(r'<textarea name="train_config"[^>]*>([^<]*)</textarea>', page)
    assert box is not None
    assert box.group(1).strip() == ""


def test_a_project_without_train_options_shows_an_empty_box(client, project, admin_member):
    login(client, admin_member)
    page = client.get(reverse("annotation:project-settings", args=[project.slug]))
    box = re.search(r'<textarea name="train_config"[^>]*>([^<]*)</textarea>', page.content.decode())
    assert box is not None
    assert box.group(1).strip() == ""


def test_every_id_on_the_members_page_is_unique(client, project, admin_member, rater):
    login(client, admin_member)
    page = client.post(
        reverse("annotation:invitation-create", args=[project.slug]), {"role": "rater"}
    )
    ids = _ids(page.content.decode())
    assert ids.count("id_role") == 1
    assert "id_invite_role" in ids
    assert sorted(set(ids)) == sorted(ids)


def test_the_invitation_link_and_a_new_token_have_copy_buttons(client, project, admin_member):
    login(client, admin_member)
    page = client.post(
        reverse("annotation:invitation-create", args=[project.slug]), {"role": "rater"}
    ).content.decode()
    assert 'data-copy="invite-url" hidden' in page
    assert 'id="invite-url-copied" role="status"' in page
    assert re.search(r'<script src="/static/js/copy\.[0-9a-f]+\.js" defer>', page)
    page = client.post(reverse("annotation:my-token")).content.decode()
    assert 'data-copy="api-token" hidden' in page
    assert "<script>" not in page  # the policy allows no inline script


def test_a_failed_login_keeps_the_username_and_focuses_the_password(client, rater):
    page = client.post("/login/", {"username": "rita", "password": "wrong"}).content.decode()
    assert 'name="username" id="id_username" value="rita"' in page
    assert re.search(r'id="id_password"[^>]*autofocus', page)
    evil = client.post("/login/", {"username": '"><b>x', "password": "x"}).content.decode()
    assert '"><b>x' not in evil  # escaped


def test_the_favicon_is_served(client, db):
    response = client.get("/favicon.ico")
    assert response.status_code == 301
    assert re.fullmatch(r"/static/favicon\.[0-9a-f]+\.svg", response["Location"])
    served = client.get(response["Location"])
    assert served.status_code == 200
    assert b"<svg" in b"".join(served.streaming_content)
    served.close()


def test_a_404_is_a_page_of_the_site_with_a_way_back(client, rater):
    login(client, rater)
    response = client.get("/p/no-such-project/")
    assert response.status_code == 404
    page = response.content.decode()
    assert 'class="brand"' in page
    assert "Nothing here" in page
    assert '<a href="/">Back to my projects</a>' in page
    anonymous = Client().get("/no/such/page/")
    assert anonymous.status_code == 404
    assert "/no/such/page/" in anonymous.content.decode()


def test_a_403_is_a_page_of_the_site_that_says_why(client, project, rater):
    login(client, rater)
    response = client.get(reverse("annotation:batches", args=[project.slug]))
    assert response.status_code == 403
    page = response.content.decode()
    assert 'class="brand"' in page
    assert "This needs the project lead role." in page
    assert '<a href="/">Back to my projects</a>' in page


def test_the_500_page_has_the_layout_and_touches_no_database(db, django_assert_num_queries):
    request = RequestFactory().get("/")
    with django_assert_num_queries(0):
        response = server_error(request)
    page = response.content.decode()
    assert response.status_code == 500
    assert 'class="brand"' in page
    assert '<a href="/">Back to my projects</a>' in page


def test_flash_messages_are_a_list_inside_a_live_region(client, project, admin_member, rater):
    login(client, admin_member)
    membership = rater.memberships.get(project=project)
    page = client.post(
        reverse("annotation:member-role", args=[project.slug, membership.id]),
        {"role": "lead"},
        follow=True,
    ).content.decode()
    assert '<div class="messages flash" role="status">' in page
    assert re.search(r'role="status">\s*<ul><li class="success">rita is now lead', page)
    assert not re.search(r'<ul[^>]*role="status"', page)
