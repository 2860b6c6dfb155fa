"""The tiny models these tests build live under pytest's temporary directory: allow it as a base
model root (the checkpoint store inside it is still refused as a base model)."""

import pytest


@pytest.fixture(autouse=True)
def _temporary_models_are_allowed_base_models(settings, tmp_path_factory):
    settings.BASE_MODEL_ROOTS = [tmp_path_factory.getbasetemp()]
