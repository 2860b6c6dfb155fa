"""manage.py demo: a demo project from the Arena sample with demo accounts, and optionally
simulated judgments so that the dashboards have something to show. Running it twice changes
nothing: --simulate N tops the project up to N judgments."""

import json
import os
import random
import secrets
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction

from annotation.models import Batch, Judgment, Membership, Project, shown_sides
from annotation.services.imports import ImportRejected, batch_import
from annotation.services.projects import (
    AlreadyMember,
    membership_add,
    membership_role_set,
    project_create,
    user_allow_project_creation,
    user_create,
)
from annotation.services.rating import Submission, assignment_next, judgment_record

SLUG = "demo"
ACCOUNTS = [
    ("demo-admin", Membership.Role.ADMIN),
    ("demo-lead", Membership.Role.LEAD),
    ("demo-rater1", Membership.Role.RATER),
    ("demo-rater2", Membership.Role.RATER),
    ("demo-rater3", Membership.Role.RATER),
]
GUIDELINES = """\
## What to judge

Read the prompt, then both answers. Pick the answer a careful expert would rather receive:

1. **Correct** beats fluent. Check facts, code and arithmetic where you can.
2. **Helpful**: it does what was asked, at a sensible length.
3. **Safe and honest**: no harmful advice, no invented citations.

Use *tie* when neither is clearly better, and *both bad* when neither is acceptable.
Strength: 1 = slightly better, 2 = clearly better, 3 = much better.
"""
# A plausible quality prior for the simulated raters (higher is better), with per-rater noise.
MODEL_QUALITY = {
    "gpt-4": 2.0,
    "claude-v1": 1.4,
    "gpt-3.5-turbo": 1.2,
    "wizardlm-70b-v1.0": 0.9,
    "vicuna-33b-v1.3": 0.8,
    "Llama-2-70b-chat": 0.6,
    "vicuna-13b-v1.5": 0.5,
}
# Two answers by the same models still differ in quality, and every rater sees that difference:
# it is drawn once per pair, so raters agree on a pair as real raters do.
PAIR_SPREAD = 1.0
RATER_NOISE = {"demo-rater1": 0.3, "demo-rater2": 0.5, "demo-rater3": 0.9}
LEFT_BIAS = {"demo-rater3": 0.4}  # one rater favours the left side: position bias shows up


class Command(BaseCommand):
    help = "Create the demo project and accounts; --simulate N tops it up to N judgments."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--simulate",
            type=int,
            default=0,
            metavar="N",
            help="make sure the demo project has at least N judgments, simulating the missing ones",
        )
        parser.add_argument("--seed", type=int, default=0)

    def handle(self, *args: Any, **options: Any) -> None:
        passwords = self._accounts()
        project = self._project()
        self._import(project)
        missing = options["simulate"] - Judgment.objects.filter(pair__project=project).count()
        if missing > 0:
            rng = random.Random(options["seed"])  # noqa: S311 - simulated opinions, not secrets
            made = self._simulate(project, missing, rng)
            self.stdout.write(f"Simulated {made} judgments.")
        self.stdout.write(f"Demo project: /p/{SLUG}/ ({project.pairs.count()} pairs)")
        self.stdout.write("Demo logins (username / password):")
        for username, role in ACCOUNTS:
            self.stdout.write(
                f"  {username:12} {passwords.get(username, '(set earlier)'):24} {role}"
            )

    def _accounts(self) -> dict[str, str]:
        """Random passwords, made once and kept in var/ (mode 600): no default password exists."""
        path = Path(settings.VAR_DIR) / "demo-logins.json"
        known: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
        users = get_user_model().objects
        for username, _ in ACCOUNTS:
            if not users.filter(username=username).exists():
                known[username] = secrets.token_urlsafe(9)
                user_create(username=username, password=known[username])
        # The README's tour has the demo's admin start a project too.
        user_allow_project_creation(user=users.get(username="demo-admin"))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(known, indent=2))
        os.chmod(path, 0o600)
        return known

    def _project(self) -> Project:
        users = get_user_model().objects
        project = Project.objects.filter(slug=SLUG).first()
        if project is None:
            project = project_create(
                slug=SLUG,
                name="Demo: which answer is better?",
                created_by=users.get(username="demo-admin"),
                guidelines=GUIDELINES,
                pairing_rule=Project.PairingRule.K_PER_PROMPT,
                pairs_per_prompt=3,
                gold_rate=0.0,
            )
        for username, role in ACCOUNTS:
            user = users.get(username=username)
            try:
                membership_add(project=project, user=user, role=role)
            except AlreadyMember:  # a second run: the role goes back to the demo's
                membership_role_set(project=project, user=user, role=role)
        return project

    def _import(self, project: Project) -> None:
        path = Path(settings.DEMO_DATA_DIR) / "arena-60.jsonl"
        with path.open("rb") as fileobj:
            try:
                outcome = batch_import(
                    project=project,
                    fileobj=fileobj,
                    filename=path.name,
                    uploaded_by=get_user_model().objects.get(username="demo-admin"),
                    format=Batch.Format.RESPONSES,
                )
            except ImportRejected:
                if Batch.objects.filter(project=project, filename=path.name).exists():
                    return  # imported on an earlier run
                raise
        self.stdout.write(f"Imported {outcome.batch.pairs_created} demo pairs.")

    def _simulate(self, project: Project, count: int, rng: random.Random) -> int:
        raters = [
            get_user_model().objects.get(username=username)
            for username, role in ACCOUNTS
            if role == Membership.Role.RATER
        ]
        made = 0
        idle = 0
        while made < count and idle < len(raters):
            rater = raters[made % len(raters)] if idle == 0 else raters[(made + idle) % len(raters)]
            assignment = assignment_next(project=project, rater=rater)
            if assignment is None:
                idle += 1
                continue
            idle = 0
            submission = self._opinion(project, assignment, rater.get_username(), rng)
            with transaction.atomic():
                judgment, _ = judgment_record(
                    project=project, rater=rater, assignment_id=assignment.id, submission=submission
                )
                # Simulated raters answer at once; give them the reading time they report, plus
                # a pause, so the dashboards do not flag every demo rater as too fast.
                Judgment.objects.filter(pk=judgment.pk).update(
                    duration_ms=(submission.active_ms or 0) + rng.randint(500, 15_000)
                )
            made += 1
        return made

    def _opinion(
        self, project: Project, assignment: Any, username: str, rng: random.Random
    ) -> Submission:
        pair = assignment.pair
        left, right = shown_sides(pair, assignment.swapped)
        # The two texts' own difference in quality, A minus B, the same for every rater.
        texts_ab = random.Random(pair.id).gauss(0, PAIR_SPREAD)  # noqa: S311 - simulation
        diff = (
            MODEL_QUALITY.get(left.model_name, 1.0)
            - MODEL_QUALITY.get(right.model_name, 1.0)
            + (-texts_ab if assignment.swapped else texts_ab)
            + LEFT_BIAS.get(username, 0.0)
            + rng.gauss(0, RATER_NOISE.get(username, 1.0))
        )
        if rng.random() < 0.03:
            return Submission(choice="both_bad", active_ms=rng.randint(8_000, 90_000))
        if abs(diff) < 0.25:
            return Submission(choice="tie", active_ms=rng.randint(8_000, 90_000))
        strength = 1 if abs(diff) < 0.8 else 2 if abs(diff) < 1.6 else 3
        return Submission(
            choice="left" if diff > 0 else "right",
            strength=strength if project.use_strength else None,
            active_ms=rng.randint(8_000, 90_000),
        )
