"""Collecting preferences: projects and their members, uploaded batches, prompts, responses,
pairs, the leases that hand pairs to raters, and the judgments raters make."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Case, F, FloatField, Q, Value, When
from django.db.models.functions import Cast, Coalesce, Greatest, Least, NullIf
from django.db.models.lookups import GreaterThan, IsNull
from django.utils import timezone


class Project(models.Model):
    class ChoiceScheme(models.TextChoices):
        AB = "ab", "A or B"
        AB_TIE = "ab_tie", "A, B or tie"
        AB_TIE_BAD = "ab_tie_bad", "A, B, tie or both bad"

    class Rationale(models.TextChoices):
        OFF = "off", "Not asked"
        OPTIONAL = "optional", "Optional"
        REQUIRED = "required", "Required"

    class PairingRule(models.TextChoices):
        ALL = "all", "All pairs of a prompt's responses"
        K_PER_PROMPT = "k_per_prompt", "k pairs per prompt, preferring different models"

    class Aggregation(models.TextChoices):
        MAJORITY = "majority", "Majority of votes"
        WEIGHTED = "weighted", "Votes weighted by each rater's accuracy"
        DAWID_SKENE = "dawid_skene", "Dawid-Skene (each rater's confusion matrix)"

    class AssignmentOrder(models.TextChoices):
        FILL_FIRST = "fill_first", "Finish partly judged pairs first"
        RANDOM = "random", "Random"
        UNCERTAINTY = "uncertainty", "Most uncertain to the published model first"

    slug = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=200)
    guidelines = models.TextField(
        blank=True, help_text="Markdown, shown to raters beside every pair."
    )
    raters_per_pair = models.PositiveSmallIntegerField(
        default=3, validators=[MinValueValidator(1), MaxValueValidator(50)]
    )
    max_raters_per_pair = models.PositiveSmallIntegerField(
        default=5,
        validators=[MinValueValidator(1), MaxValueValidator(50)],
        help_text="Cap for adaptive overlap: disputed pairs get extra judgments up to this many.",
    )
    choice_scheme = models.CharField(
        max_length=16, choices=ChoiceScheme, default=ChoiceScheme.AB_TIE_BAD
    )
    use_strength = models.BooleanField(
        default=True, help_text="Ask how much better: slightly, clearly or much."
    )
    criteria = models.JSONField(
        default=list, blank=True, help_text='Optional criteria names, e.g. ["helpfulness"].'
    )
    rationale = models.CharField(max_length=16, choices=Rationale, default=Rationale.OPTIONAL)
    gold_rate = models.FloatField(
        default=0.05,
        validators=[MinValueValidator(0.0), MaxValueValidator(1.0)],
        help_text="Share of served pairs that are gold pairs, when the project has any.",
    )
    pairing_rule = models.CharField(max_length=16, choices=PairingRule, default=PairingRule.ALL)
    pairs_per_prompt = models.PositiveSmallIntegerField(
        default=3, help_text="k for the 'k pairs per prompt' pairing rule."
    )
    assignment_order = models.CharField(
        max_length=16,
        choices=AssignmentOrder,
        default=AssignmentOrder.FILL_FIRST,
        help_text="Which open pair a rater gets next. 'Most uncertain' follows the published "
        "reward model's scores; pairs it has not scored yet come after the scored ones.",
    )
    exploration_share = models.FloatField(
        default=0.1,
        validators=[MinValueValidator(0.0), MaxValueValidator(1.0)],
        help_text="In the 'most uncertain first' order, the share of served pairs drawn at "
        "random instead, so that the judged pairs stay a fair sample to evaluate the model on.",
    )
    lease_minutes = models.PositiveSmallIntegerField(
        default=30, validators=[MinValueValidator(1)], help_text="How long a rater holds a pair."
    )
    # Retraining policy (used by rewardtrain; stored here so one form edits a whole project).
    base_model = models.CharField(
        max_length=500, blank=True, help_text="A local Hugging Face directory; blank for MiniLM."
    )
    train_config = models.JSONField(default=dict, blank=True)
    retrain_min_new_judgments = models.PositiveIntegerField(default=200)
    full_retrain_every = models.PositiveSmallIntegerField(
        default=5,
        help_text="Every Nth version trains from the base model instead of warm-starting.",
    )
    auto_retrain = models.BooleanField(default=True)
    promote_min_gain = models.FloatField(
        default=0.0,
        validators=[MinValueValidator(0.0), MaxValueValidator(100.0)],
        help_text="Accuracy points on held-out pairs by which a new version must beat the "
        "published one to be published automatically (it must always be strictly better).",
    )
    flag_threshold = models.PositiveSmallIntegerField(
        default=2,
        validators=[MinValueValidator(1)],
        help_text="A pair stops being served once this many raters report a problem with it, "
        "until a lead clears the flags or excludes the pair.",
    )
    # Quality control: the agreement report flags raters against these (and may pause them).
    too_fast_ms = models.PositiveIntegerField(
        default=4000, help_text="Flag a rater whose median time on a pair is below this (ms)."
    )
    min_gold_accuracy = models.FloatField(
        default=0.7,
        validators=[MinValueValidator(0.0), MaxValueValidator(1.0)],
        help_text="Flag a rater whose share of gold pairs answered right is below this.",
    )
    min_agreement = models.FloatField(
        default=0.5,
        validators=[MinValueValidator(0.0), MaxValueValidator(1.0)],
        help_text="Flag a rater who matches the other raters' majority less often than this.",
    )
    quality_min_judgments = models.PositiveIntegerField(
        default=30, help_text="Raters with fewer judgments are never flagged or paused."
    )
    auto_pause = models.BooleanField(
        default=False, help_text="Pause flagged raters automatically; a lead can unpause them."
    )
    # Labels: how a pair's judgments become one preference for exports and training.
    aggregation = models.CharField(
        max_length=12,
        choices=Aggregation,
        default=Aggregation.MAJORITY,
        help_text="How judgments become one label per pair; see docs/agreement.md.",
    )
    min_posterior = models.FloatField(
        default=0.5,
        validators=[MinValueValidator(0.5), MaxValueValidator(1.0)],
        help_text="Leave out pairs whose probability that the chosen response is better "
        "(p_chosen) is below this.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    archived_at = models.DateTimeField(null=True, blank=True)
    # Counts refreshed by a Celery task so that listing projects never counts big tables.
    stats = models.JSONField(default=dict, blank=True, editable=False)
    stats_refreshed_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(max_raters_per_pair__gte=F("raters_per_pair")),
                name="overlap_cap_at_least_raters_per_pair",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def lease_duration(self) -> timedelta:
        return timedelta(minutes=self.lease_minutes)


class Membership(models.Model):
    class Role(models.TextChoices):
        RATER = "rater", "Rater"
        LEAD = "lead", "Project lead"
        ADMIN = "admin", "Project admin"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    role = models.CharField(max_length=8, choices=Role, default=Role.RATER)
    paused_at = models.DateTimeField(
        null=True, blank=True, help_text="A paused rater is served no pairs."
    )
    # Set when a lead lifts a pause: auto-pause then waits for fresh evidence before pausing again.
    unpaused_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["project", "user"], name="one_membership_per_user"),
        ]

    def __str__(self) -> str:
        return f"{self.user} in {self.project} as {self.role}"


class Batch(models.Model):
    """One upload. Pairs keep pointing at the batch that created them."""

    class Format(models.TextChoices):
        PAIR = "pair", "Pairs"
        RESPONSES = "responses", "Responses per prompt"
        PREFERENCE = "preference", "Preferences (TRL / Anthropic HH)"

    class KnownAnswers(models.TextChoices):
        NONE = "none", "No known answers"
        GOLD = "gold", "Gold pairs (quality control)"
        SEED = "seed", "Seed labels (training data)"

    class Status(models.TextChoices):
        PENDING = "pending", "Waiting for a worker"
        RUNNING = "running", "Importing"
        DONE = "done", "Imported"
        FAILED = "failed", "Failed"

    class OnInvalid(models.TextChoices):
        REFUSE = "refuse", "Refuse the whole file"
        SKIP = "skip", "Skip invalid records"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="batches")
    filename = models.CharField(max_length=255)
    sha256 = models.CharField(max_length=64, db_index=True)
    format = models.CharField(max_length=16, choices=Format)
    known_answers = models.CharField(max_length=8, choices=KnownAnswers, default=KnownAnswers.NONE)
    records = models.PositiveIntegerField(default=0)
    prompts_created = models.PositiveIntegerField(default=0)
    responses_created = models.PositiveIntegerField(default=0)
    pairs_created = models.PositiveIntegerField(default=0)
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    retired_at = models.DateTimeField(
        null=True, blank=True, help_text="A retired batch's pairs are no longer served."
    )
    # A large file is imported by a worker: the batch is listed as pending/running meanwhile, and
    # `progress` (0 to 1) is written from a separate connection, since the import itself is one
    # transaction that nobody else sees until it commits.
    status = models.CharField(max_length=8, choices=Status, default=Status.DONE)
    progress = models.FloatField(default=0.0)
    error = models.TextField(blank=True)  # why a background import failed; nothing was imported
    # The random name of the uploaded file under VAR_DIR/uploads while a worker imports it.
    staged_upload = models.CharField(max_length=64, blank=True, editable=False)
    # A background import's recovery (annotation.services.imports.recovery): `attempts` counts the
    # workers that took the batch; `heartbeat_at` is when a pending batch was last sent to the
    # broker, and is touched every second by the worker while it imports a running one.
    attempts = models.PositiveSmallIntegerField(default=0)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    # What happens to records with errors: "refuse" imports nothing, "skip" leaves them out,
    # counts them by reason and keeps their original lines in a rejects file (IMPORT_REJECTS_DIR,
    # under a random name; at most IMPORT_REJECTS_MAX_BYTES of them, `rejects_kept` records).
    on_invalid = models.CharField(max_length=8, choices=OnInvalid, default=OnInvalid.REFUSE)
    skipped = models.PositiveIntegerField(default=0)
    skipped_reasons = models.JSONField(default=dict, blank=True)  # reason -> records
    rejects_file = models.CharField(max_length=64, blank=True, editable=False)
    rejects_kept = models.PositiveIntegerField(default=0)
    empty_responses = models.PositiveIntegerField(
        default=0, help_text="Records imported with an empty or whitespace-only response."
    )
    merged = models.PositiveIntegerField(
        default=0,
        help_text="Pairs of the file that repeat a pair of the file or of the project, in either "
        "order: merged into that pair, not created again.",
    )

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "batches"
        constraints = [
            models.CheckConstraint(
                condition=Q(progress__gte=0.0) & Q(progress__lte=1.0),
                name="batch_progress_between_0_and_1",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.filename} ({self.project.slug})"

    @property
    def is_in_progress(self) -> bool:
        return self.status in (self.Status.PENDING, self.Status.RUNNING)


class Prompt(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="prompts")
    batch = models.ForeignKey(Batch, on_delete=models.PROTECT, related_name="prompts")
    content_hash = models.CharField(max_length=64)  # sha256 of the text or the canonical messages
    text = models.TextField(blank=True)  # the prompt when it is plain text
    messages = models.JSONField(null=True, blank=True)  # [{"role", "content"}] for chat prompts
    external_id = models.CharField(max_length=200, blank=True)
    metadata = models.JSONField(default=dict, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["project", "content_hash"], name="prompt_unique_in_project"
            ),
        ]

    def __str__(self) -> str:
        return self.display_text[:80]

    @property
    def display_text(self) -> str:
        if self.messages is None:
            return self.text
        return "\n\n".join(f"{m['role']}: {m['content']}" for m in self.messages)


class Response(models.Model):
    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="responses")
    batch = models.ForeignKey(Batch, on_delete=models.PROTECT, related_name="responses")
    content_hash = models.CharField(max_length=64)
    text = models.TextField()
    model_name = models.CharField(max_length=200, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    # Style counts for the leaderboard's style control (annotation.leaderboard.style), filled the
    # first time a leaderboard reads the response: imports stay as fast as they were, and the text
    # is scanned once, not on every leaderboard.
    style_length = models.PositiveIntegerField(null=True, blank=True, editable=False)
    style_headers = models.PositiveIntegerField(null=True, blank=True, editable=False)
    style_list_items = models.PositiveIntegerField(null=True, blank=True, editable=False)
    style_bold = models.PositiveIntegerField(null=True, blank=True, editable=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["prompt", "content_hash"], name="response_unique_per_prompt"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.model_name or 'response'}: {self.text[:60]}"


# A pair that may still be handed to a rater: live, not a known answer, not held for the lead by
# raters' flags, short of its judgments. The one statement of the rule: Pair.objects.open() and
# the index `pair_open_by_progress` read it.
OPEN_PAIR = Q(
    is_active=True,
    gold_choice="",
    seed_choice="",
    flagged_at__isnull=True,
    judgments_count__lt=F("judgments_needed"),
)


# How sure the scoring model is of either side, max(p, 1 - p) of Pair.model_p_a, or -1 for a pair
# no version has scored: the data browser's "model confidence" ordering
# (annotation.selectors.pair_order) and the index `pair_by_model_confidence` read it.
MODEL_CONFIDENCE = Coalesce(
    Greatest(F("model_p_a"), Value(1.0) - F("model_p_a"), output_field=FloatField()),
    Value(-1.0),
)

# A pair's judgments counted by choice on its own row: Pair.votes_a, votes_b, votes_tie and
# votes_both_bad, kept by the rating engine next to judgments_count under the pair's row lock.
# The one statement of which column counts a choice (stored, in pair terms: see to_pair_terms).
VOTE_CHOICES = ("a", "b", "tie", "both_bad")  # Judgment.Choice's values; a and b are decisive


def vote_field(choice: str) -> str:
    """The Pair column counting the pair's judgments of `choice` (a stored choice)."""
    if choice not in VOTE_CHOICES:
        raise ValueError(f"unknown choice {choice!r}; use one of {', '.join(VOTE_CHOICES)}")
    return f"votes_{choice}"


