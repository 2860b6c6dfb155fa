"""Projects, people and their roles."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from django.db import transaction
from rest_framework.authtoken.models import Token

from annotation.models import Membership, Project


@transaction.atomic
def project_create(*, slug: str, name: str, created_by: User, **fields: Any) -> Project:
    """A new project; its creator becomes its admin."""
    project = Project(slug=slug, name=name, **fields)
    project.full_clean()
    project.save()
    Membership.objects.create(project=project, user=created_by, role=Membership.Role.ADMIN)
    return project


def membership_set(*, project: Project, user: User, role: str) -> Membership:
    """Add `user` to `project` with `role`, or change the role they have."""
    membership, _ = Membership.objects.update_or_create(
        project=project, user=user, defaults={"role": role}
    )
    return membership


def membership_remove(*, project: Project, user: User) -> None:
    """Take `user` out of `project`; their judgments stay (they are data, not access)."""
    Membership.objects.filter(project=project, user=user).delete()


def user_create(
    *, username: str, password: str | None = None, email: str = "", is_staff: bool = False
) -> User:
    """A user account. Without a password the account cannot log in until one is set."""
    user = User(username=username, email=email, is_staff=is_staff)
    if password is None:
        user.set_unusable_password()
    else:
        user.set_password(password)
    user.full_clean(exclude=["password"])
    user.save()
    return user


def token_issue(*, user: User) -> Token:
    """A fresh API token for `user`; any earlier token stops working."""
    with transaction.atomic():
        Token.objects.filter(user=user).delete()
        return Token.objects.create(user=user)
