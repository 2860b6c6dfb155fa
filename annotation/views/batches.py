"""The batches page: upload a file, see its dry run, import it, follow a large import, retire.

Leads see the list; admins upload, import and retire. Each step is a plain form that htmx
enhances: without JavaScript the whole page comes back with the step's result in it.
"""

from __future__ import annotations

from django import forms
from django.contrib.auth.decorators import login_required
from django.http import FileResponse, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from annotation.http import HtmxHttpRequest, signed_in_user
from annotation.models import Batch, Membership
from annotation.selectors.access import ProjectAccess, project_access
from annotation.selectors.batches import batch_get, batch_list
from annotation.services.imports import (
    ImportRejected,
    batch_retire,
    batch_unretire,
    upload_check,
    upload_import,
)
from annotation.services.imports.rejects import rejects_response
from annotation.views.confirm import Confirmation, confirm_page, confirmed

ADMIN = Membership.Role.ADMIN
LEAD = Membership.Role.LEAD
FORMAT_CHOICES = [("", "Detect from the file"), *Batch.Format.choices]
KNOWN_CHOICES = [
    (Batch.KnownAnswers.GOLD, Batch.KnownAnswers.GOLD.label),
    (Batch.KnownAnswers.SEED, Batch.KnownAnswers.SEED.label),
]


class UploadForm(forms.Form):
    file = forms.FileField(label="File (.jsonl, .csv, or either gzipped)")
    format = forms.ChoiceField(choices=FORMAT_CHOICES, required=False)
    known_answers = forms.ChoiceField(
        choices=KNOWN_CHOICES,
        initial=Batch.KnownAnswers.GOLD,
        required=False,
        label="Preference files (chosen/rejected) become",
        widget=forms.RadioSelect,
    )


class ImportForm(forms.Form):
    token = forms.RegexField(regex=r"^[A-Za-z0-9_-]{32}$")
    known_answers = forms.ChoiceField(
        choices=[(Batch.KnownAnswers.NONE, "none"), *KNOWN_CHOICES], required=False
    )
    allow_duplicate = forms.BooleanField(required=False)
    on_invalid = forms.ChoiceField(
        choices=Batch.OnInvalid.choices, required=False, initial=Batch.OnInvalid.REFUSE
    )


def _page(
    request: HtmxHttpRequest, access: ProjectAccess, part: str, context: dict
) -> HttpResponse:
    template = "annotation/batches.html"
    if request.htmx:
        template += f"#{part}"
    else:
        context.setdefault("form", UploadForm())
    return render(
        request,
        template,
        {
            "access": access,
            "project": access.project,
            "batches": batch_list(project=access.project),
            "current": "batches",
            **context,
        },
    )


@login_required
@require_http_methods(["GET", "POST"])
def batches(request: HtmxHttpRequest, slug: str) -> HttpResponse:
    """GET: the list (and, for admins, the upload form). POST: the dry run of an upload."""
    if request.method == "GET":
        access = project_access(user=request.user, slug=slug, min_role=LEAD)
        return _page(request, access, "batch-list", {"form": UploadForm()})
    access = project_access(user=request.user, slug=slug, min_role=ADMIN)
    form = UploadForm(request.POST, request.FILES)
    if not form.is_valid():
        return _page(request, access, "upload-result", {"form": form, "form_errors": True})
    upload = form.cleaned_data["file"]
    try:
        dry_run = upload_check(
            project=access.project,
            user=signed_in_user(request),
            fileobj=upload,
            filename=upload.name or "upload",
            format=form.cleaned_data["format"] or None,
        )
    except ImportRejected as rejected:
        return _page(request, access, "upload-result", {"form": form, "rejected": rejected})
    return _page(
        request,
        access,
        "upload-result",
        {
            "form": form,
            "dry_run": dry_run,
            "known_answers": form.cleaned_data["known_answers"] or Batch.KnownAnswers.GOLD,
        },
    )


@login_required
@require_POST
def batch_import(request: HtmxHttpRequest, slug: str) -> HttpResponse:
    """Import an upload whose dry run was clean: now, or in a worker for a large file."""
    access = project_access(user=request.user, slug=slug, min_role=ADMIN)
    form = ImportForm(request.POST)
    if not form.is_valid():
        return _page(request, access, "upload-result", {"form_errors": True})
    token = form.cleaned_data["token"]
    try:
        outcome = upload_import(
            project=access.project,
            user=signed_in_user(request),
            token=token,
            known_answers=form.cleaned_data["known_answers"] or Batch.KnownAnswers.NONE,
            allow_duplicate=form.cleaned_data["allow_duplicate"],
            on_invalid=form.cleaned_data["on_invalid"] or Batch.OnInvalid.REFUSE,
        )
    except ImportRejected as rejected:
        return _page(
            request,
            access,
            "upload-result",
            {
                "rejected": rejected,
                "token": token,
                "known_answers": form.cleaned_data["known_answers"],
                "on_invalid": form.cleaned_data["on_invalid"],
            },
        )
    return _page(request, access, "upload-result", {"imported": outcome.batch})


@login_required
@require_GET
def batch_rejects(request: HttpRequest, slug: str, batch_id: int) -> FileResponse:
    """Download the records an on_invalid=skip import left out, as they were uploaded."""
    access = project_access(user=request.user, slug=slug, min_role=LEAD)
    return rejects_response(batch_get(project=access.project, batch_id=batch_id))


@login_required
@require_GET
def batch_progress(request: HtmxHttpRequest, slug: str, batch_id: int) -> HttpResponse:
    """The progress of a large import; the fragment polls itself until the batch is done."""
    access = project_access(user=request.user, slug=slug, min_role=LEAD)
    batch = batch_get(project=access.project, batch_id=batch_id)
    if not request.htmx:
        return redirect("annotation:batches", slug=slug)
    return render(
        request,
        "annotation/batches.html#batch-progress",
        {"access": access, "project": access.project, "batch": batch},
    )


def _retire_or_unretire(
    request: HtmxHttpRequest, slug: str, batch_id: int, retire: bool
) -> HttpResponse:
    access = project_access(user=request.user, slug=slug, min_role=ADMIN)
    batch = batch_get(project=access.project, batch_id=batch_id)
    if retire and not confirmed(request):
        confirmation = Confirmation(
            title=f"Retire the batch {batch.filename}?",
            consequence=f"Its {batch.pairs_created} pairs stop being served to raters at once; "
            "the judgments already made stay and are still exported. You can serve it again.",
            action_url=request.path,
            button="Retire the batch",
            back_url=reverse("annotation:batches", args=[slug]),
        )
        return confirm_page(request, confirmation, access=access, project=access.project)
    batch = batch_retire(batch=batch) if retire else batch_unretire(batch=batch)
    if not request.htmx:
        return redirect("annotation:batches", slug=slug)
    return render(
        request,
        "annotation/batches.html#batch-row",
        {"access": access, "project": access.project, "batch": batch},
    )


@login_required
@require_http_methods(["GET", "POST"])
def batch_retire_view(request: HtmxHttpRequest, slug: str, batch_id: int) -> HttpResponse:
    """Stop serving the batch's pairs; its judgments stay. Confirmed first (GET: the question)."""
    return _retire_or_unretire(request, slug, batch_id, retire=True)


@login_required
@require_POST
def batch_unretire_view(request: HtmxHttpRequest, slug: str, batch_id: int) -> HttpResponse:
    """Serve a retired batch's pairs again."""
    return _retire_or_unretire(request, slug, batch_id, retire=False)