_VOTES = [F(vote_field(choice)) for choice in VOTE_CHOICES]

# The data browser's rater-side definitions (annotation.selectors.pair_order), read from the
# counts above so that each is a row expression an index can hold:
# - agreement: the share of a pair's decisive judgments on the majority's side,
#   max(votes_a, votes_b) / (votes_a + votes_b); NULL without a decisive judgment.
AGREEMENT = Cast(Greatest(F("votes_a"), F("votes_b")), FloatField()) / NullIf(
    F("votes_a") + F("votes_b"), Value(0)
)
# - its "lowest agreement" key, missing agreement last (agreement is at most 1);
BY_AGREEMENT = Coalesce(AGREEMENT, Value(2.0))
# - model disagreement: the model's probability for the side the raters' majority did not choose;
#   NULL without a majority (a split or no decisive judgment) or without a score;
MODEL_AGAINST = Case(
    When(votes_a__gt=F("votes_b"), then=Value(1.0) - F("model_p_a")),
    When(votes_a__lt=F("votes_b"), then=F("model_p_a")),
    default=None,
    output_field=FloatField(),
)
# - its "model disagrees most" key, missing last (a probability is at least 0);
BY_MODEL_AGAINST = Coalesce(MODEL_AGAINST, Value(-1.0))
# - split: the judgments name more than one choice (ties and both-bad included), what makes a
#   complete pair disputed.
COMPLETE = Q(judgments_count__gte=F("judgments_needed"))
SPLIT = GreaterThan(sum(_VOTES[1:], _VOTES[0]), Greatest(*_VOTES))


