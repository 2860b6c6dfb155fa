"""Forms of the annotation pages. Every ModelForm names its fields: nothing a browser adds to a
POST (is_staff, role, archived_at, stats, ...) can reach a model it was not meant for."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

from django import forms
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth import password_validation
from django.contrib.auth.forms import AuthenticationForm
from django.contrib.auth.models import User
from django.contrib.auth.validators import UnicodeUsernameValidator
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError

from annotation.models import Membership, Project
from annotation.selectors.server_paths import BaseModelRefused, base_model_resolve
from annotation.services.login_throttle import (
    client_ip,
    login_blocked_until,
    login_failure_record,
    login_success_record,
    minutes_until,
)
from annotation.services.projects import PROJECT_EDITABLE_FIELDS

GUIDELINES_MAX_CHARS = 100_000
CRITERIA_MAX = 10
CRITERION_MAX_CHARS = 40
_CRITERION = re.compile(r"^[\w][\w \-]*$")


# The mixin's base for the type checker: the login forms it is mixed into.
if TYPE_CHECKING:
    _LoginFormBase = AuthenticationForm
else:
    _LoginFormBase = object


class RateLimitedLoginMixin(_LoginFormBase):
    """Refuses a login, before the password is checked, once the username or the client address
    has too many recent failures; counts each failure; clears the username's count on success."""

    RATE_LIMITED_MESSAGE = (
        "Too many failed logins for this account or from this address. "
        "Try again in %(minutes)d minute(s), or ask a project admin to reset your password."
    )

    @property
    def rate_limited(self) -> bool:
        return self.has_error(NON_FIELD_ERRORS, code="rate_limited")

    def clean(self) -> dict[str, Any]:
        username = self.cleaned_data.get("username") or ""
        ip = client_ip(self.request) if self.request is not None else None
        until = login_blocked_until(username=username, ip=ip)
        if until is not None:
            raise ValidationError(
                self.RATE_LIMITED_MESSAGE,
                code="rate_limited",
                params={"minutes": minutes_until(until)},
            )
        try:
            cleaned: dict[str, Any] = super().clean()
        except ValidationError:
            login_failure_record(username=username, ip=ip)
            raise
        login_success_record(username=username)
        return cleaned


class LoginForm(RateLimitedLoginMixin, AuthenticationForm):
    pass


class AdminLoginForm(RateLimitedLoginMixin, AdminAuthenticationForm):
    """The Django admin's login, under the same limits: it must not be a way around them."""


class CriteriaField(forms.CharField):
    """Criteria typed as "helpfulness, harmlessness", stored as a list of names."""

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, list):
            return ", ".join(str(name) for name in value)
        return value

    def to_python(self, value: Any) -> list[str]:  # type: ignore[override]  # names, not text
        text = super().to_python(value) or ""
        names = [name.strip() for name in text.split(",") if name.strip()]
        if len(names) > CRITERIA_MAX:
            raise ValidationError(f"At most {CRITERIA_MAX} criteria, separated by commas.")
        for name in names:
            if len(name) > CRITERION_MAX_CHARS or not _CRITERION.match(name):
                raise ValidationError(
                    f"Criterion “{name[:CRITERION_MAX_CHARS]}” must be at most "
                    f"{CRITERION_MAX_CHARS} letters, digits, spaces, - or _."
                )
        lowered = [name.lower() for name in names]
        duplicates = sorted({name for name in lowered if lowered.count(name) > 1})
        if duplicates:
            raise ValidationError(f"Criterion listed twice: {', '.join(duplicates)}.")
        return names


class TrainConfigField(forms.JSONField):
    """A JSON object of training options; no options show as an empty box, not `null` or `{}`."""

    def prepare_value(self, value: Any) -> Any:
        if value is None or value == {}:
            return ""
        return super().prepare_value(value)


