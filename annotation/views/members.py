"""Members and roles of a project (project admins), one-time invitation links, the public page
that accepts them, and each user's own API token.

Secrets (an invitation link, an API token) are rendered once in the POST response itself, never
stored in the session or a message cookie, and the response is marked no-store.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from annotation.forms import InvitationAcceptForm, InvitationForm, MemberAddForm, RoleForm
from annotation.http import signed_in_user
from annotation.models import Invitation, Membership
from annotation.selectors.access import ProjectAccess, project_access
from annotation.selectors.people import (
    invitation_list_open,
    member_list,
    token_for,
    user_manage_refusal,
    users_deactivatable_by,
)
from annotation.services.projects import (
    AlreadyMember,
    InvitationInvalid,
    IssuedInvitation,
    MembershipRefused,
    UserDeactivationRefused,
    UserManagementRefused,
    invitation_accept,
    invitation_check,
    invitation_create,
    invitation_revoke,
    membership_add,
    membership_remove,
    membership_role_set,
    token_issue,
    user_deactivate,
)
from annotation.views.confirm import Confirmation, confirm_page, confirmed

ADMIN = Membership.Role.ADMIN
INVALID_INVITATION = {
    "unknown": "This invitation link is not valid. Check that you copied all of it.",
    "used": "This invitation link has already been used. Log in with the account made from it.",
    "expired": "This invitation link has expired. Ask a project admin for a new one.",
}


def _members_page(
    request: HttpRequest,
    access: ProjectAccess,
    *,
    add_form: MemberAddForm | None = None,
    issued: IssuedInvitation | None = None,
    status: int = 200,
) -> HttpResponse:
    members = list(member_list(project=access.project))
    context: dict[str, Any] = {
        "access": access,
        "project": access.project,
        "members": members,
        "deactivatable": users_deactivatable_by(actor=signed_in_user(request), members=members),
        "invitations": invitation_list_open(project=access.project),
        "add_form": add_form or MemberAddForm(),
        "invite_form": InvitationForm(),
        "roles": Membership.Role.choices,
        "issued": issued,
    }
    if issued is not None:
        context["invite_url"] = request.build_absolute_uri(
            reverse("invite-accept", args=[issued.token])
        )
    return render(request, "annotation/members.html", context, status=status)


def _back(slug: str) -> HttpResponse:
    return redirect("annotation:members", slug=slug)


def _confirm(
    request: HttpRequest, access: ProjectAccess, *, title: str, consequence: str, button: str
) -> HttpResponse:
    """The confirmation step of a members action; its form posts back to the same URL."""
    confirmation = Confirmation(
        title=title,
        consequence=consequence,
        action_url=request.path,
        button=button,
        back_url=reverse("annotation:members", args=[access.project.slug]),
    )
    return confirm_page(request, confirmation, access=access, project=access.project)


@login_required
@require_GET
def members(request: HttpRequest, slug: str) -> HttpResponse:
    access = project_access(user=request.user, slug=slug, min_role=ADMIN)
    return _members_page(request, access)


@login_required
@require_POST
def member_add(request: HttpRequest, slug: str) -> HttpResponse:
    access = project_access(user=request.user, slug=slug, min_role=ADMIN)
    form = MemberAddForm(request.POST)
    if not form.is_valid():
        return _members_page(request, access, add_form=form, status=400)
    user: User = form.cleaned_data["username"]
    try:
        membership_add(project=access.project, user=user, role=form.cleaned_data["role"])
    except AlreadyMember as refusal:
        form.add_error("username", str(refusal))
        return _members_page(request, access, add_form=form, status=400)
    messages.success(request, f"{user.get_username()} added as {form.cleaned_data['role']}.")
    return _back(slug)


@login_required
@require_POST
def member_role(request: HttpRequest, slug: str, membership_id: int) -> HttpResponse:
    access = project_access(user=request.user, slug=slug, min_role=ADMIN)
    membership = get_object_or_404(
        Membership.objects.select_related("user"), id=membership_id, project=access.project
    )
    form = RoleForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose one of the roles: rater, lead or admin.")
        return _back(slug)
    try:
        membership_role_set(
            project=access.project, user=membership.user, role=form.cleaned_data["role"]
        )
    except MembershipRefused as refusal:
        messages.error(request, str(refusal))
    else:
        messages.success(
            request, f"{membership.user.get_username()} is now {form.cleaned_data['role']}."
        )
    return _back(slug)


@login_required
@require_http_methods(["GET", "POST"])
def member_remove(request: HttpRequest, slug: str, membership_id: int) -> HttpResponse:
    access = project_access(user=request.user, slug=slug, min_role=ADMIN)
    membership = get_object_or_404(
        Membership.objects.select_related("user"), id=membership_id, project=access.project
    )
    if not confirmed(request):
        name = membership.user.get_username()
        return _confirm(
            request,
            access,
            title=f"Remove {name} from {access.project.name}?",
            consequence=f"{name} loses access to this project at once. Their judgments are kept; "
            "you can add them again later.",
            button=f"Remove {name}",
        )
    try:
        membership_remove(project=access.project, user=membership.user)
    except MembershipRefused as refusal:
        messages.error(request, str(refusal))
    else:
        messages.success(
            request,
            f"{membership.user.get_username()} removed from the project; their judgments are kept.",
        )
    return _back(slug)


@login_required
@require_http_methods(["GET", "POST"])
def member_deactivate(request: HttpRequest, slug: str, membership_id: int) -> HttpResponse:
    access = project_access(user=request.user, slug=slug, min_role=ADMIN)
    membership = get_object_or_404(
        Membership.objects.select_related("user"), id=membership_id, project=access.project
    )
    refusal = user_manage_refusal(actor=signed_in_user(request), target=membership.user)
    if refusal is not None:
        raise PermissionDenied(refusal)
    if not confirmed(request):
        name = membership.user.get_username()
        return _confirm(
            request,
            access,
            title=f"Deactivate the account {name}?",
            consequence=f"This is site-wide, not only this project: {name} can no longer log in "
            "or use the API in any project, and their API token is deleted. Their judgments and "
            "memberships stay. Site staff can activate the account again in the Django admin.",
            button=f"Deactivate {name}",
        )
    try:
        user_deactivate(user=membership.user, by=signed_in_user(request))
    except UserManagementRefused as refusal:
        raise PermissionDenied(str(refusal)) from refusal
    except UserDeactivationRefused as refusal:
        messages.error(request, str(refusal))
    else:
        messages.success(
            request,
            f"The account {membership.user.get_username()} is deactivated: "
            "it can no longer log in or use the API.",
        )
    return _back(slug)


@never_cache
@login_required
@require_POST
def invitation_new(request: HttpRequest, slug: str) -> HttpResponse:
    access = project_access(user=request.user, slug=slug, min_role=ADMIN)
    form = InvitationForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose the role the invited person will have.")
        return _back(slug)
    issued = invitation_create(
        project=access.project,
        role=form.cleaned_data["role"],
        created_by=signed_in_user(request),
    )
    return _members_page(request, access, issued=issued, status=201)


@login_required
@require_POST
def invitation_delete(request: HttpRequest, slug: str, invitation_id: int) -> HttpResponse:
    access = project_access(user=request.user, slug=slug, min_role=ADMIN)
    invitation = get_object_or_404(Invitation, id=invitation_id, project=access.project)
    invitation_revoke(invitation=invitation)
    messages.success(request, "Invitation revoked: its link no longer works.")
    return _back(slug)


@never_cache
@require_http_methods(["GET", "POST"])
def invite_accept(request: HttpRequest, token: str) -> HttpResponse:
    """Public: the invitee chooses a username and password, is logged in and joins the project."""
    try:
        invitation = invitation_check(token=token)
    except InvitationInvalid as invalid:
        return _invalid_invitation(request, invalid.reason)
    form = InvitationAcceptForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            user = invitation_accept(
                token=token,
                username=form.cleaned_data["username"],
                password=form.cleaned_data["password1"],
            )
        except InvitationInvalid as invalid:
            return _invalid_invitation(request, invalid.reason)
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        messages.success(request, f"Welcome, {user.get_username()}: you joined this project.")
        return redirect("annotation:overview", slug=invitation.project.slug)
    status = 400 if request.method == "POST" else 200
    return render(
        request,
        "annotation/invite_accept.html",
        {"invitation": invitation, "form": form},
        status=status,
    )


def _invalid_invitation(request: HttpRequest, reason: str) -> HttpResponse:
    """The page for a link that is unknown (404), used or expired (410 Gone)."""
    return render(
        request,
        "annotation/invite_accept.html",
        {"invalid": INVALID_INVITATION[reason]},
        status=404 if reason == "unknown" else 410,
    )


def _token_rotation() -> Confirmation:
    url = reverse("annotation:my-token")
    return Confirmation(
        title="Make a new API token?",
        consequence="Your current token stops working at once: scripts that use it get 401 "
        "until they are given the new one, which is shown only once.",
        action_url=url,
        button="Make a new token",
        back_url=url,
    )


@never_cache
@login_required
@require_http_methods(["GET", "POST"])
def my_token(request: HttpRequest) -> HttpResponse:
    """Any logged-in user creates or rotates their own API token; the key is shown once.
    Rotating stops the old token at once, so it is confirmed first."""
    key = None
    existing = token_for(user=signed_in_user(request))
    if request.method == "POST":
        if existing is not None and not confirmed(request):
            return confirm_page(request, _token_rotation())
        key = token_issue(user=signed_in_user(request)).key
        existing = token_for(user=signed_in_user(request))
    return render(request, "annotation/my_token.html", {"key": key, "existing": existing})