# The `uncertainty` serving order: the pairs the published reward model is least sure about
# first. Pairs no version has scored yet come after every scored one (a new batch is scored within
# minutes of its import, and until then the model says nothing about it), in fill-first order like
# ties among scored pairs. The one statement of the order: Pair.objects.by_uncertainty() and the
# index `pair_open_by_uncertainty` read it. Written with IS NULL rather than NULLS LAST, which
# PostgreSQL and SQLite would each place differently and SQLite cannot put in an index.
BY_UNCERTAINTY = (
    IsNull(F("model_uncertainty"), True).asc(),
    F("model_uncertainty").desc(),
    F("judgments_count").desc(),
    F("id").asc(),
)


class PairQuerySet(models.QuerySet["Pair"]):
    def open(self) -> PairQuerySet:
        """Pairs that may still be handed to a rater (see OPEN_PAIR)."""
        return self.filter(OPEN_PAIR)

    def by_uncertainty(self) -> PairQuerySet:
        """Most uncertain to the published model first (see BY_UNCERTAINTY)."""
        return self.order_by(*BY_UNCERTAINTY)


class Pair(models.Model):
    class Known(models.TextChoices):
        A = "a", "A is better"
        B = "b", "B is better"
        TIE = "tie", "About the same"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="pairs")
    batch = models.ForeignKey(Batch, on_delete=models.PROTECT, related_name="pairs")
    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="pairs")
    response_a = models.ForeignKey(Response, on_delete=models.CASCADE, related_name="+")
    response_b = models.ForeignKey(Response, on_delete=models.CASCADE, related_name="+")
    external_id = models.CharField(max_length=200, blank=True)
    # What an import's record said about the pair beyond its prompt and responses (a preference
    # record's `score_chosen`, `prompt_id`, `source`...); it comes back in the judgments export.
    metadata = models.JSONField(default=dict, blank=True)
    # A known answer from the import: a gold pair is served and scored, a seed label is training
    # data attributed to the import and is not served.
    gold_choice = models.CharField(max_length=4, choices=Known, blank=True)
    seed_choice = models.CharField(max_length=4, choices=Known, blank=True)
    judgments_needed = models.PositiveSmallIntegerField()
    # Kept equal to the pair's judgment count by judgment_record/judgment_undo, under the pair's
    # row lock; the assignment engine reads it instead of counting judgments.
    judgments_count = models.PositiveSmallIntegerField(default=0)
    # Its judgments by choice (see vote_field), kept with judgments_count, and the flags ever
    # raised on it (cleared ones included), kept by assignment_flag under the same lock.
    votes_a = models.PositiveSmallIntegerField(default=0)
    votes_b = models.PositiveSmallIntegerField(default=0)
    votes_tie = models.PositiveSmallIntegerField(default=0)
    votes_both_bad = models.PositiveSmallIntegerField(default=0)
    flags_count = models.PositiveIntegerField(default=0)
    is_active = models.BooleanField(default=True)  # false once its batch is retired
    # Set by assignment_flag when the pair's uncleared flags reach the project's flag_threshold,
    # cleared by flags_clear: while set the pair is not served (OPEN_PAIR) and awaits the lead.
    flagged_at = models.DateTimeField(null=True, blank=True)
    # The published reward model's view of the pair, written by rewardtrain's pool scoring after
    # each publication (annotation never imports rewardtrain): the probability that `a` is the
    # better response, the ensemble's disagreement about it, and the version that said so.
    model_p_a = models.FloatField(null=True, blank=True)
    model_uncertainty = models.FloatField(null=True, blank=True)
    model_version = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = PairQuerySet.as_manager()

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=~Q(response_a=F("response_b")), name="pair_responses_differ"
            ),
            models.UniqueConstraint(
                Least("response_a", "response_b"),
                Greatest("response_a", "response_b"),
                name="pair_unique_per_response_set",
            ),
            models.CheckConstraint(
                condition=Q(gold_choice="") | Q(seed_choice=""), name="pair_gold_or_seed_not_both"
            ),
        ]
        indexes = [
            # The engine's candidate scan in fill-first order. Only pairs that may still be
            # served are in it, so finished pairs cost nothing however many there are.
            models.Index(
                fields=["project", "-judgments_count", "id"],
                condition=OPEN_PAIR,
                name="pair_open_by_progress",
            ),
            # The data browser's "most judgments" and "model confidence" orderings
            # (annotation.selectors.pair_order), walked backwards from a keyset row at any depth.
            models.Index(fields=["project", "judgments_count", "id"], name="pair_by_judgments"),
            models.Index(F("project"), MODEL_CONFIDENCE, F("id"), name="pair_by_model_confidence"),
            # ... and its "lowest agreement", "most flags" and "model disagrees most" orderings,
            # and its disputed queue (in id order, the adjudicated ones filtered on the way).
            models.Index(F("project"), BY_AGREEMENT, F("id"), name="pair_by_agreement"),
            models.Index(fields=["project", "flags_count", "id"], name="pair_by_flags"),
            models.Index(F("project"), BY_MODEL_AGAINST, F("id"), name="pair_by_model_against"),
            models.Index(
                fields=["project", "id"], condition=COMPLETE & Q(SPLIT), name="pair_split"
            ),
            # The same in the `uncertainty` order.
            models.Index(
                F("project"), *BY_UNCERTAINTY, condition=OPEN_PAIR, name="pair_open_by_uncertainty"
            ),
        ]

    def __str__(self) -> str:
        return f"pair {self.pk} of {self.project.slug}"


