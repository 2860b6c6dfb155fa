"""Projects, people and their roles: creating and editing projects, memberships, one-time
invitations, account deactivation and API tokens."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.contrib.auth.models import Permission, User
from django.db import transaction
from django.utils import timezone
from rest_framework.authtoken.models import Token

from annotation.models import Invitation, Membership, Pair, Project
from annotation.selectors.people import user_manage_refusal

INVITATION_LIFETIME = timedelta(days=7)

# What project_update may change: everything an admin edits on the settings page. The slug is
# left out on purpose: it is in every URL, export file name and checkpoint path.
PROJECT_EDITABLE_FIELDS = (
    "name",
    "guidelines",
    "choice_scheme",
    "use_strength",
    "criteria",
    "rationale",
    "raters_per_pair",
    "max_raters_per_pair",
    "gold_rate",
    "pairing_rule",
    "pairs_per_prompt",
    "assignment_order",
    "exploration_share",
    "lease_minutes",
    "flag_threshold",
    "base_model",
    "train_config",
    "retrain_min_new_judgments",
    "full_retrain_every",
    "auto_retrain",
    "promote_min_gain",
    "too_fast_ms",
    "min_gold_accuracy",
    "min_agreement",
    "quality_min_judgments",
    "auto_pause",
    "aggregation",
    "min_posterior",
)


class MembershipRefused(Exception):
    """A change to the members of a project that would leave it without an admin, and the like."""


class AlreadyMember(MembershipRefused):
    """Adding someone who is a member already: their role changes only when asked for by name."""


class InvitationInvalid(Exception):
    """An invitation link that is unknown, used or expired; `reason` says which."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class UserManagementRefused(Exception):
    """The person asking may not manage this account (selectors.people.user_manage_refusal)."""


class UserDeactivationRefused(Exception):
    """This account cannot be deactivated, whoever asks (one's own, for instance)."""


def _check_may_manage(*, actor: User, target: User) -> None:
    refusal = user_manage_refusal(actor=actor, target=target)
    if refusal is not None:
        raise UserManagementRefused(refusal)


@transaction.atomic
def project_create(*, slug: str, name: str, created_by: User, **fields: Any) -> Project:
    """A new project; its creator becomes its admin."""
    project = Project(slug=slug, name=name, **fields)
    project.full_clean()
    project.save()
    Membership.objects.create(project=project, user=created_by, role=Membership.Role.ADMIN)
    return project


def user_allow_project_creation(*, user: User) -> User:
    """Let `user` start projects without making them staff: the `annotation.add_project`
    permission that `user_can_create_projects` accepts. Granting it twice changes nothing."""
    permission = Permission.objects.get(
        content_type__app_label="annotation", codename="add_project"
    )
    user.user_permissions.add(permission)
    return user


@transaction.atomic
def project_update(*, project: Project, **fields: Any) -> Project:
    """Change a project's settings (only PROJECT_EDITABLE_FIELDS).

    A new `raters_per_pair` applies to the pairs still open: active pairs that are neither gold
    nor seed and have fewer judgments than they need get the new target, in one UPDATE. Pairs
    already complete stay complete (raising the target does not reopen finished work, which
    raters and exports have already seen as done); lowering it closes open pairs that already
    have enough judgments. Gold and seed pairs carry their own answer and are left alone.
    """
    unknown = sorted(set(fields) - set(PROJECT_EDITABLE_FIELDS))
    if unknown:
        raise ValueError(f"These project fields cannot be changed here: {', '.join(unknown)}")
    project = Project.objects.select_for_update().get(pk=project.pk)
    old_raters_per_pair = project.raters_per_pair
    for name, value in fields.items():
        setattr(project, name, value)
    project.full_clean()
    project.save(update_fields=sorted(fields))
    if project.raters_per_pair != old_raters_per_pair:
        # The assignment engine updates judgments_count under each pair's row lock; comparing
        # against the column in the same statement keeps this correct while raters submit.
        Pair.objects.open().filter(project=project).update(judgments_needed=project.raters_per_pair)
    return project


def _admins_left_after(*, project: Project, leaving: Membership) -> int:
    """Admins the project would keep without `leaving`, counted under row locks so that two
    admins demoting each other at the same moment cannot both succeed."""
    admins = list(
        Membership.objects.select_for_update()
        .filter(project=project, role=Membership.Role.ADMIN)
        .values_list("pk", flat=True)
    )
    return len([pk for pk in admins if pk != leaving.pk])


def _check_role(role: str) -> None:
    if role not in Membership.Role.values:
        raise MembershipRefused(f"Unknown role {role!r}.")


