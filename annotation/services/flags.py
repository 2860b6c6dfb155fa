"""Raters report problems with pairs; the lead clears the flags or excludes the pair.

`assignment_flag` ends the rater's lease as a skip does and records the flag. Once a pair's
uncleared flags reach the project's `flag_threshold` its `flagged_at` is set, which takes it out
of OPEN_PAIR: it is no longer served and waits in the pairs browser's `flagged` queue. The lead
either clears the flags (`flags_clear`: served again) or excludes the pair (`pair_adjudicate`
with the `exclude` decision: the pair stays held, and leaves exports and training data).

Pair.flags_count counts every flag ever raised on the pair (clearing keeps them as history, so
neither clearing nor excluding changes it): the browser's "most flags" ordering reads it.

Concurrency: the flag is counted under the pair's row lock, taken after the lease as the rating
engine does, so two raters flagging at once count each other's flag.
"""

from __future__ import annotations

from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from annotation.models import Assignment, Flag, Pair, Project
from annotation.services.rating import RatingError, assignment_skip

NOTE_MAX_CHARS = 2000


class NotFlagged(Exception):
    """The pair has no uncleared flag to clear."""


def assignment_flag(
    *, project: Project, assignment_id: int, rater: User, reason: str, note: str = ""
) -> Flag:
    """Record `rater`'s flag on the pair of their lease, end the lease as skip does, and hold the
    pair for the lead once its uncleared flags reach the project's threshold. Someone else's lease
    is LeaseNotHeld whatever the reason; a refused reason or note leaves the lease held."""
    with transaction.atomic():
        assignment_skip(project=project, rater=rater, assignment_id=assignment_id)
        if reason not in Flag.Reason.values:
            raise RatingError(f"Choose one of: {', '.join(Flag.Reason.values)}.", field="reason")
        if len(note) > NOTE_MAX_CHARS:
            raise RatingError(
                f"At most {NOTE_MAX_CHARS} characters, got {len(note)}.", field="note"
            )
        pair_id = Assignment.objects.values_list("pair_id", flat=True).get(id=assignment_id)
        pair = Pair.objects.select_for_update(no_key=True).get(id=pair_id)
        flag = Flag.objects.create(
            pair=pair, rater=rater, assignment_id=assignment_id, reason=reason, note=note
        )
        Pair.objects.filter(id=pair_id).update(flags_count=F("flags_count") + 1)
        uncleared = pair.flags.filter(cleared_at__isnull=True).count()
        if pair.flagged_at is None and uncleared >= project.flag_threshold:
            pair.flagged_at = flag.created_at
            pair.save(update_fields=["flagged_at"])
        return flag


def flags_clear(*, project: Project, pair_id: int, cleared_by: User) -> int:
    """Clear the pair's uncleared flags (kept as history) so that it is served again; the number
    cleared. Raises Pair.DoesNotExist for a pair of another project, NotFlagged when none."""
    with transaction.atomic():
        pair = (
            Pair.objects.select_for_update(no_key=True).filter(project=project, id=pair_id).first()
        )
        if pair is None:
            raise Pair.DoesNotExist(f"No pair {pair_id} in this project.")
        cleared = pair.flags.filter(cleared_at__isnull=True).update(
            cleared_at=timezone.now(), cleared_by=cleared_by
        )
        if not cleared:
            raise NotFlagged(f"Pair {pair_id} has no flag to clear.")
        pair.flagged_at = None
        pair.save(update_fields=["flagged_at"])
        return cleared
