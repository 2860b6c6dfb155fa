"""Members and roles, one-time invitation links, deactivation and personal API tokens."""

import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.urls import reverse
from django.utils import timezone
from rest_framework.authtoken.models import Token

from annotation.models import Invitation, Membership
from annotation.services.projects import (
    MembershipRefused,
    invitation_create,
    membership_add,
    membership_remove,
    membership_role_set,
)
from tests.conftest import login
from tests.factories import MembershipFactory, UserFactory

NEW_PASSWORD = "a-long-unusual-passphrase-42"
CONFIRM = {"confirm": "yes"}


def _members_url(project):
    return reverse("annotation:members", args=[project.slug])


def _membership(project, user):
    return Membership.objects.get(project=project, user=user)


def _invite_link(client, project, role="rater"):
    response = client.post(
        reverse("annotation:invitation-create", args=[project.slug]), {"role": role}
    )
    assert response.status_code == 201
    assert "no-store" in response["Cache-Control"]
    match = re.search(r'value="(http://testserver/invite/[^"]+/)"', response.content.decode())
    assert match, "the page shows the link"
    return match.group(1).removeprefix("http://testserver")


def test_an_admin_sees_members_with_role_and_paused_state(client, project, admin_member, rater):
    Membership.objects.filter(user=rater).update(paused_at=timezone.now())
    login(client, admin_member)
    response = client.get(_members_url(project))
    assert response.status_code == 200
    body = response.content.decode()
    assert "rita" in body
    assert "Paused since" in body
    assert "ada" in body


def test_the_members_page_needs_few_queries(
    client, project, admin_member, django_assert_max_num_queries
):
    for _ in range(15):
        MembershipFactory(project=project)
    invitation_create(project=project, role="rater", created_by=admin_member)
    login(client, admin_member)
    with django_assert_max_num_queries(8):
        assert client.get(_members_url(project)).status_code == 200


def test_an_admin_adds_an_existing_user_by_username(client, project, admin_member):
    newcomer = UserFactory(username="nina")
    login(client, admin_member)
    response = client.post(
        reverse("annotation:member-add", args=[project.slug]),
        {"username": "nina", "role": "lead"},
    )
    assert response.status_code == 302
    assert _membership(project, newcomer).role == Membership.Role.LEAD


def test_adding_an_unknown_or_present_user_says_what_is_wrong(client, project, admin_member, rater):
    login(client, admin_member)
    url = reverse("annotation:member-add", args=[project.slug])
    response = client.post(url, {"username": "nobody", "role": "rater"})
    assert response.status_code == 400
    assert "No active account “nobody”" in response.content.decode()
    response = client.post(url, {"username": "rita", "role": "admin"})
    assert response.status_code == 400
    assert "already a member" in response.content.decode()
    assert _membership(project, rater).role == Membership.Role.RATER


def test_the_invite_flow_end_to_end(client, project, admin_member):
    login(client, admin_member)
    link = _invite_link(client, project, role="lead")
    invitation = Invitation.objects.get()
    token = link.split("/")[2]
    assert invitation.token_hash != token
    assert token not in str(Invitation.objects.values_list())  # only the hash is stored
    assert "Open invitations" in client.get(_members_url(project)).content.decode()

    client.post("/logout/")
    page = client.get(link)
    assert page.status_code == 200
    assert "Join Alpha" in page.content.decode()
    response = client.post(
        link, {"username": "ivy", "password1": NEW_PASSWORD, "password2": NEW_PASSWORD}
    )
    assert response.status_code == 302
    assert response["Location"] == reverse("annotation:overview", args=[project.slug])
    ivy = User.objects.get(username="ivy")
    assert int(client.session["_auth_user_id"]) == ivy.pk
    assert _membership(project, ivy).role == Membership.Role.LEAD
    assert ivy.is_staff is False
    invitation.refresh_from_db()
    assert invitation.used_at is not None
    assert invitation.used_by == ivy
    assert client.get(response["Location"]).status_code == 200

    client.post("/logout/")
    again = client.get(link)
    assert again.status_code == 410
    assert "already been used" in again.content.decode()
    reuse = client.post(
        link, {"username": "ivy2", "password1": NEW_PASSWORD, "password2": NEW_PASSWORD}
    )
    assert reuse.status_code == 410
    assert not User.objects.filter(username="ivy2").exists()


