"""Response headers Django does not set by itself, and a clean 503 when the database is gone."""

import logging
from collections.abc import Callable

from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.loader import render_to_string

logger = logging.getLogger(__name__)


class ContentSecurityPolicyMiddleware:
    """An enforcing CSP on every response: no inline script can run, whatever a prompt contains."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        response.setdefault("Content-Security-Policy", settings.CONTENT_SECURITY_POLICY)
        return response


# Seconds a client is asked to wait when the database is unreachable: a PostgreSQL restart takes
# a few, and the connection is re-established by itself (CONN_HEALTH_CHECKS) on the next request.
DATABASE_RETRY_AFTER_S = 5


class DatabaseUnavailableMiddleware:
    """503 with Retry-After, not Django's HTML 500, for a request that lost the database (a
    PostgreSQL restart or failover): JSON under /api/, a short page elsewhere. API clients then
    retry, with their idempotency keys, instead of treating it as a bug in the request.

    Only exceptions a view raised are seen here (DRF re-raises what it does not handle); the
    answer is rendered without the request, so it needs the database for nothing."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not isinstance(exception, OperationalError | InterfaceError):
            return None
        logger.warning(
            "database unavailable during %s %s: %s", request.method, request.path, exception
        )
        if request.path.startswith("/api/"):
            response: HttpResponse = JsonResponse(
                {"detail": "The database is unavailable for a moment: retry shortly."},
                status=503,
            )
        else:
            page = render_to_string("503.html", {"retry_after": DATABASE_RETRY_AFTER_S})
            response = HttpResponse(page, status=503)
        response["Retry-After"] = str(DATABASE_RETRY_AFTER_S)
        response["Cache-Control"] = "no-store"
        return response
