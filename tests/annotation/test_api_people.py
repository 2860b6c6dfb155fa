import pytest
from django.contrib.auth.models import Permission, User
from rest_framework.authtoken.models import Token

from annotation.models import Membership
from tests.factories import UserFactory


@pytest.fixture
def api(client):
    from rest_framework.test import APIClient

    return APIClient()


def test_staff_create_a_user_and_issue_a_token_that_authenticates(api, staff, project):
    api.force_authenticate(staff)
    created = api.post("/api/v1/users/", {"username": "newbie", "password": "a-long-password"})
    assert created.status_code == 201
    token = api.post(f"/api/v1/users/{created.data['id']}/token/").data["token"]

    api.force_authenticate(None)
    api.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert api.get("/api/v1/projects/").status_code == 200


def test_a_new_token_revokes_the_previous_one(api, staff, rater):
    api.force_authenticate(staff)
    first = api.post(f"/api/v1/users/{rater.id}/token/").data["token"]
    api.post(f"/api/v1/users/{rater.id}/token/")
    api.force_authenticate(None)
    api.credentials(HTTP_AUTHORIZATION=f"Token {first}")
    assert api.get("/api/v1/projects/").status_code == 401


def test_non_staff_cannot_list_or_create_users(api, admin_member):
    api.force_authenticate(admin_member)
    assert api.get("/api/v1/users/").status_code == 403
    assert api.post("/api/v1/users/", {"username": "x"}).status_code == 403


def test_mass_assignment_of_is_staff_is_refused_by_name(api, staff):
    api.force_authenticate(staff)
    created = api.post("/api/v1/users/", {"username": "sneaky", "is_staff": True})
    assert created.status_code == 400
    assert list(created.json()) == ["is_staff"]
    assert not User.objects.filter(username="sneaky").exists()


def test_a_project_admin_adds_changes_and_removes_members(api, project, admin_member):
    UserFactory(username="newcomer")
    api.force_authenticate(admin_member)
    url = f"/api/v1/projects/{project.slug}/members/"
    assert api.post(url, {"username": "newcomer", "role": "rater"}).status_code == 201
    changed = api.patch(url + "newcomer/", {"role": "lead"}, format="json")
    assert (changed.status_code, changed.data["role"]) == (200, "lead")
    assert {m["username"] for m in api.get(url).data} == {"ada", "newcomer"}
    assert api.delete(url + "newcomer/").status_code == 204
    assert not Membership.objects.filter(user__username="newcomer").exists()


def test_adding_an_unknown_user_says_which_field_is_wrong(api, project, admin_member):
    api.force_authenticate(admin_member)
    response = api.post(
        f"/api/v1/projects/{project.slug}/members/", {"username": "ghost", "role": "rater"}
    )
    assert response.status_code == 400
    assert "username" in response.data


@pytest.mark.parametrize("role", ["rater", "lead"])
def test_members_below_admin_cannot_manage_members(api, project, role):
    user = UserFactory()
    Membership.objects.create(project=project, user=user, role=role)
    api.force_authenticate(user)
    url = f"/api/v1/projects/{project.slug}/members/"
    assert api.get(url).status_code == 403
    assert api.post(url, {"username": user.username, "role": "admin"}).status_code == 403
    assert Membership.objects.get(user=user).role == role


def test_an_admin_of_another_project_gets_404_and_changes_nothing(api, project, rater, outsider):
    api.force_authenticate(outsider)
    url = f"/api/v1/projects/{project.slug}/members/"
    assert api.get(url).status_code == 404
    assert api.post(url, {"username": "otto", "role": "admin"}).status_code == 404
    assert api.delete(url + "rita/").status_code == 404
    assert Membership.objects.filter(project=project, user=rater).exists()
    assert not Membership.objects.filter(project=project, user=outsider).exists()


def test_staff_create_a_project_and_become_its_admin(api, staff):
    api.force_authenticate(staff)
    response = api.post(
        "/api/v1/projects/", {"slug": "gamma", "name": "Gamma", "raters_per_pair": 2}
    )
    assert response.status_code == 201
    assert Membership.objects.get(project__slug="gamma", user=staff).role == "admin"


def test_non_staff_cannot_create_projects(api, rater):
    api.force_authenticate(rater)
    assert api.post("/api/v1/projects/", {"slug": "gamma", "name": "G"}).status_code == 403


def test_anonymous_api_calls_are_refused(api, project):
    assert api.get("/api/v1/projects/").status_code == 401


def test_staff_cannot_take_over_a_superuser_by_issuing_their_token(api, staff):
    superuser = UserFactory(username="root", is_staff=True, is_superuser=True)
    own = Token.objects.create(user=superuser).key
    api.force_authenticate(staff)

    response = api.post(f"/api/v1/users/{superuser.id}/token/")

    assert response.status_code == 403
    assert "superuser" in response.data["detail"]
    assert Token.objects.get(user=superuser).key == own  # the superuser's own token still works


def test_a_staff_user_cannot_raise_their_own_privilege_in_the_admin(client, staff):
    staff.user_permissions.add(Permission.objects.get(codename="change_user"))
    client.force_login(staff)
    data = {
        "username": staff.username,
        "email": "me@example.org",
        "is_active": "on",
        "is_staff": "on",
        "is_superuser": "on",
        "date_joined_0": staff.date_joined.strftime("%Y-%m-%d"),
        "date_joined_1": staff.date_joined.strftime("%H:%M:%S"),
    }
    response = client.post(f"/admin/auth/user/{staff.id}/change/", data)

    assert response.status_code == 302
    staff.refresh_from_db()
    assert staff.email == "me@example.org"
    assert staff.is_superuser is False


def test_adding_a_present_member_is_refused_and_keeps_their_role(api, project, admin_member, rater):
    """As on the members page: adding someone who is a member already changes nothing (409);
    a role changes by PATCHing the member."""
    api.force_authenticate(admin_member)
    url = f"/api/v1/projects/{project.slug}/members/"
    response = api.post(url, {"username": "rita", "role": "admin"})
    assert response.status_code == 409
    assert "already a member" in response.data["username"][0]
    assert Membership.objects.get(project=project, user=rater).role == Membership.Role.RATER


def test_the_last_admin_cannot_be_demoted_through_the_api(api, project, admin_member):
    api.force_authenticate(admin_member)
    url = f"/api/v1/projects/{project.slug}/members/{admin_member.username}/"
    response = api.patch(url, {"role": "rater"}, format="json")
    assert response.status_code == 400
    assert "last admin" in str(response.data["role"])
    assert Membership.objects.get(project=project, user=admin_member).role == "admin"
