from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from annotation.forms import AdminLoginForm
from annotation.views import auth, members, site

# The admin's own login page counts failures too, so it is no way around the limits.
admin.site.login_form = AdminLoginForm

urlpatterns = [
    path("admin/", admin.site.urls),
    path("favicon.ico", site.favicon, name="favicon"),
    path("login/", auth.LoginView.as_view(), name="login"),
    path("invite/<str:token>/", members.invite_accept, name="invite-accept"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="schema"), name="api-docs"),
    path("api/v1/", include("annotation.api_urls")),
    path("api/v1/", include("rewardtrain.api_urls")),
    path("", include("rewardtrain.urls")),  # before annotation's pages, which end in a catch-all
    path("", include("annotation.urls")),
]
