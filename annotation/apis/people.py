"""Projects, users, tokens and memberships in the JSON API."""

from __future__ import annotations

import copy

from django.contrib.auth import get_user_model
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.permissions import IsAdminUser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation.apis.strict import StrictFieldsMixin, reject_unknown_fields, unknown_fields_error
from annotation.forms import ProjectForm
from annotation.http import signed_in_user
from annotation.models import Membership, Project
from annotation.selectors.access import (
    PROJECT_CREATORS,
    project_access,
    project_list_for,
    user_can_create_projects,
)
from annotation.services.projects import (
    PROJECT_EDITABLE_FIELDS,
    AlreadyMember,
    MembershipRefused,
    UserManagementRefused,
    membership_add,
    membership_remove,
    membership_role_set,
    project_create,
    project_update,
    token_issue,
    user_create,
)

User = get_user_model()


class ProjectOutputSerializer(serializers.ModelSerializer):
    my_role = serializers.CharField(read_only=True, allow_null=True)

    class Meta:
        model = Project
        fields = [
            "slug",
            "name",
            "guidelines",
            "raters_per_pair",
            "choice_scheme",
            "use_strength",
            "criteria",
            "rationale",
            "gold_rate",
            "my_role",
            "stats",
            "created_at",
        ]
        read_only_fields = fields


class ProjectInputSerializer(StrictFieldsMixin, serializers.Serializer):
    slug = serializers.SlugField(max_length=64)
    name = serializers.CharField(max_length=200)
    guidelines = serializers.CharField(required=False, allow_blank=True, default="")
    raters_per_pair = serializers.IntegerField(min_value=1, max_value=50, default=3)
    choice_scheme = serializers.ChoiceField(
        choices=Project.ChoiceScheme.choices, default=Project.ChoiceScheme.AB_TIE_BAD
    )
    use_strength = serializers.BooleanField(default=True)
    rationale = serializers.ChoiceField(
        choices=Project.Rationale.choices, default=Project.Rationale.OPTIONAL
    )
    max_raters_per_pair = serializers.IntegerField(
        min_value=1,
        max_value=50,
        required=False,
        help_text="The overlap cap; at least raters_per_pair (default: that, or 5 if more).",
    )

    def validate_slug(self, value: str) -> str:
        if Project.objects.filter(slug=value).exists():
            raise serializers.ValidationError("A project with this slug already exists.")
        return value

    def validate(self, attrs: dict) -> dict:
        attrs.setdefault("max_raters_per_pair", max(attrs["raters_per_pair"], 5))
        if attrs["max_raters_per_pair"] < attrs["raters_per_pair"]:
            raise serializers.ValidationError(
                {"max_raters_per_pair": ["Must be at least raters_per_pair."]}
            )
        return attrs


class ProjectListCreateApi(APIView):
    """Projects I belong to; staff and holders of `annotation.add_project` create new ones (and
    become their admin)."""

    @extend_schema(responses=ProjectOutputSerializer(many=True))
    def get(self, request: Request) -> Response:
        projects = project_list_for(user=signed_in_user(request))
        return Response(ProjectOutputSerializer(projects, many=True).data)

    @extend_schema(request=ProjectInputSerializer, responses={201: ProjectOutputSerializer})
    def post(self, request: Request) -> Response:
        if not user_can_create_projects(user=request.user):
            return Response(
                {"detail": f"Projects are created by {PROJECT_CREATORS}."},
                status=status.HTTP_403_FORBIDDEN,
            )
        serializer = ProjectInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        project = project_create(created_by=signed_in_user(request), **serializer.validated_data)
        role = Membership.Role.ADMIN
        project.my_role = role  # type: ignore[attr-defined]  # what project_list_for annotates
        return Response(ProjectOutputSerializer(project).data, status=status.HTTP_201_CREATED)


class ProjectSettingsSerializer(serializers.ModelSerializer):
    """Every setting the settings page edits, as it stores them."""

    class Meta:
        model = Project
        fields = ["slug", *PROJECT_EDITABLE_FIELDS]
        read_only_fields = fields


def _settings_form(project: Project, changes: dict) -> ProjectForm:
    """The settings page's own form over the project's settings with `changes` applied, so the
    API and the page validate by the same rules."""
    form = ProjectForm(instance=project)
    data = {name: form.fields[name].prepare_value(getattr(project, name)) for name in form.fields}
    for name, value in changes.items():
        data[name] = (
            ", ".join(map(str, value)) if name == "criteria" and isinstance(value, list) else value
        )
    return ProjectForm(data=data, instance=copy.copy(project))


class ProjectDetailApi(APIView):
    """A project's settings: members read them, admins change any of them (PATCH)."""

    @extend_schema(responses=ProjectSettingsSerializer)
    def get(self, request: Request, slug: str) -> Response:
        access = project_access(user=request.user, slug=slug)
        return Response(ProjectSettingsSerializer(access.project).data)

    @extend_schema(
        request=inline_serializer(
            "ProjectSettingsPatch",
            {name: serializers.JSONField(required=False) for name in PROJECT_EDITABLE_FIELDS},
        ),
        responses=ProjectSettingsSerializer,
    )
    def patch(self, request: Request, slug: str) -> Response:
        access = project_access(user=request.user, slug=slug, min_role=Membership.Role.ADMIN)
        if errors := unknown_fields_error(request.data, PROJECT_EDITABLE_FIELDS):
            return Response(errors, status=status.HTTP_400_BAD_REQUEST)
        form = _settings_form(access.project, dict(request.data))
        if not form.is_valid():
            return Response(form.errors, status=status.HTTP_400_BAD_REQUEST)
        project = project_update(project=access.project, **form.cleaned_data)
        return Response(ProjectSettingsSerializer(project).data)