class AssignmentQuerySet(models.QuerySet["Assignment"]):
    def live(self, now: datetime) -> AssignmentQuerySet:
        """Leases still held at `now`: active and not yet expired. A live lease holds one of its
        pair's judgment slots."""
        return self.filter(status=Assignment.Status.ACTIVE, expires_at__gt=now)


class Assignment(models.Model):
    """A lease of a pair to a rater. One per (pair, rater) ever: a rater never sees a pair twice."""

    class Status(models.TextChoices):
        ACTIVE = "active", "Leased"
        DONE = "done", "Judged"
        SKIPPED = "skipped", "Skipped"

    class ServedBy(models.TextChoices):
        """Which of the engine's rules chose the pair for this lease (docs/engine.md). The first
        three are the serving orders of the same names (Project.AssignmentOrder)."""

        FILL_FIRST = "fill_first", "Fill-first order"
        RANDOM = "random", "Random order"
        UNCERTAINTY = "uncertainty", "Most uncertain to the published model"
        EXPLORATION = "exploration", "Random share of the uncertainty order"
        GOLD = "gold", "Gold turn"
        QUEUE = "queue", "Waited for a locked pair, in id order"

    pair = models.ForeignKey(Pair, on_delete=models.CASCADE, related_name="assignments")
    rater = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="assignments"
    )
    swapped = models.BooleanField()  # response B is shown on the left
    status = models.CharField(max_length=8, choices=Status, default=Status.ACTIVE)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    # Blank for leases made before it was recorded (migration 0018) and for rows written outside
    # the engine; the engine sets it on every lease it makes. The database default lets a web
    # process still running the code before 0018 lease while the migration is deployed.
    served_by = models.CharField(
        max_length=16, choices=ServedBy, blank=True, default="", db_default=""
    )

    objects = AssignmentQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["pair", "rater"], name="one_assignment_per_rater"),
        ]
        indexes = [
            models.Index(
                fields=["pair", "expires_at"],
                condition=Q(status="active"),
                name="assignment_live_leases",
            ),
            # A rater's current lease, without reading every pair the rater ever judged.
            models.Index(
                fields=["rater", "expires_at"],
                condition=Q(status="active"),
                name="assignment_live_by_rater",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.pair} to {self.rater}"


# Screen and pair terms. A rater answers left/right; a judgment stores a/b. Response A is shown on
# the left unless the lease is `swapped`. These three functions are that rule; the agreement
# readers' array form is annotation.agreement.metrics.picked_left.
def shown_sides(pair: Pair, swapped: bool) -> tuple[Response, Response]:
    """The (left, right) responses of a pair as a lease shows them."""
    return (pair.response_b, pair.response_a) if swapped else (pair.response_a, pair.response_b)


def to_pair_terms(shown: str, swapped: bool) -> str:
    """A choice as the rater saw it (left/right/tie/both_bad) as stored (a/b/tie/both_bad)."""
    if shown == "left":
        return Judgment.Choice.B if swapped else Judgment.Choice.A
    if shown == "right":
        return Judgment.Choice.A if swapped else Judgment.Choice.B
    return shown


def to_screen_terms(stored: str, swapped: bool) -> str:
    """A stored choice (a/b/tie/both_bad) as the rater saw it (left/right/tie/both_bad); the
    inverse of to_pair_terms."""
    if stored == Judgment.Choice.A:
        return "right" if swapped else "left"
    if stored == Judgment.Choice.B:
        return "left" if swapped else "right"
    return stored


class Judgment(models.Model):
    class Choice(models.TextChoices):
        A = "a", "A is better"
        B = "b", "B is better"
        TIE = "tie", "About the same"
        BOTH_BAD = "both_bad", "Both are bad"

    pair = models.ForeignKey(Pair, on_delete=models.CASCADE, related_name="judgments")
    rater = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="judgments"
    )
    assignment = models.OneToOneField(Assignment, on_delete=models.PROTECT, related_name="judgment")
    choice = models.CharField(max_length=8, choices=Choice)  # in terms of the pair, not the screen
    strength = models.PositiveSmallIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1), MaxValueValidator(3)]
    )
    criteria = models.JSONField(default=dict, blank=True)  # {"helpfulness": "a", ...}
    rationale = models.TextField(blank=True)
    swapped = models.BooleanField()  # B was shown on the left: position bias is measured from this
    duration_ms = models.PositiveIntegerField()  # server side, from lease to submit
    active_ms = models.PositiveIntegerField(null=True, blank=True)  # reported by the browser
    idempotency_key = models.CharField(max_length=128, blank=True)
    request_fingerprint = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["pair", "rater"], name="one_judgment_per_rater"),
            models.UniqueConstraint(
                fields=["rater", "idempotency_key"],
                condition=~Q(idempotency_key=""),
                name="one_judgment_per_idempotency_key",
            ),
            models.CheckConstraint(
                condition=Q(strength__isnull=True) | Q(choice__in=["a", "b"]),
                name="strength_only_on_decisive_choices",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.rater} on {self.pair}: {self.choice}"


