from django.urls import path

from rewardtrain import apis

app_name = "training-api"

urlpatterns = [
    path(
        "projects/<slug:slug>/training-runs/",
        apis.TrainingRunListCreateApi.as_view(),
        name="run-list",
    ),
    path("training-runs/<int:run_id>/", apis.TrainingRunDetailApi.as_view(), name="run-detail"),
    path("projects/<slug:slug>/models/", apis.ModelVersionListApi.as_view(), name="model-list"),
    path(
        "projects/<slug:slug>/models/<int:version>/publish/",
        apis.ModelVersionPublishApi.as_view(),
        name="model-publish",
    ),
    path(
        "projects/<slug:slug>/models/<int:version>/download/",
        apis.ModelVersionDownloadApi.as_view(),
        name="model-download",
    ),
    path("projects/<slug:slug>/score/", apis.ScoreApi.as_view(), name="score"),
]
