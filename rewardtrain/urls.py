from django.urls import path

from rewardtrain import views

app_name = "rewardtrain"

urlpatterns = [
    path("p/<slug:slug>/training/", views.training, name="training"),
    path("p/<slug:slug>/training/runs/", views.train_now, name="train-now"),
    path("p/<slug:slug>/training/runs/<int:run_id>/", views.run_status, name="run-status"),
    path(
        "p/<slug:slug>/training/versions/<int:version>/publish/",
        views.version_publish,
        name="version-publish",
    ),
    path(
        "p/<slug:slug>/training/versions/<int:version>/download/",
        views.version_download,
        name="version-download",
    ),
]
