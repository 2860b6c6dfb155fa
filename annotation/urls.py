from django.urls import path

from annotation.views import agreement, exports, projects

app_name = "annotation"

urlpatterns = [
    path("", projects.home, name="home"),
    path("p/<slug:slug>/", projects.overview, name="overview"),
    path("p/<slug:slug>/agreement/", agreement.agreement, name="agreement"),
    path("p/<slug:slug>/agreement/raters.csv", agreement.agreement_csv, name="agreement-csv"),
    path("p/<slug:slug>/agreement/refresh/", agreement.agreement_refresh, name="agreement-refresh"),
    path(
        "p/<slug:slug>/agreement/raters/<int:user_id>/unpause/",
        agreement.rater_unpause,
        name="rater-unpause",
    ),
    path("p/<slug:slug>/export/", exports.export, name="export"),
]
