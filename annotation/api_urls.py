from django.urls import path

from annotation import apis

app_name = "api"

urlpatterns = [
    path("projects/", apis.ProjectListCreateApi.as_view(), name="project-list"),
    path("users/", apis.UserListCreateApi.as_view(), name="user-list"),
    path("users/<int:user_id>/token/", apis.UserTokenIssueApi.as_view(), name="user-token"),
    path(
        "projects/<slug:slug>/members/", apis.MemberListCreateApi.as_view(), name="member-list"
    ),
    path(
        "projects/<slug:slug>/members/<str:username>/",
        apis.MemberDeleteApi.as_view(),
        name="member-detail",
    ),
]
