"""The training page: runs with live progress, versions, publish and roll back, download.

Leads and admins only (raters get 403, outsiders 404). Each view parses, calls one selector or
service, and renders; the run card polls itself while its run is active, and its last poll
tells the summary and the versions to refresh themselves (HX-Trigger).
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import User
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST
from django_htmx.middleware import HtmxDetails

from annotation.models import Membership
from annotation.selectors.access import project_access
from rewardtrain import selectors
from rewardtrain.models import TrainingRun
from rewardtrain.services.runs import TrainingRequestError, training_run_request
from rewardtrain.services.versions import PublishError, model_version_publish

LEAD = Membership.Role.LEAD
# The event a run card's last poll sends when its run has ended, and the parts of the page that
# listen for it (hx-trigger="training-run-finished from:body") and re-fetch themselves.
RUN_FINISHED_EVENT = "training-run-finished"
REFRESHED_PARTS = ("training-summary", "training-versions")


class SignedInRequest(HttpRequest):
    """What every view here receives: `login_required` lets only a signed-in user through, and
    django-htmx's middleware sets `htmx`."""

    user: User
    htmx: HtmxDetails


@login_required
@require_GET
def training(request: SignedInRequest, slug: str) -> HttpResponse:
    access = project_access(user=request.user, slug=slug, min_role=LEAD)
    page = selectors.training_page(project=access.project)
    template = "rewardtrain/training.html"
    target = request.htmx.target if request.htmx else None
    if target in REFRESHED_PARTS:
        template += f"#{target}"
    return render(request, template, {"access": access, "project": access.project, "page": page})


@login_required
@require_GET
def run_status(request: SignedInRequest, slug: str, run_id: int) -> HttpResponse:
    access = project_access(user=request.user, slug=slug, min_role=LEAD)
    run = selectors.training_run_get(run_id=run_id)
    if run is None or run.project_id != access.project.id:
        raise Http404("No such training run in this project.")
    response = render(
        request,
        "rewardtrain/training.html#run-card",
        {"access": access, "project": access.project, "card": selectors.run_card(run=run)},
    )
    if not run.is_active:
        # The card stops polling; the parts that depend on the run's end fetch themselves.
        response["HX-Trigger"] = RUN_FINISHED_EVENT
    return response


@login_required
@require_POST
def train_now(request: SignedInRequest, slug: str) -> HttpResponse:
    access = project_access(user=request.user, slug=slug, min_role=LEAD)
    try:
        run, created = training_run_request(
            project=access.project,
            trigger=TrainingRun.Trigger.MANUAL,
            user=request.user,
        )
    except TrainingRequestError as error:
        messages.error(request, str(error))
    else:
        if created:
            messages.success(
                request,
                f"Run {run.id} queued on the judgments so far (up to id "
                f"{run.data_cutoff_judgment_id}).",
            )
        else:
            messages.info(request, f"Run {run.id} is already {run.status}; it was not restarted.")
    return redirect("rewardtrain:training", slug=access.project.slug)


@login_required
@require_POST
def version_publish(request: SignedInRequest, slug: str, version: int) -> HttpResponse:
    access = project_access(user=request.user, slug=slug, min_role=LEAD)
    target = selectors.model_version_get(project=access.project, version=version)
    if target is None:
        raise Http404("No such model version in this project.")
    try:
        model_version_publish(version=target, user=request.user)
    except PublishError as error:
        messages.error(request, str(error))
    else:
        messages.success(request, f"v{target.version} is now the published model.")
    return redirect("rewardtrain:training", slug=access.project.slug)


@login_required
@require_GET
def version_download(
    request: SignedInRequest, slug: str, version: int
) -> HttpResponse | StreamingHttpResponse:
    access = project_access(user=request.user, slug=slug, min_role=LEAD)
    target = selectors.model_version_get(project=access.project, version=version)
    if target is None:
        raise Http404("No such model version in this project.")
    try:
        archive = selectors.model_version_archive(version=target)
    except selectors.ArchiveError as error:
        return HttpResponse(str(error), status=409, content_type="text/plain; charset=utf-8")
    return StreamingHttpResponse(archive.chunks, headers=archive.headers)
