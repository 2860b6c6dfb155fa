"""The confirmation step of destructive actions: deactivating an account, removing a member,
rotating an API token, retiring a batch.

It works without JavaScript: a GET of the action's URL, or a POST without the `confirm` field,
answers a page in the site's layout that says what will happen, and its button POSTs again with
`confirm=yes`. Only that second POST acts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render


@dataclass(frozen=True, kw_only=True)
class Confirmation:
    title: str  # the question, e.g. "Remove rita from Alpha?"
    consequence: str  # what happens, and what does not
    action_url: str  # where the confirming POST goes
    button: str  # the button's words, e.g. "Remove rita"
    back_url: str  # where "Cancel" leads


def confirmed(request: HttpRequest) -> bool:
    """Whether this request is the confirming POST."""
    return request.method == "POST" and request.POST.get("confirm") == "yes"


def confirm_page(request: HttpRequest, confirmation: Confirmation, **context: Any) -> HttpResponse:
    """The confirmation page; `context` carries what the layout's nav needs (project, access)."""
    return render(request, "confirm.html", {"confirmation": confirmation, **context})