class ProjectForm(forms.ModelForm):
    """The settings of an existing project (the slug is fixed once created)."""

    guidelines = forms.CharField(
        required=False,
        max_length=GUIDELINES_MAX_CHARS,
        strip=False,
        widget=forms.Textarea(attrs={"rows": 12}),
        help_text="Markdown, shown to raters beside every pair.",
    )
    criteria = CriteriaField(
        required=False,
        max_length=CRITERIA_MAX * (CRITERION_MAX_CHARS + 2),
        help_text="Optional, comma-separated, e.g. helpfulness, harmlessness. "
        "Raters then choose per criterion too.",
    )
    train_config = TrainConfigField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 4, "class": "mono"}),
        help_text='A JSON object of training options, e.g. {"epochs": 2, "learning_rate": 3e-5}; '
        "empty for the defaults.",
    )

    def __init__(self, *args: Any, show_paths: bool = False, **kwargs: Any) -> None:
        """`show_paths`: errors may name server paths (site staff only)."""
        super().__init__(*args, **kwargs)
        self.show_paths = show_paths

    class Meta:
        model = Project
        fields = list(PROJECT_EDITABLE_FIELDS)  # the form edits exactly what the service may change
        labels = {
            "use_strength": "Ask for strength",
            "rationale": "Rationale",
            "max_raters_per_pair": "Max raters per pair",
            "retrain_min_new_judgments": "Retrain after this many new judgments",
            "full_retrain_every": "Full retrain every Nth version",
            "promote_min_gain": "Publish when better by (accuracy points)",
            "exploration_share": "Random share in the uncertainty order (0 to 1)",
            "flag_threshold": "Hold a pair for review after this many flags",
            "too_fast_ms": "Too fast below (ms, median per pair)",
            "min_gold_accuracy": "Minimum gold accuracy (0 to 1)",
            "min_agreement": "Minimum agreement with the others (0 to 1)",
            "quality_min_judgments": "Judge a rater after this many judgments",
            "auto_pause": "Pause flagged raters automatically",
            "aggregation": "Label each pair by",
            "min_posterior": "Minimum p_chosen (0.5 to 1)",
        }
        help_texts = {
            "base_model": "Blank for the bundled MiniLM, or a model directory under one of the "
            "base model roots the operator allows (BASE_MODEL_ROOTS).",
        }

    def clean_train_config(self) -> dict[str, Any]:
        value = self.cleaned_data.get("train_config")
        if value in (None, ""):
            return {}
        if not isinstance(value, dict):
            raise ValidationError(
                f'Must be a JSON object such as {{"epochs": 2}}, not {json.dumps(value)[:40]}.'
            )
        if "base_model" in value:
            raise ValidationError("Set the base model in its own field, not in the train config.")
        return value

    def clean_base_model(self) -> str:
        value: str = self.cleaned_data.get("base_model", "").strip()
        if not value:
            return ""
        try:
            base_model_resolve(value)
        except BaseModelRefused as refusal:
            raise ValidationError(refusal.detail if self.show_paths else refusal.public) from None
        return value

    def clean(self) -> dict[str, Any]:
        cleaned: dict[str, Any] = super().clean() or {}
        needed = cleaned.get("raters_per_pair")
        cap = cleaned.get("max_raters_per_pair")
        if needed is not None and cap is not None and cap < needed:
            self.add_error(
                "max_raters_per_pair",
                f"Must be at least the raters per pair ({needed}).",
            )
        return cleaned


class ProjectCreateForm(ProjectForm):
    """A new project: the settings plus its slug, which is fixed from then on."""

    class Meta(ProjectForm.Meta):
        fields = ["slug", *ProjectForm.Meta.fields]
        help_texts = {
            **ProjectForm.Meta.help_texts,
            "slug": "Lower-case letters, digits and -; used in URLs; cannot change.",
        }

    def clean_slug(self) -> str:
        slug: str = self.cleaned_data["slug"].lower()
        if Project.objects.filter(slug=slug).exists():
            raise ValidationError(f"A project with the slug “{slug}” already exists.")
        return slug


class MemberAddForm(forms.Form):
    username = forms.CharField(max_length=150)
    role = forms.ChoiceField(choices=Membership.Role.choices, initial=Membership.Role.RATER)

    def clean_username(self) -> User:
        username = self.cleaned_data["username"].strip()
        user = User.objects.filter(username=username, is_active=True).first()
        if user is None:
            raise ValidationError(
                f"No active account “{username}”. Invite a new person with a link instead."
            )
        return user


class RoleForm(forms.Form):
    role = forms.ChoiceField(choices=Membership.Role.choices)


class InvitationForm(forms.Form):
    role = forms.ChoiceField(choices=Membership.Role.choices, initial=Membership.Role.RATER)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Its own ids: the members page also holds MemberAddForm, whose role is id_role.
        kwargs.setdefault("auto_id", "id_invite_%s")
        super().__init__(*args, **kwargs)


class InvitationAcceptForm(forms.Form):
    """The invitee chooses a username and a password (Django's password validators apply)."""

    username = forms.CharField(
        max_length=150,
        validators=[UnicodeUsernameValidator()],
        help_text="Letters, digits and @ . + - _ only.",
        widget=forms.TextInput(attrs={"autocomplete": "username"}),
    )
    password1 = forms.CharField(
        label="Password",
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
        help_text=password_validation.password_validators_help_text_html(),
    )
    password2 = forms.CharField(
        label="Password again",
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )

    def clean_username(self) -> str:
        username: str = self.cleaned_data["username"]
        if User.objects.filter(username__iexact=username).exists():
            raise ValidationError(f"The username “{username}” is taken; choose another.")
        return username

    def clean(self) -> dict[str, Any]:
        cleaned: dict[str, Any] = super().clean() or {}
        password1 = cleaned.get("password1")
        password2 = cleaned.get("password2")
        if password1 and password2 and password1 != password2:
            self.add_error("password2", "The two passwords differ.")
        elif password1:
            candidate = User(username=cleaned.get("username", ""))
            try:
                password_validation.validate_password(password1, user=candidate)
            except ValidationError as error:
                self.add_error("password1", error)
        return cleaned
