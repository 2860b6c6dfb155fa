from django.urls import path

from annotation.views import exports, projects

app_name = "annotation"

urlpatterns = [
    path("", projects.home, name="home"),
    path("p/<slug:slug>/", projects.overview, name="overview"),
    path("p/<slug:slug>/export/", exports.export, name="export"),
]
