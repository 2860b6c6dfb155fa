"""Request types for views and APIs: the signed-in user, and a request that htmx may have sent.

Django and DRF type `request.user` as "a user or AnonymousUser". Behind `login_required`, DRF's
`IsAuthenticated` or the admin it is always a `User`; `signed_in_user` says so once, with a
check, rather than a type-checker exemption at every call. `HtmxHttpRequest` is django-htmx's
documented way to type `request.htmx`, which its middleware sets.
"""

from __future__ import annotations

from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest
from django_htmx.middleware import HtmxDetails
from rest_framework.request import Request


class HtmxHttpRequest(HttpRequest):
    htmx: HtmxDetails


def signed_in_user(request: HttpRequest | Request) -> User:
    """`request.user`, which must be a signed-in `User` (PermissionDenied otherwise)."""
    user = request.user
    if not isinstance(user, User):
        raise PermissionDenied("Log in first.")
    return user
