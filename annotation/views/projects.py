"""My projects and the project overview. Each view: parse, call one selector or service, render."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from annotation.http import signed_in_user
from annotation.selectors.access import (
    project_access,
    project_list_for,
    project_overview,
    user_can_create_projects,
)


@login_required
@require_GET
def home(request: HttpRequest) -> HttpResponse:
    projects = project_list_for(user=signed_in_user(request))
    return render(
        request,
        "annotation/home.html",
        {"projects": projects, "can_create": user_can_create_projects(user=request.user)},
    )


@login_required
@require_GET
def overview(request: HttpRequest, slug: str) -> HttpResponse:
    access = project_access(user=request.user, slug=slug)
    stats = project_overview(access=access, user=signed_in_user(request))
    return render(
        request,
        "annotation/overview.html",
        {"access": access, "project": access.project, "stats": stats},
    )
