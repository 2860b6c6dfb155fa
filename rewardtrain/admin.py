"""Django admin for training runs and model versions: read-only, since a run's record and a
version's checksums must match what is on disk; publish and roll back through the app."""

from django.contrib import admin
from django.db.models import Model
from django.http import HttpRequest

from rewardtrain.models import ModelVersion, TrainingRun


class _ReadOnlyAdmin(admin.ModelAdmin):
    """Nothing is added or changed here (deleting stays the admin's call)."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False


@admin.register(TrainingRun)
class TrainingRunAdmin(_ReadOnlyAdmin):
    list_display = ["id", "project", "status", "trigger", "progress", "created_at", "finished_at"]
    list_filter = ["status", "trigger", "project"]
    search_fields = ["project__slug", "error"]


@admin.register(ModelVersion)
class ModelVersionAdmin(_ReadOnlyAdmin):
    list_display = ["project", "version", "state", "created_at", "published_at"]
    list_filter = ["state", "project"]
    search_fields = ["project__slug", "path"]
