"""factory_boy factories for the annotation models."""

import hashlib
from datetime import timedelta

import factory
from django.contrib.auth import get_user_model
from django.db.models import Count
from django.utils import timezone

from annotation.models import (
    Assignment,
    Batch,
    Flag,
    Judgment,
    Membership,
    Pair,
    Project,
    Prompt,
    Response,
    vote_field,
)

PASSWORD = "correct-horse-battery-staple"


def recounted(pair_id: int) -> dict[str, int]:
    """The counts the engine keeps on a pair's row, recounted from its judgments and flags."""
    choices = Judgment.objects.filter(pair_id=pair_id).values("choice").annotate(n=Count("id"))
    counts = {vote_field(c): 0 for c in Judgment.Choice.values}
    counts |= {vote_field(row["choice"]): row["n"] for row in choices}
    counts["judgments_count"] = sum(counts.values())
    counts["flags_count"] = Flag.objects.filter(pair_id=pair_id).count()
    return counts


def count_as_the_engine_does(pair: Pair) -> Pair:
    """Set the pair's kept counts from the judgments and flags a test planted directly."""
    counts = recounted(pair.id)
    Pair.objects.filter(id=pair.id).update(**counts)
    for name, value in counts.items():
        setattr(pair, name, value)
    return pair


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    password = factory.PostGenerationMethodCall("set_password", PASSWORD)

    @factory.post_generation
    def _save(obj, create, extracted, **kwargs):
        if create:
            obj.save()


class ProjectFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Project

    slug = factory.Sequence(lambda n: f"project-{n}")
    name = factory.Sequence(lambda n: f"Project {n}")


class MembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Membership

    project = factory.SubFactory(ProjectFactory)
    user = factory.SubFactory(UserFactory)
    role = Membership.Role.RATER


class BatchFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Batch

    project = factory.SubFactory(ProjectFactory)
    filename = factory.Sequence(lambda n: f"batch-{n}.jsonl")
    sha256 = factory.Sequence(lambda n: _sha(f"batch-{n}"))
    format = Batch.Format.PAIR
    uploaded_by = factory.SubFactory(UserFactory)


class PromptFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Prompt

    batch = factory.SubFactory(BatchFactory)
    project = factory.SelfAttribute("batch.project")
    text = factory.Sequence(lambda n: f"Prompt number {n}?")
    content_hash = factory.LazyAttribute(lambda o: _sha(o.text))


class ResponseFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Response

    prompt = factory.SubFactory(PromptFactory)
    batch = factory.SelfAttribute("prompt.batch")
    text = factory.Sequence(lambda n: f"Response number {n}.")
    content_hash = factory.LazyAttribute(lambda o: _sha(o.text))
    model_name = "model-x"


class PairFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Pair

    prompt = factory.SubFactory(PromptFactory)
    project = factory.SelfAttribute("prompt.project")
    batch = factory.SelfAttribute("prompt.batch")
    response_a = factory.SubFactory(ResponseFactory, prompt=factory.SelfAttribute("..prompt"))
    response_b = factory.SubFactory(ResponseFactory, prompt=factory.SelfAttribute("..prompt"))
    judgments_needed = factory.SelfAttribute("project.raters_per_pair")


class AssignmentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Assignment

    pair = factory.SubFactory(PairFactory)
    rater = factory.SubFactory(UserFactory)
    swapped = False
    expires_at = factory.LazyFunction(lambda: timezone.now() + timedelta(minutes=30))


class JudgmentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Judgment

    assignment = factory.SubFactory(AssignmentFactory)
    pair = factory.SelfAttribute("assignment.pair")
    rater = factory.SelfAttribute("assignment.rater")
    choice = Judgment.Choice.A
    strength = 2
    swapped = factory.SelfAttribute("assignment.swapped")
    duration_ms = 12_000