def test_an_expired_link_says_so(client, project, admin_member):
    issued = invitation_create(project=project, role="rater", created_by=admin_member)
    Invitation.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    response = client.get(f"/invite/{issued.token}/")
    assert response.status_code == 410
    assert "expired" in response.content.decode()


def test_an_unknown_link_is_404(client, db):
    response = client.get("/invite/not-a-real-token/")
    assert response.status_code == 404
    assert "not valid" in response.content.decode()


def test_invitations_last_seven_days(project, admin_member):
    issued = invitation_create(project=project, role="rater", created_by=admin_member)
    lifetime = issued.invitation.expires_at - issued.invitation.created_at
    assert lifetime == timedelta(days=7)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"username": "ivy", "password1": "short", "password2": "short"}, "too short"),
        ({"username": "ivy", "password1": "password123", "password2": "password123"}, "common"),
        ({"username": "ivy", "password1": NEW_PASSWORD, "password2": "other"}, "differ"),
        ({"username": "Rita", "password1": NEW_PASSWORD, "password2": NEW_PASSWORD}, "taken"),
        ({"username": "bad name!", "password1": NEW_PASSWORD, "password2": NEW_PASSWORD}, "valid"),
    ],
)
def test_the_invite_page_validates_username_and_password(
    client, project, admin_member, rater, fields, message
):
    issued = invitation_create(project=project, role="rater", created_by=admin_member)
    response = client.post(f"/invite/{issued.token}/", fields)
    assert response.status_code == 400
    assert message in response.content.decode()
    assert User.objects.count() == 2
    assert Invitation.objects.get().used_at is None


def test_an_invitation_cannot_grant_staff_or_another_role(client, project, admin_member):
    issued = invitation_create(project=project, role="rater", created_by=admin_member)
    client.post(
        f"/invite/{issued.token}/",
        {
            "username": "mal",
            "password1": NEW_PASSWORD,
            "password2": NEW_PASSWORD,
            "is_staff": "on",
            "is_superuser": "on",
            "role": "admin",
        },
    )
    mal = User.objects.get(username="mal")
    assert (mal.is_staff, mal.is_superuser) == (False, False)
    assert _membership(project, mal).role == Membership.Role.RATER


def test_a_revoked_invitation_stops_working(client, project, admin_member):
    issued = invitation_create(project=project, role="rater", created_by=admin_member)
    login(client, admin_member)
    response = client.post(
        reverse("annotation:invitation-revoke", args=[project.slug, issued.invitation.id])
    )
    assert response.status_code == 302
    client.post("/logout/")
    assert client.get(f"/invite/{issued.token}/").status_code == 404


def test_an_admin_changes_a_role(client, project, admin_member, rater):
    login(client, admin_member)
    membership = _membership(project, rater)
    response = client.post(
        reverse("annotation:member-role", args=[project.slug, membership.id]), {"role": "lead"}
    )
    assert response.status_code == 302
    assert _membership(project, rater).role == Membership.Role.LEAD


def test_the_last_admin_can_be_neither_demoted_nor_removed(client, project, admin_member):
    login(client, admin_member)
    membership = _membership(project, admin_member)
    response = client.post(
        reverse("annotation:member-role", args=[project.slug, membership.id]),
        {"role": "rater"},
        follow=True,
    )
    assert "last admin" in response.content.decode()
    client.post(reverse("annotation:member-remove", args=[project.slug, membership.id]), CONFIRM)
    assert _membership(project, admin_member).role == Membership.Role.ADMIN
    with pytest.raises(MembershipRefused):
        membership_remove(project=project, user=admin_member)
    second = UserFactory()
    membership_add(project=project, user=second, role="admin")
    membership_role_set(project=project, user=admin_member, role="rater")
    assert _membership(project, admin_member).role == Membership.Role.RATER


def test_an_admin_removes_a_member_and_their_access_ends(client, project, admin_member, rater):
    login(client, admin_member)
    membership = _membership(project, rater)
    response = client.post(
        reverse("annotation:member-remove", args=[project.slug, membership.id]), CONFIRM
    )
    assert response.status_code == 302
    assert not Membership.objects.filter(project=project, user=rater).exists()
    login(client, rater)
    assert client.get(f"/p/{project.slug}/").status_code == 404