class AgreementReport(models.Model):
    """Agreement metrics of a project at one moment; their history draws the trend."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="agreement_reports")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    judgments = models.PositiveIntegerField()
    last_judgment_id = models.BigIntegerField(null=True)  # the data the report was computed on
    scope = models.JSONField(default=dict, blank=True)  # filters: batch, dates
    metrics = models.JSONField()

    class Meta:
        ordering = ["-created_at"]
        get_latest_by = "created_at"

    def __str__(self) -> str:
        return f"agreement of {self.project} at {self.created_at:%Y-%m-%d %H:%M}"


class Invitation(models.Model):
    """A one-time link that lets a new person choose a username and password and join a project.

    Only the sha256 of the token is stored: the link is shown once, to the admin who made it.
    """

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="invitations")
    role = models.CharField(max_length=8, choices=Membership.Role, default=Membership.Role.RATER)
    token_hash = models.CharField(max_length=64, unique=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)
    used_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"invitation to {self.project} as {self.role}"


class LoginFailure(models.Model):
    """One failed login, counted per username and per client address to slow password guessing.

    Kept in PostgreSQL rather than a cache: raters must be able to log in with Redis down, and
    every web process must see the same counts. Rows older than the window are swept on write.
    """

    username = models.CharField(max_length=150)  # lower-cased as typed; need not exist
    ip = models.GenericIPAddressField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        indexes = [
            models.Index(fields=["username", "created_at"], name="login_failure_by_username"),
            models.Index(fields=["ip", "created_at"], name="login_failure_by_ip"),
        ]

    def __str__(self) -> str:
        return f"failed login for {self.username} from {self.ip}"


class Adjudication(models.Model):
    """A lead's decision on a pair (annotation.services.adjudication). Kept apart from judgments:
    it never counts in agreement, and the live one (not undone) overrides aggregation in exports
    and training. Undoing keeps the row, with `undone_at`, as the pair's history."""

    class Decision(models.TextChoices):
        A = "a", "A is better"
        B = "b", "B is better"
        TIE = "tie", "About the same"
        BOTH_BAD = "both_bad", "Both are bad"
        EXCLUDE = "exclude", "Exclude from training"

    pair = models.ForeignKey(Pair, on_delete=models.CASCADE, related_name="adjudications")
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    decision = models.CharField(max_length=8, choices=Decision)
    note = models.TextField(blank=True, max_length=2000)
    created_at = models.DateTimeField(default=timezone.now)
    undone_at = models.DateTimeField(null=True, blank=True)
    undone_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["pair"],
                condition=Q(undone_at__isnull=True),
                name="one_live_adjudication_per_pair",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.pair}: {self.decision} by {self.decided_by}"


class Flag(models.Model):
    """A rater's report of a problem with a pair, made instead of judging it. Uncleared flags count
    towards the project's flag_threshold; a lead clears them (kept as history)."""

    class Reason(models.TextChoices):
        BROKEN = "broken", "Broken or unreadable"
        HARMFUL = "harmful", "Harmful content"
        CANNOT_JUDGE = "cannot_judge", "I cannot judge this"
        OTHER = "other", "Other"

    pair = models.ForeignKey(Pair, on_delete=models.CASCADE, related_name="flags")
    rater = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    assignment = models.OneToOneField(Assignment, on_delete=models.CASCADE, related_name="flag")
    reason = models.CharField(max_length=12, choices=Reason)
    note = models.TextField(blank=True, max_length=2000)
    created_at = models.DateTimeField(default=timezone.now)
    cleared_at = models.DateTimeField(null=True, blank=True)
    cleared_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
    )

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [
            models.Index(
                fields=["pair"], condition=Q(cleared_at__isnull=True), name="flag_uncleared"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.pair}: {self.reason} by {self.rater}"
