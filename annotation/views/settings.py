"""Creating a project (see `user_can_create_projects`) and editing its settings (project admins),
with a live Markdown preview of the guidelines."""

from __future__ import annotations

import copy

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from annotation.forms import GUIDELINES_MAX_CHARS, ProjectCreateForm, ProjectForm
from annotation.http import signed_in_user
from annotation.models import Membership
from annotation.selectors.access import (
    PROJECT_CREATORS,
    project_access,
    user_can_create_projects,
)
from annotation.services.projects import project_create, project_update

TEMPLATE = "annotation/project_form.html"


@login_required
@require_http_methods(["GET", "POST"])
def project_create_page(request: HttpRequest) -> HttpResponse:
    if not user_can_create_projects(user=request.user):
        # A page that says who may and whom to ask, not a bare 403.
        return render(
            request,
            "annotation/project_create_refused.html",
            {"creators": PROJECT_CREATORS},
            status=403,
        )
    form = ProjectCreateForm(request.POST or None, show_paths=request.user.is_staff)
    if request.method == "POST" and form.is_valid():
        fields = dict(form.cleaned_data)
        project = project_create(
            slug=fields.pop("slug"),
            name=fields.pop("name"),
            created_by=signed_in_user(request),
            **fields,
        )
        messages.success(
            request,
            f"Project “{project.name}” created. You are its admin. "
            "Next: upload a batch of prompts and responses to rate.",
        )
        return redirect("annotation:batches", slug=project.slug)
    return render(request, TEMPLATE, {"form": form, "project": None})


@login_required
@require_http_methods(["GET", "POST"])
def project_settings(request: HttpRequest, slug: str) -> HttpResponse:
    access = project_access(user=request.user, slug=slug, min_role=Membership.Role.ADMIN)
    # A copy: an invalid form must not rename the project shown in the page's header.
    form = ProjectForm(
        request.POST or None,
        instance=copy.copy(access.project),
        show_paths=request.user.is_staff,
    )
    if request.method == "POST" and form.is_valid():
        project = project_update(project=access.project, **form.cleaned_data)
        messages.success(request, "Settings saved.")
        return redirect("annotation:project-settings", slug=project.slug)
    return render(request, TEMPLATE, {"form": form, "project": access.project, "access": access})


@login_required
@require_POST
def guidelines_preview(request: HttpRequest) -> HttpResponse:
    """The guidelines as raters will see them. Renders only what the caller sent, so it needs no
    project; the text is untrusted Markdown and goes through the sanitising `markdown` filter."""
    text = request.POST.get("guidelines", "")
    too_long = len(text) > GUIDELINES_MAX_CHARS
    return render(
        request,
        f"{TEMPLATE}#guidelines-preview",
        {"preview": "" if too_long else text, "too_long": too_long},
    )
