from django.urls import path

from annotation.views import projects

app_name = "annotation"

urlpatterns = [
    path("", projects.home, name="home"),
    path("p/<slug:slug>/", projects.overview, name="overview"),
]