class UserOutputSerializer(serializers.ModelSerializer):
    email = serializers.CharField(read_only=True, help_text="Empty when none was given.")

    class Meta:
        model = User
        fields = ["id", "username", "email", "is_staff", "is_active", "date_joined"]
        read_only_fields = fields


class UserInputSerializer(StrictFieldsMixin, serializers.Serializer):
    username = serializers.RegexField(r"^[\w.@+-]{1,150}$")
    email = serializers.EmailField(required=False, allow_blank=True, default="")
    password = serializers.CharField(
        required=False, write_only=True, min_length=10, max_length=128, allow_null=True
    )

    def validate_username(self, value: str) -> str:
        if User.objects.filter(username=value).exists():
            raise serializers.ValidationError("A user with this username already exists.")
        return value


class UserListCreateApi(APIView):
    """Accounts (staff only). There is no open sign-up: staff create every account."""

    permission_classes = [IsAdminUser]

    @extend_schema(responses=UserOutputSerializer(many=True))
    def get(self, request: Request) -> Response:
        users = User.objects.order_by("username")
        return Response(UserOutputSerializer(users, many=True).data)

    @extend_schema(request=UserInputSerializer, responses={201: UserOutputSerializer})
    def post(self, request: Request) -> Response:
        serializer = UserInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        user = user_create(**serializer.validated_data)
        return Response(UserOutputSerializer(user).data, status=status.HTTP_201_CREATED)


class TokenOutputSerializer(serializers.Serializer):
    token = serializers.CharField()


class UserTokenIssueApi(APIView):
    """A new API token for a user; it replaces the user's previous token.

    Staff issue tokens for themselves and plain users; only a superuser issues one for another
    staff user or superuser."""

    permission_classes = [IsAdminUser]

    @extend_schema(request=None, responses={201: TokenOutputSerializer})
    def post(self, request: Request, user_id: int) -> Response:
        user = get_object_or_404(User, id=user_id)
        reject_unknown_fields(request.data)
        try:
            token = token_issue(user=user, by=signed_in_user(request))
        except UserManagementRefused as refusal:
            return Response({"detail": str(refusal)}, status=status.HTTP_403_FORBIDDEN)
        return Response({"token": token.key}, status=status.HTTP_201_CREATED)


class MemberSerializer(StrictFieldsMixin, serializers.Serializer):
    username = serializers.CharField(max_length=150)
    role = serializers.ChoiceField(choices=Membership.Role.choices)
    paused = serializers.BooleanField(read_only=True)


def _member_data(membership: Membership) -> dict:
    return {
        "username": membership.user.get_username(),
        "role": membership.role,
        "paused": membership.paused_at is not None,
    }


class MemberListCreateApi(APIView):
    """A project's members and their roles (project admins only)."""

    @extend_schema(responses=MemberSerializer(many=True))
    def get(self, request: Request, slug: str) -> Response:
        access = project_access(user=request.user, slug=slug, min_role=Membership.Role.ADMIN)
        members = Membership.objects.filter(project=access.project).select_related("user")
        return Response([_member_data(m) for m in members.order_by("user__username")])

    @extend_schema(
        request=MemberSerializer,
        responses={
            201: MemberSerializer,
            409: OpenApiResponse(
                description="Already a member: PATCH the member to change a role."
            ),
        },
    )
    def post(self, request: Request, slug: str) -> Response:
        access = project_access(user=request.user, slug=slug, min_role=Membership.Role.ADMIN)
        serializer = MemberSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        user = User.objects.filter(
            username=serializer.validated_data["username"], is_active=True
        ).first()
        if user is None:
            raise serializers.ValidationError({"username": "No active user with this username."})
        try:
            membership = membership_add(
                project=access.project, user=user, role=serializer.validated_data["role"]
            )
        except AlreadyMember as refusal:
            return Response({"username": [str(refusal)]}, status=status.HTTP_409_CONFLICT)
        except MembershipRefused as refusal:
            raise serializers.ValidationError({"role": str(refusal)}) from refusal
        return Response(_member_data(membership), status=status.HTTP_201_CREATED)


class MemberRoleSerializer(StrictFieldsMixin, serializers.Serializer):
    role = serializers.ChoiceField(choices=Membership.Role.choices)


class MemberDetailApi(APIView):
    """One member of a project: change their role (PATCH) or remove them (DELETE)."""

    @extend_schema(request=MemberRoleSerializer, responses={200: MemberSerializer})
    def patch(self, request: Request, slug: str, username: str) -> Response:
        access = project_access(user=request.user, slug=slug, min_role=Membership.Role.ADMIN)
        user = get_object_or_404(User, username=username, memberships__project=access.project)
        serializer = MemberRoleSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            membership = membership_role_set(
                project=access.project, user=user, role=serializer.validated_data["role"]
            )
        except MembershipRefused as refusal:
            raise serializers.ValidationError({"role": str(refusal)}) from refusal
        return Response(_member_data(membership))

    @extend_schema(request=None, responses={204: None})
    def delete(self, request: Request, slug: str, username: str) -> Response:
        access = project_access(user=request.user, slug=slug, min_role=Membership.Role.ADMIN)
        user = get_object_or_404(User, username=username, memberships__project=access.project)
        reject_unknown_fields(request.data)
        try:
            membership_remove(project=access.project, user=user)
        except MembershipRefused as refusal:
            raise serializers.ValidationError({"username": str(refusal)}) from refusal
        return Response(status=status.HTTP_204_NO_CONTENT)
