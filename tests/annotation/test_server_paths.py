"""Error text that non-staff users read is cleaned of server paths, and nothing else."""

import pytest

from annotation.selectors.server_paths import without_server_paths


@pytest.mark.parametrize(
    ("text", "clean"),
    [
        (
            "OSError: [Errno 2] No such file or directory: '/data/models/x/config.json'",
            "OSError: [Errno 2] No such file or directory: '<path>'",
        ),
        ("/srv/ckpt/alpha/v1 is not a directory", "<path> is not a directory"),
        ("see http://score-server:8765/score and v1/model.safetensors", None),
        ("accuracy 0.5 / 0.7, 3/4 pairs", None),
    ],
)
def test_absolute_paths_are_replaced_and_urls_and_fractions_kept(text, clean):
    assert without_server_paths(text) == (clean if clean is not None else text)
