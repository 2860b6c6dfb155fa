from django.urls import path

from annotation.apis import agreement, batches, exports, leaderboard, pairs, people, rating

app_name = "api"

urlpatterns = [
    path(
        "projects/<slug:slug>/batches/",
        batches.BatchListCreateApi.as_view(),
        name="batch-list",
    ),
    path(
        "projects/<slug:slug>/batches/<int:batch_id>/",
        batches.BatchDetailApi.as_view(),
        name="batch-detail",
    ),
    path(
        "projects/<slug:slug>/batches/<int:batch_id>/skipped/",
        batches.BatchRejectsApi.as_view(),
        name="batch-rejects",
    ),
    path(
        "projects/<slug:slug>/batches/<int:batch_id>/retire/",
        batches.BatchRetireApi.as_view(),
        name="batch-retire",
    ),
    path(
        "projects/<slug:slug>/batches/<int:batch_id>/unretire/",
        batches.BatchUnretireApi.as_view(),
        name="batch-unretire",
    ),
    path("projects/<slug:slug>/next/", rating.AssignmentNextApi.as_view(), name="rating-next"),
    path(
        "projects/<slug:slug>/judgments/",
        rating.JudgmentRecordApi.as_view(),
        name="rating-judgments",
    ),
    path(
        "projects/<slug:slug>/judgments/undo/",
        rating.JudgmentUndoApi.as_view(),
        name="rating-undo",
    ),
    path(
        "projects/<slug:slug>/assignments/<int:assignment_id>/skip/",
        rating.AssignmentSkipApi.as_view(),
        name="rating-skip",
    ),
    path(
        "projects/<slug:slug>/assignments/<int:assignment_id>/flag/",
        rating.AssignmentFlagApi.as_view(),
        name="rating-flag",
    ),
    path("projects/", people.ProjectListCreateApi.as_view(), name="project-list"),
    path("projects/<slug:slug>/", people.ProjectDetailApi.as_view(), name="project-detail"),
    path(
        "projects/<slug:slug>/agreement/",
        agreement.AgreementReportApi.as_view(),
        name="agreement",
    ),
    path(
        "projects/<slug:slug>/leaderboard/",
        leaderboard.LeaderboardApi.as_view(),
        name="leaderboard",
    ),
    path("projects/<slug:slug>/export/", exports.ProjectExportApi.as_view(), name="export"),
    path("projects/<slug:slug>/pairs/", pairs.PairListApi.as_view(), name="pair-list"),
    path(
        "projects/<slug:slug>/pairs/<int:pair_id>/",
        pairs.PairDetailApi.as_view(),
        name="pair-detail",
    ),
    path(
        "projects/<slug:slug>/pairs/<int:pair_id>/adjudication/",
        pairs.PairAdjudicationApi.as_view(),
        name="pair-adjudication",
    ),
    path("users/", people.UserListCreateApi.as_view(), name="user-list"),
    path("users/<int:user_id>/token/", people.UserTokenIssueApi.as_view(), name="user-token"),
    path("projects/<slug:slug>/members/", people.MemberListCreateApi.as_view(), name="member-list"),
    path(
        "projects/<slug:slug>/members/<str:username>/",
        people.MemberDetailApi.as_view(),
        name="member-detail",
    ),
]
