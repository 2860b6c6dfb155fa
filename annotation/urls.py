from django.urls import path

from annotation.views import (
    agreement,
    batches,
    exports,
    leaderboard,
    members,
    pairs,
    projects,
    rating,
    settings,
)

app_name = "annotation"

urlpatterns = [
    path("", projects.home, name="home"),
    path("p/<slug:slug>/", projects.overview, name="overview"),
    path("p/<slug:slug>/batches/", batches.batches, name="batches"),
    path("p/<slug:slug>/batches/import/", batches.batch_import, name="batch-import"),
    path(
        "p/<slug:slug>/batches/<int:batch_id>/skipped/",
        batches.batch_rejects,
        name="batch-rejects",
    ),
    path(
        "p/<slug:slug>/batches/<int:batch_id>/progress/",
        batches.batch_progress,
        name="batch-progress",
    ),
    path(
        "p/<slug:slug>/batches/<int:batch_id>/retire/",
        batches.batch_retire_view,
        name="batch-retire",
    ),
    path(
        "p/<slug:slug>/batches/<int:batch_id>/unretire/",
        batches.batch_unretire_view,
        name="batch-unretire",
    ),
    path("projects/new/", settings.project_create_page, name="project-create"),
    path("projects/guidelines-preview/", settings.guidelines_preview, name="guidelines-preview"),
    path("p/<slug:slug>/settings/", settings.project_settings, name="project-settings"),
    path("p/<slug:slug>/members/", members.members, name="members"),
    path("p/<slug:slug>/members/add/", members.member_add, name="member-add"),
    path(
        "p/<slug:slug>/members/<int:membership_id>/role/", members.member_role, name="member-role"
    ),
    path(
        "p/<slug:slug>/members/<int:membership_id>/remove/",
        members.member_remove,
        name="member-remove",
    ),
    path(
        "p/<slug:slug>/members/<int:membership_id>/deactivate/",
        members.member_deactivate,
        name="member-deactivate",
    ),
    path("p/<slug:slug>/invitations/", members.invitation_new, name="invitation-create"),
    path(
        "p/<slug:slug>/invitations/<int:invitation_id>/revoke/",
        members.invitation_delete,
        name="invitation-revoke",
    ),
    path("account/token/", members.my_token, name="my-token"),
    path("p/<slug:slug>/agreement/", agreement.agreement, name="agreement"),
    path("p/<slug:slug>/agreement/raters.csv", agreement.agreement_csv, name="agreement-csv"),
    path("p/<slug:slug>/agreement/lean/", agreement.bias_lens, name="bias-lens"),
    path("p/<slug:slug>/agreement/refresh/", agreement.agreement_refresh, name="agreement-refresh"),
    path(
        "p/<slug:slug>/agreement/refresh/status/",
        agreement.agreement_refresh_status,
        name="agreement-refresh-status",
    ),
    path(
        "p/<slug:slug>/agreement/raters/<int:user_id>/unpause/",
        agreement.rater_unpause,
        name="rater-unpause",
    ),
    path("p/<slug:slug>/leaderboard/", leaderboard.leaderboard, name="leaderboard"),
    path("p/<slug:slug>/leaderboard.csv", leaderboard.leaderboard_csv, name="leaderboard-csv"),
    path("p/<slug:slug>/export/", exports.export, name="export"),
    path("p/<slug:slug>/pairs/", pairs.pair_browser, name="pairs"),
    path("p/<slug:slug>/pairs/<int:pair_id>/", pairs.pair_page_view, name="pair-detail"),
    path(
        "p/<slug:slug>/pairs/<int:pair_id>/adjudicate/",
        pairs.pair_adjudicate_view,
        name="pair-adjudicate",
    ),
    path(
        "p/<slug:slug>/pairs/<int:pair_id>/adjudicate/undo/",
        pairs.pair_adjudication_undo_view,
        name="pair-adjudication-undo",
    ),
    path(
        "p/<slug:slug>/pairs/<int:pair_id>/flags/clear/",
        pairs.pair_flags_clear_view,
        name="pair-flags-clear",
    ),
    path("p/<slug:slug>/rate/", rating.rate, name="rate"),
    path("p/<slug:slug>/rate/skip/", rating.rate_skip, name="rate-skip"),
    path("p/<slug:slug>/rate/flag/", rating.rate_flag, name="rate-flag"),
    path("p/<slug:slug>/rate/undo/", rating.rate_undo, name="rate-undo"),
]
