"""Django admin for annotation data and accounts. Judgments, prompts and responses are evidence:
they are read-only here, because editing them would silently change what raters said or saw."""

from typing import Any

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin
from django.contrib.auth.models import User
from django.http import HttpRequest

from annotation.http import signed_in_user
from annotation.models import (
    AgreementReport,
    Assignment,
    Batch,
    Judgment,
    Membership,
    Pair,
    Project,
    Prompt,
    Response,
)
from annotation.selectors.people import user_manage_refusal


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


admin.site.unregister(User)


@admin.register(User)
class AccountAdmin(UserAdmin):
    """Django's user admin under the app's account rule (selectors.people.user_manage_refusal):
    staff who may change accounts change plain users and themselves, never another staff user
    or a superuser; and only a superuser grants staff, superuser status or permissions, so
    nobody raises their own privilege here either."""

    PRIVILEGE_FIELDS = ("is_staff", "is_superuser", "groups", "user_permissions")

    def has_change_permission(self, request: HttpRequest, obj: User | None = None) -> bool:
        allowed = super().has_change_permission(request, obj)
        if obj is None or not allowed:
            return allowed
        return user_manage_refusal(actor=signed_in_user(request), target=obj) is None

    def has_delete_permission(self, request: HttpRequest, obj: User | None = None) -> bool:
        allowed = super().has_delete_permission(request, obj)
        if obj is None or not allowed:
            return allowed
        return user_manage_refusal(actor=signed_in_user(request), target=obj) is None

    def get_readonly_fields(self, request: HttpRequest, obj: User | None = None) -> tuple:
        fields = tuple(super().get_readonly_fields(request, obj))
        if request.user.is_superuser:
            return fields
        return fields + self.PRIVILEGE_FIELDS


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "raters_per_pair", "choice_scheme", "created_at", "archived_at"]
    search_fields = ["name", "slug"]
    list_filter = ["choice_scheme", "archived_at"]
    prepopulated_fields = {"slug": ["name"]}
    readonly_fields = ["stats", "stats_refreshed_at", "created_at"]
    inlines = [MembershipInline]


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "project", "role", "paused_at", "created_at"]
    list_filter = ["role", "project"]
    search_fields = ["user__username", "project__slug"]
    autocomplete_fields = ["user", "project"]


@admin.register(Batch)
class BatchAdmin(admin.ModelAdmin):
    list_display = [
        "filename",
        "project",
        "format",
        "known_answers",
        "pairs_created",
        "uploaded_by",
        "created_at",
        "retired_at",
    ]
    list_filter = ["project", "format", "known_answers"]
    search_fields = ["filename", "sha256"]
    readonly_fields = [f.name for f in Batch._meta.fields if f.name != "retired_at"]

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # uploads go through the import service, which validates the whole file


@admin.register(Prompt)
class PromptAdmin(ReadOnlyAdmin):
    list_display = ["id", "project", "external_id", "__str__"]
    list_filter = ["project"]
    search_fields = ["external_id", "text", "content_hash"]


@admin.register(Response)
class ResponseAdmin(ReadOnlyAdmin):
    list_display = ["id", "model_name", "prompt", "__str__"]
    list_filter = ["model_name"]
    search_fields = ["model_name", "content_hash"]
    raw_id_fields = ["prompt"]


@admin.register(Pair)
class PairAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "project",
        "judgments_count",
        "judgments_needed",
        "gold_choice",
        "seed_choice",
        "is_active",
    ]
    list_filter = ["project", "is_active", "gold_choice", "seed_choice"]
    search_fields = ["external_id"]
    raw_id_fields = ["prompt", "response_a", "response_b", "batch"]


@admin.register(Assignment)
class AssignmentAdmin(ReadOnlyAdmin):
    list_display = ["id", "pair", "rater", "status", "swapped", "created_at", "expires_at"]
    list_filter = ["status"]
    search_fields = ["rater__username"]
    raw_id_fields = ["pair"]


@admin.register(Judgment)
class JudgmentAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "pair",
        "rater",
        "choice",
        "strength",
        "swapped",
        "duration_ms",
        "created_at",
    ]
    list_filter = ["choice", "strength", "swapped", "pair__project"]
    search_fields = ["rater__username"]
    raw_id_fields = ["pair", "assignment"]
    date_hierarchy = "created_at"


@admin.register(AgreementReport)
class AgreementReportAdmin(ReadOnlyAdmin):
    list_display = ["project", "created_at", "judgments"]
    list_filter = ["project"]
