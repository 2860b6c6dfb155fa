"""The score server answers score requests only with the secret it shares with the web process."""

import io
import json

import pytest

from rewardtrain.score_server import Batcher, ModelCache, score_server_app


def _post(app, headers: dict[str, str]) -> tuple[str, dict]:
    body = json.dumps({"project": "alpha", "items": []}).encode()
    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/score",
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
        **headers,
    }
    answer: list[str] = []
    chunks = app(environ, lambda status, headers: answer.append(status))
    return answer[0], json.loads(b"".join(chunks))


@pytest.fixture(scope="module")
def app():
    return score_server_app(Batcher(ModelCache(device="cpu")), secret="s3cret-shared")


@pytest.mark.parametrize(
    "headers", [{}, {"HTTP_X_SCORE_SERVER_SECRET": "guess"}], ids=["none", "wrong"]
)
def test_a_score_request_without_the_shared_secret_is_refused(app, headers):
    status, body = _post(app, headers)
    assert status == "401 Unauthorized"
    assert body == {"detail": "no or a wrong secret"}


def test_a_score_request_with_the_secret_goes_on_to_be_read(app):
    status, body = _post(app, {"HTTP_X_SCORE_SERVER_SECRET": "s3cret-shared"})
    assert status == "400 Bad Request"  # past the secret: the empty item list is what is wrong
    assert "items" in body["detail"]


def test_a_scorer_without_a_secret_does_not_start():
    with pytest.raises(ValueError, match="shared secret"):
        score_server_app(Batcher(ModelCache(device="cpu")), secret="")
