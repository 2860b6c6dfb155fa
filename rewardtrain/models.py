"""Training runs and the model versions they produce."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from annotation.models import Project


class TrainingRun(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    class Trigger(models.TextChoices):
        MANUAL = "manual", "Started by hand"
        SCHEDULE = "schedule", "Enough new judgments"

    ACTIVE_STATUSES = (Status.QUEUED, Status.RUNNING)

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="training_runs")
    status = models.CharField(max_length=10, choices=Status, default=Status.QUEUED)
    trigger = models.CharField(max_length=10, choices=Trigger)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # The data is frozen when the run is requested: judgments with id <= this, nothing later.
    data_cutoff_judgment_id = models.BigIntegerField(default=0)
    config = models.JSONField(default=dict)
    progress = models.FloatField(default=0.0)  # 0..1
    metrics = models.JSONField(default=dict, blank=True)
    loss_curve = models.JSONField(default=list, blank=True)
    error = models.TextField(blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    # Touched by the worker as it trains; a RUNNING run whose heartbeat stops was killed.
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["project"],
                condition=Q(status__in=["queued", "running"]),
                name="one_active_run_per_project",
            ),
        ]

    def __str__(self) -> str:
        return f"run {self.pk} of {self.project.slug} ({self.status})"

    @property
    def is_active(self) -> bool:
        return self.status in self.ACTIVE_STATUSES


class ModelVersion(models.Model):
    class State(models.TextChoices):
        CANDIDATE = "candidate", "Candidate"
        PUBLISHED = "published", "Published"
        RETIRED = "retired", "Retired"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="model_versions")
    run = models.OneToOneField(
        TrainingRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="version"
    )
    version = models.PositiveIntegerField()
    path = models.CharField(max_length=500)  # relative to CHECKPOINT_ROOT
    file_sha256 = models.JSONField(default=dict)  # file name -> sha256, checked before loading
    metrics = models.JSONField(default=dict, blank=True)
    state = models.CharField(max_length=10, choices=State, default=State.CANDIDATE)
    created_at = models.DateTimeField(auto_now_add=True)
    published_at = models.DateTimeField(null=True, blank=True)
    # Pool scoring's heartbeat: set before each batch it scores with this version, so that the
    # pool sweep leaves a scoring in progress alone (rewardtrain.services.pool).
    pool_heartbeat_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-version"]
        constraints = [
            models.UniqueConstraint(fields=["project", "version"], name="one_number_per_version"),
            models.UniqueConstraint(
                fields=["project"],
                condition=Q(state="published"),
                name="one_published_version_per_project",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.project.slug} v{self.version} ({self.state})"
