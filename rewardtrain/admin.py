"""Django admin for training runs and model versions: read-only, since a run's record and a
version's checksums must match what is on disk; publish and roll back through the app."""

from django.contrib import admin

from rewardtrain.models import ModelVersion, TrainingRun


@admin.register(TrainingRun)
class TrainingRunAdmin(admin.ModelAdmin):
    list_display = ["id", "project", "status", "trigger", "progress", "created_at", "finished_at"]
    list_filter = ["status", "trigger", "project"]
    search_fields = ["project__slug", "error"]

    def has_add_permission(self, request, obj=None) -> bool:  # type: ignore[no-untyped-def]
        return False

    def has_change_permission(self, request, obj=None) -> bool:  # type: ignore[no-untyped-def]
        return False


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = ["project", "version", "state", "created_at", "published_at"]
    list_filter = ["state", "project"]
    search_fields = ["project__slug", "path"]

    def has_add_permission(self, request, obj=None) -> bool:  # type: ignore[no-untyped-def]
        return False

    def has_change_permission(self, request, obj=None) -> bool:  # type: ignore[no-untyped-def]
        return False
