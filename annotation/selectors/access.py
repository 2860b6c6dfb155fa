"""Who may see which project, and what the project overview shows.

A project is the boundary that must never leak: every page and API call starts with
`project_access`, which answers 404 to anybody who is not a member (superusers are treated as
admins of every project).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from django.contrib.auth.models import AnonymousUser, User
from django.core.exceptions import PermissionDenied
from django.db import connection
from django.db.models import Count, F, OuterRef, Q, QuerySet, Subquery
from django.http import Http404

from annotation.models import Batch, Judgment, Membership, Pair, Project, Prompt
from config import rows

Role = Membership.Role
_RANK = {Role.RATER: 0, Role.LEAD: 1, Role.ADMIN: 2}


@dataclass(frozen=True)
class ProjectAccess:
    """A project as one user may use it."""

    project: Project
    role: str
    membership: Membership | None  # None for superusers who are not members

    @property
    def role_label(self) -> str:
        return str(Role(self.role).label)

    @property
    def can_lead(self) -> bool:
        return _RANK[Role(self.role)] >= _RANK[Role.LEAD]

    @property
    def can_admin(self) -> bool:
        return self.role == Role.ADMIN

    @property
    def is_paused(self) -> bool:
        return self.membership is not None and self.membership.paused_at is not None


@cache
def _membership_sql(vendor: str) -> str:
    """Built once per database vendor (identifier quoting differs) rather than compiled per
    call: every page and API call of a project runs it."""
    return (
        f"SELECT {rows.columns(Membership, 'm')}, {rows.columns(Project, 'p')} "  # noqa: S608
        f"FROM {Membership._meta.db_table} m "
        f"JOIN {Project._meta.db_table} p ON p.id = m.project_id "
        "WHERE m.user_id = %s AND p.slug = %s AND p.archived_at IS NULL"
    )


def _membership(*, user: User, slug: str) -> Membership | None:
    with connection.cursor() as cursor:
        cursor.execute(_membership_sql(connection.vendor), [user.pk, slug])
        row = cursor.fetchone()
    if row is None:
        return None
    split = rows.width(Membership)
    membership = rows.instance(Membership, "m", row[:split])
    membership.project = rows.instance(Project, "p", row[split:])
    membership.user = user
    return membership


def project_access(
    *, user: User | AnonymousUser, slug: str, min_role: str = Role.RATER
) -> ProjectAccess:
    """The project `slug` as `user` may use it: 404 for non-members, 403 for too small a role."""
    if not user.is_authenticated:
        raise Http404("No such project.")
    membership = _membership(user=user, slug=slug)
    if membership is not None:
        access = ProjectAccess(
            project=membership.project, role=membership.role, membership=membership
        )
    elif getattr(user, "is_superuser", False):
        project = Project.objects.filter(slug=slug).first()
        if project is None:
            raise Http404("No such project.")
        access = ProjectAccess(project=project, role=Role.ADMIN, membership=None)
    else:
        raise Http404("No such project.")
    if _RANK[Role(access.role)] < _RANK[Role(min_role)]:
        raise PermissionDenied(f"This needs the {Role(min_role).label.lower()} role.")
    return access


PROJECT_CREATORS = (
    "site staff, and accounts given the “Can add project” permission (annotation.add_project)"
)


def user_can_create_projects(*, user: User | AnonymousUser) -> bool:
    """Who may start a project: site staff, and accounts given the `annotation.add_project`
    permission in the Django admin (the demo's admin has it), so that a project admin can be
    allowed to start projects without the rest of staff powers. The page and the API ask this."""
    if not user.is_authenticated or not user.is_active:
        return False
    return bool(user.is_staff or user.has_perm("annotation.add_project"))


def project_list_for(*, user: User) -> QuerySet[Project]:
    """The projects `user` belongs to, each annotated with `my_role`."""
    role = Membership.objects.filter(project=OuterRef("pk"), user=user).values("role")[:1]
    projects = Project.objects.filter(archived_at__isnull=True)
    if not getattr(user, "is_superuser", False):
        projects = projects.filter(memberships__user=user)
    return projects.annotate(my_role=Subquery(role)).order_by("name")


@dataclass(frozen=True)
class ProjectOverview:
    prompts: int
    pairs: int
    pairs_complete: int
    judgments: int
    my_judgments: int
    batches: list[Batch]
    members: list[Membership]


def project_overview(*, access: ProjectAccess, user: User) -> ProjectOverview:
    """Counts for the overview page; members and batches only for those who may manage them."""
    project = access.project
    pairs = Pair.objects.filter(project=project, is_active=True)
    pair_counts = pairs.aggregate(
        total=Count("id"),
        complete=Count("id", filter=Q(judgments_count__gte=F("judgments_needed"))),
    )
    members: list[Membership] = []
    batches: list[Batch] = []
    if access.can_admin:
        members = list(
            Membership.objects.filter(project=project)
            .select_related("user")
            .order_by("role", "user__username")
        )
    if access.can_lead:
        batches = list(Batch.objects.filter(project=project).select_related("uploaded_by")[:10])
    return ProjectOverview(
        prompts=Prompt.objects.filter(project=project).count(),
        pairs=pair_counts["total"],
        pairs_complete=pair_counts["complete"],
        judgments=Judgment.objects.filter(pair__project=project).count() if access.can_lead else 0,
        my_judgments=Judgment.objects.filter(pair__project=project, rater=user).count(),
        batches=batches,
        members=members,
    )