def test_staff_deactivate_an_account(client, project, rater, staff):
    MembershipFactory(project=project, user=staff, role=Membership.Role.ADMIN)
    Token.objects.create(user=rater)
    login(client, staff)
    membership = _membership(project, rater)
    response = client.post(
        reverse("annotation:member-deactivate", args=[project.slug, membership.id]), CONFIRM
    )
    assert response.status_code == 302
    rater.refresh_from_db()
    assert rater.is_active is False
    assert not Token.objects.filter(user=rater).exists()
    assert not client.login(username="rita", password="correct-horse-battery-staple")


def test_a_project_admin_who_is_not_staff_cannot_deactivate(client, project, admin_member, rater):
    login(client, admin_member)
    membership = _membership(project, rater)
    url = reverse("annotation:member-deactivate", args=[project.slug, membership.id])
    assert client.post(url, CONFIRM).status_code == 403
    assert client.get(url).status_code == 403
    rater.refresh_from_db()
    assert rater.is_active is True
    assert b"Deactivate account" not in client.get(_members_url(project)).content


def test_staff_cannot_deactivate_themselves(client, project, staff):
    membership = MembershipFactory(project=project, user=staff, role=Membership.Role.ADMIN)
    login(client, staff)
    response = client.post(
        reverse("annotation:member-deactivate", args=[project.slug, membership.id]),
        CONFIRM,
        follow=True,
    )
    assert "your own account" in response.content.decode()
    staff.refresh_from_db()
    assert staff.is_active is True


def test_staff_see_the_deactivate_button_only_for_accounts_they_may_manage(
    client, project, rater, staff
):
    MembershipFactory(project=project, user=staff, role=Membership.Role.ADMIN)
    root = UserFactory(username="root", is_staff=True, is_superuser=True)
    MembershipFactory(project=project, user=root, role=Membership.Role.RATER)
    login(client, staff)
    page = client.get(_members_url(project)).content.decode()
    forms = re.findall(r'action="/p/alpha/members/(\d+)/deactivate/"', page)
    assert forms == [str(_membership(project, rater).id)]
    response = client.post(
        reverse("annotation:member-deactivate", args=[project.slug, _membership(project, root).id])
    )
    assert response.status_code == 403
    root.refresh_from_db()
    assert root.is_active is True


def _admin_urls(project, membership_id, invitation_id):
    slug = project.slug
    return [
        ("get", _members_url(project), {}),
        ("post", reverse("annotation:member-add", args=[slug]), {"username": "rita"}),
        ("post", reverse("annotation:member-role", args=[slug, membership_id]), {"role": "admin"}),
        ("post", reverse("annotation:member-remove", args=[slug, membership_id]), CONFIRM),
        ("get", reverse("annotation:member-remove", args=[slug, membership_id]), {}),
        ("post", reverse("annotation:member-deactivate", args=[slug, membership_id]), CONFIRM),
        ("get", reverse("annotation:member-deactivate", args=[slug, membership_id]), {}),
        ("post", reverse("annotation:invitation-create", args=[slug]), {"role": "admin"}),
        ("post", reverse("annotation:invitation-revoke", args=[slug, invitation_id]), {}),
    ]


def test_raters_and_leads_get_403_on_every_members_action(
    client, project, rater, lead, admin_member
):
    issued = invitation_create(project=project, role="rater", created_by=admin_member)
    membership = _membership(project, rater)
    for user in (rater, lead):
        login(client, user)
        for method, url, data in _admin_urls(project, membership.id, issued.invitation.id):
            assert getattr(client, method)(url, data).status_code == 403, (user, url)
    assert _membership(project, rater).role == Membership.Role.RATER
    assert Invitation.objects.count() == 1


