"""Reads for the members page: who belongs to a project and which invitations are still open."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.db.models import QuerySet
from django.utils import timezone
from rest_framework.authtoken.models import Token

from annotation.models import Invitation, Membership, Project


def member_list(*, project: Project) -> QuerySet[Membership]:
    """The project's memberships with their users, admins first."""
    return (
        Membership.objects.filter(project=project)
        .select_related("user")
        .order_by("role", "user__username")
    )


def invitation_list_open(*, project: Project) -> QuerySet[Invitation]:
    """Invitations of the project that are neither used nor expired, newest first."""
    return (
        Invitation.objects.filter(
            project=project, used_at__isnull=True, expires_at__gt=timezone.now()
        )
        .select_related("created_by")
        .order_by("-created_at")
    )


def token_for(*, user: User) -> Token | None:
    """The user's API token row (to say when it was made; the key itself is shown only once)."""
    return Token.objects.filter(user=user).first()
