"""The training page while pool scoring is under way: the progress passes axe at both widths."""

import pytest

from annotation.models import Pair
from rewardtrain.models import ModelVersion
from tests.browser.conftest import PHONE, VIEWPORT, assert_accessible, log_in
from tests.factories import PairFactory
from tests.rewardtrain.helpers import fake_version

pytestmark = pytest.mark.browser


@pytest.mark.parametrize("viewport", [VIEWPORT, PHONE], ids=["desktop", "phone"])
def test_pool_scoring_progress_passes_axe(
    browser_page, project, admin_member, settings, tmp_path, viewport
):
    settings.CHECKPOINT_ROOT = tmp_path / "checkpoints"
    fake_version(project, 1, state=ModelVersion.State.PUBLISHED)
    pairs = PairFactory.create_batch(3, project=project, prompt__batch__project=project)
    Pair.objects.filter(id=pairs[0].id).update(
        model_p_a=0.7, model_uncertainty=0.1, model_version=1
    )
    page = browser_page
    page.set_viewport_size(viewport)
    log_in(page, admin_member, next_path=f"/p/{project.slug}/training/")

    assert "Open pairs scored by v1: 1 of 3" in " ".join(page.inner_text("main").split())
    assert_accessible(page)
