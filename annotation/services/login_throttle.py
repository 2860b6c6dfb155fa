"""Failed-login counting within a sliding window, counted in PostgreSQL (never Redis: raters must
be able to log in with Redis down, and all web processes must share the counts).

Three limits (LOGIN_FAILURE_LIMITS): failures for one username from one client address (the
lock a guesser meets), failures from one address whatever the username, and a much higher
ceiling for one username from all addresses together. Locking by username alone let anyone
lock a known user out from anywhere; now a guesser locks out only their own address, and
reaching the ceiling takes per_username / per_username_and_ip addresses.

Two concurrent wrong guesses can both pass the check before either is recorded, so an attacker
gets at most a few more tries than the limit: that is a rounding error against a 15-minute lock.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Q
from django.http import HttpRequest
from django.utils import timezone

from annotation.models import LoginFailure


@dataclass(frozen=True)
class LoginLimits:
    per_username_and_ip: int  # one username from one address
    per_username: int  # one username from all addresses: the global ceiling
    per_ip: int  # one address, every username
    window: timedelta


def login_limits() -> LoginLimits:
    limits = settings.LOGIN_FAILURE_LIMITS
    return LoginLimits(
        per_username_and_ip=int(limits["per_username_and_ip"]),
        per_username=int(limits["per_username"]),
        per_ip=int(limits["per_ip"]),
        window=timedelta(minutes=float(limits["window_minutes"])),
    )


def client_ip(request: HttpRequest) -> str | None:
    """The address failures are counted against: REMOTE_ADDR, or the header a trusted proxy sets
    (settings.CLIENT_IP_HEADER, e.g. HTTP_X_REAL_IP) when the app runs behind one."""
    value = request.META.get(settings.CLIENT_IP_HEADER) or request.META.get("REMOTE_ADDR")
    if not value:
        return None
    return str(value).split(",")[0].strip()[:45] or None


def _key(username: str) -> str:
    return username.strip().lower()[:150]


def login_blocked_until(*, username: str, ip: str | None) -> datetime | None:
    """When this username may be tried again from this address, or None if now."""
    limits = login_limits()
    since = timezone.now() - limits.window
    recent = LoginFailure.objects.filter(created_at__gt=since)
    blocked: list[datetime] = []
    checks = [(Q(username=_key(username)), limits.per_username)]
    if ip is not None:
        checks.append((Q(username=_key(username), ip=ip), limits.per_username_and_ip))
        checks.append((Q(ip=ip), limits.per_ip))
    for condition, limit in checks:
        failures = recent.filter(condition)
        # Only the limit-th most recent failure matters: the block lifts when it leaves the window.
        times = list(failures.order_by("-created_at").values_list("created_at", flat=True)[:limit])
        if len(times) >= limit:
            blocked.append(times[-1] + limits.window)
    return max(blocked) if blocked else None


def minutes_until(moment: datetime) -> int:
    return max(1, math.ceil((moment - timezone.now()).total_seconds() / 60))


def login_failure_record(*, username: str, ip: str | None) -> LoginFailure:
    """Count one failed login, and sweep failures that have left the window."""
    now = timezone.now()
    LoginFailure.objects.filter(created_at__lte=now - login_limits().window).delete()
    return LoginFailure.objects.create(username=_key(username), ip=ip, created_at=now)


def login_success_record(*, username: str) -> None:
    """A correct password clears that username's failures (its address's failures stay, so an
    attacker cannot reset the address count by logging in to an account of their own): the rows
    stay, with the username blanked."""
    LoginFailure.objects.filter(username=_key(username)).update(username="")