@transaction.atomic
def membership_add(*, project: Project, user: User, role: str) -> Membership:
    """Add `user` to `project` with `role`.

    Refused with AlreadyMember when they are a member already, whatever their role: adding is
    not the way to change a role (membership_role_set is), so a stale form or a retried script
    never demotes or promotes anyone by surprise. The page and the API share this rule."""
    _check_role(role)
    membership, created = Membership.objects.get_or_create(
        project=project, user=user, defaults={"role": role}
    )
    if not created:
        raise AlreadyMember(
            f"{user.get_username()} is already a member ({membership.get_role_display()}); "
            "change their role instead."
        )
    return membership


@transaction.atomic
def membership_role_set(*, project: Project, user: User, role: str) -> Membership:
    """Change the role of `user`, a member of `project` (Membership.DoesNotExist if not).

    Refused with MembershipRefused when it would demote the project's last admin."""
    _check_role(role)
    current = Membership.objects.select_for_update().get(project=project, user=user)
    if (
        current.role == Membership.Role.ADMIN
        and role != Membership.Role.ADMIN
        and _admins_left_after(project=project, leaving=current) == 0
    ):
        raise MembershipRefused(
            f"{user.get_username()} is the last admin of {project.name}: "
            "make someone else admin first."
        )
    current.role = role
    current.save(update_fields=["role"])
    return current


@transaction.atomic
def membership_remove(*, project: Project, user: User) -> None:
    """Take `user` out of `project`; their judgments stay (they are data, not access).

    Refused with MembershipRefused when `user` is the project's last admin."""
    current = Membership.objects.filter(project=project, user=user).first()
    if current is None:
        return
    if (
        current.role == Membership.Role.ADMIN
        and _admins_left_after(project=project, leaving=current) == 0
    ):
        raise MembershipRefused(
            f"{user.get_username()} is the last admin of {project.name}: "
            "make someone else admin first."
        )
    current.delete()


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


@transaction.atomic
def user_deactivate(*, user: User, by: User) -> User:
    """Switch an account off: it can no longer log in, its sessions stop authenticating and its
    API token is deleted. Judgments and memberships stay as history.

    UserManagementRefused when `by` may not manage `user`; UserDeactivationRefused for one's own
    account (nobody locks themselves out by mistake)."""
    _check_may_manage(actor=by, target=user)
    if user.pk == by.pk:
        raise UserDeactivationRefused("You cannot deactivate your own account.")
    user.is_active = False
    user.save(update_fields=["is_active"])
    Token.objects.filter(user=user).delete()
    return user


def token_issue(*, user: User, by: User | None = None) -> Token:
    """A fresh API token for `user`; any earlier token stops working.

    `by`: who asks, when it is someone else than `user` (UserManagementRefused when they may not
    manage `user`); None when users rotate their own token."""
    if by is not None:
        _check_may_manage(actor=by, target=user)
    with transaction.atomic():
        Token.objects.filter(user=user).delete()
        return Token.objects.create(user=user)


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class IssuedInvitation:
    """An invitation and its secret token; the token exists only here, never in the database."""

    invitation: Invitation
    token: str


def invitation_create(*, project: Project, role: str, created_by: User) -> IssuedInvitation:
    """A one-time link for a new person to join `project` as `role`, valid for 7 days."""
    _check_role(role)
    token = secrets.token_urlsafe(32)
    now = timezone.now()
    invitation = Invitation.objects.create(
        project=project,
        role=role,
        token_hash=_token_hash(token),
        created_by=created_by,
        created_at=now,
        expires_at=now + INVITATION_LIFETIME,
    )
    return IssuedInvitation(invitation=invitation, token=token)


def invitation_revoke(*, invitation: Invitation) -> None:
    """Withdraw an unused invitation: its link stops working."""
    Invitation.objects.filter(pk=invitation.pk, used_at__isnull=True).delete()


def invitation_check(*, token: str) -> Invitation:
    """The open invitation behind `token`, or InvitationInvalid("unknown"/"used"/"expired")."""
    invitation = (
        Invitation.objects.select_related("project").filter(token_hash=_token_hash(token)).first()
    )
    return _open_or_raise(invitation)


def _open_or_raise(invitation: Invitation | None) -> Invitation:
    if invitation is None or invitation.project.archived_at is not None:
        raise InvitationInvalid("unknown")
    if invitation.used_at is not None:
        raise InvitationInvalid("used")
    if invitation.expires_at <= timezone.now():
        raise InvitationInvalid("expired")
    return invitation


@transaction.atomic
def invitation_accept(*, token: str, username: str, password: str) -> User:
    """Create the invitee's account and membership, and use the invitation up.

    The invitation row is locked, so two submissions of the same link make one account."""
    invitation = _open_or_raise(
        Invitation.objects.select_for_update(of=("self",))
        .select_related("project")
        .filter(token_hash=_token_hash(token))
        .first()
    )
    user = user_create(username=username, password=password)
    Membership.objects.create(project=invitation.project, user=user, role=invitation.role)
    invitation.used_at = timezone.now()
    invitation.used_by = user
    invitation.save(update_fields=["used_at", "used_by"])
    return user
