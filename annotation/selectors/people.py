"""Reads for the members page: who belongs to a project, which invitations are still open, and
whose account the person asking may manage."""

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


def users_deactivatable_by(*, actor: User, members: list[Membership]) -> set[int]:
    """Ids of the members' users whose account `actor` may deactivate (the button shows there)."""
    return {
        m.user_id
        for m in members
        if m.user_id != actor.pk
        and m.user.is_active
        and user_manage_refusal(actor=actor, target=m.user) is None
    }


def _privilege(user: User) -> int:
    return 2 if user.is_superuser else 1 if user.is_staff else 0


def user_manage_refusal(*, actor: User, target: User) -> str | None:
    """Why `actor` may not manage `target`'s account, or None when they may.

    The one rule for every path that acts on an account: issuing an API token for it (API),
    deactivating it (members page) and editing it (Django admin). Only site staff manage
    accounts; only a superuser manages another staff user or another superuser; so nobody acts
    on an account of higher privilege than their own. A staff user taking a superuser's token
    would both get the superuser's powers and silently revoke the superuser's own token.
    """
    if _privilege(actor) == 0:
        return "Only site staff can manage accounts."
    if target.pk != actor.pk and _privilege(target) > 0 and _privilege(actor) < 2:
        return "Only a superuser can manage the account of another staff user or superuser."
    return None