def test_other_projects_admins_get_404_and_change_nothing(
    client, project, other_project, rater, outsider, admin_member
):
    issued = invitation_create(project=project, role="rater", created_by=admin_member)
    membership = _membership(project, rater)
    login(client, outsider)
    for method, url, data in _admin_urls(project, membership.id, issued.invitation.id):
        assert getattr(client, method)(url, data).status_code == 404, url
    # Ids of this project through the outsider's own project: 404 too.
    own = other_project.slug
    for url in (
        reverse("annotation:member-role", args=[own, membership.id]),
        reverse("annotation:member-remove", args=[own, membership.id]),
        reverse("annotation:invitation-revoke", args=[own, issued.invitation.id]),
    ):
        assert client.post(url, {"role": "rater"}).status_code == 404, url
    assert _membership(project, rater).role == Membership.Role.RATER
    assert Invitation.objects.filter(project=project).count() == 1
    rater.refresh_from_db()
    assert rater.is_active is True


def test_anonymous_visitors_are_sent_to_log_in(client, project):
    assert client.get(_members_url(project)).status_code == 302


def test_any_user_makes_and_rotates_their_own_api_token_shown_once(client, rater):
    login(client, rater)
    url = reverse("annotation:my-token")
    assert b"no API token yet" in client.get(url).content
    first = client.post(url)
    assert "no-store" in first["Cache-Control"]
    key = Token.objects.get(user=rater).key
    assert key.encode() in first.content
    assert key.encode() not in client.get(url).content  # shown once
    client.post(url, CONFIRM)
    new_key = Token.objects.get(user=rater).key
    assert new_key != key
    client.post("/logout/")
    api = client.get("/api/v1/projects/", headers={"Authorization": f"Token {new_key}"})
    assert api.status_code == 200
    old = client.get("/api/v1/projects/", headers={"Authorization": f"Token {key}"})
    assert old.status_code == 401


def test_the_token_page_needs_a_login(client, db):
    assert client.post(reverse("annotation:my-token")).status_code == 302
    assert not Token.objects.exists()


# --- destructive actions are confirmed first, without JavaScript too ---------------------------


def _confirm_form(page: str, url: str) -> None:
    """The confirmation page: in the site's layout, a form that posts `confirm` back to `url`."""
    assert 'class="brand"' in page
    assert f'<form method="post" action="{url}">' in page
    assert '<input type="hidden" name="confirm" value="yes">' in page
    assert "Cancel" in page


def test_removing_a_member_asks_first_and_only_the_confirming_post_removes(
    client, project, admin_member, rater
):
    login(client, admin_member)
    members_page = client.get(_members_url(project)).content.decode()
    url = reverse("annotation:member-remove", args=[project.slug, _membership(project, rater).id])
    assert f'<form method="get" action="{url}"' in members_page  # no one-click removal
    page = client.get(url)
    assert page.status_code == 200
    assert "Remove rita from Alpha?" in page.content.decode()
    _confirm_form(page.content.decode(), url)
    assert client.post(url).status_code == 200  # an old form without `confirm`: asked again
    assert Membership.objects.filter(project=project, user=rater).exists()
    assert client.post(url, CONFIRM).status_code == 302
    assert not Membership.objects.filter(project=project, user=rater).exists()


def test_deactivating_an_account_asks_first_and_says_it_is_site_wide(client, project, rater, staff):
    MembershipFactory(project=project, user=staff, role=Membership.Role.ADMIN)
    login(client, staff)
    url = reverse(
        "annotation:member-deactivate", args=[project.slug, _membership(project, rater).id]
    )
    assert (
        f'<form method="get" action="{url}"' in client.get(_members_url(project)).content.decode()
    )
    page = client.get(url).content.decode()
    assert "Deactivate the account rita?" in page
    assert "site-wide" in page
    _confirm_form(page, url)
    client.post(url)
    rater.refresh_from_db()
    assert rater.is_active is True
    client.post(url, CONFIRM)
    rater.refresh_from_db()
    assert rater.is_active is False


def test_rotating_a_token_asks_first_but_the_first_token_does_not(client, rater):
    login(client, rater)
    url = reverse("annotation:my-token")
    client.post(url)  # the first token replaces nothing: made at once
    key = Token.objects.get(user=rater).key
    page = client.post(url).content.decode()
    assert "Make a new API token?" in page
    _confirm_form(page, url)
    assert Token.objects.get(user=rater).key == key
    client.post(url, CONFIRM)
    assert Token.objects.get(user=rater).key != key
