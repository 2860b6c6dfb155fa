"""Login with failed-attempt limits (annotation.services.login_throttle)."""

from __future__ import annotations

from django.contrib.auth import views as auth_views
from django.contrib.auth.forms import AuthenticationForm
from django.http import HttpResponse

from annotation.forms import LoginForm


class LoginView(auth_views.LoginView):
    """Django's login view with the rate-limited form; a refused attempt answers 429."""

    form_class = LoginForm
    redirect_authenticated_user = True

    def form_invalid(self, form: AuthenticationForm) -> HttpResponse:
        response = super().form_invalid(form)
        if isinstance(form, LoginForm) and form.rate_limited:
            response.status_code = 429
        return response
