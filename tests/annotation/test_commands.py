"""The foundation's commands: demo and import_batch."""

import json

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command

from annotation.models import Batch, Judgment, Membership, Pair, Project, Prompt, Response
from annotation.selectors.access import user_can_create_projects


@pytest.fixture
def var_dir(settings, tmp_path):
    settings.VAR_DIR = tmp_path
    return tmp_path


def test_demo_builds_a_project_with_accounts_and_prints_their_logins(db, var_dir, capsys):
    call_command("demo")
    out = capsys.readouterr().out
    project = Project.objects.get(slug="demo")
    assert project.prompts.count() == 60
    assert project.pairs.count() == 60 * 3  # k = 3 pairs per prompt, preferring different models
    roles = dict(Membership.objects.filter(project=project).values_list("user__username", "role"))
    assert roles == {
        "demo-admin": "admin",
        "demo-lead": "lead",
        "demo-rater1": "rater",
        "demo-rater2": "rater",
        "demo-rater3": "rater",
    }
    logins = json.loads((var_dir / "demo-logins.json").read_text())
    for username, password in logins.items():
        assert f"{username:12} {password}" in out
    assert (var_dir / "demo-logins.json").stat().st_mode & 0o077 == 0
    # The README's tour: the demo's admin starts projects without being staff.
    admin = User.objects.get(username="demo-admin")
    assert not admin.is_staff
    assert user_can_create_projects(user=admin)


def test_running_demo_twice_changes_nothing(db, var_dir, capsys):
    call_command("demo")
    first = capsys.readouterr().out
    counts = [m.objects.count() for m in (Project, Batch, Prompt, Response, Pair, Membership)]
    call_command("demo")
    assert [
        m.objects.count() for m in (Project, Batch, Prompt, Response, Pair, Membership)
    ] == counts
    assert capsys.readouterr().out.splitlines()[-5:] == first.splitlines()[-5:]


def test_demo_simulate_adds_plausible_judgments_through_the_engine(db, var_dir):
    call_command("demo", "--simulate", "90")
    judgments = Judgment.objects.filter(pair__project__slug="demo")
    assert judgments.count() == 90
    per_rater = {
        r: judgments.filter(rater__username=r).count()
        for r in ("demo-rater1", "demo-rater2", "demo-rater3")
    }
    assert per_rater == {"demo-rater1": 30, "demo-rater2": 30, "demo-rater3": 30}
    assert all(p.judgments_count <= p.judgments_needed for p in Pair.objects.all())
    assert set(judgments.values_list("choice", flat=True)) >= {"a", "b"}
    call_command("demo", "--simulate", "90")
    assert judgments.count() == 90  # a second run tops up to N, it does not add N more


PAIRS = [
    {
        "id": "p1",
        "prompt": "Say hi",
        "response_a": "Hi!",
        "response_b": "Hello.",
        "model_a": "m1",
        "model_b": "m2",
    },
    {
        "id": "p2",
        "prompt": [{"role": "user", "content": "2+2?"}],
        "response_a": "4",
        "response_b": "5",
    },
]


def _write(path, records):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    return path


def test_import_batch_imports_pairs_and_reports_counts(project, admin_member, tmp_path, capsys):
    call_command("import_batch", project.slug, str(_write(tmp_path / "pairs.jsonl", PAIRS)))
    assert "2 new prompts, 4 new responses, 2 new pairs" in capsys.readouterr().out
    chat = Prompt.objects.get(project=project, external_id="p2")
    assert chat.messages == [{"role": "user", "content": "2+2?"}]
    assert (
        Pair.objects.filter(project=project, judgments_needed=project.raters_per_pair).count() == 2
    )


def test_import_batch_of_an_invalid_file_imports_nothing_and_names_line_and_field(
    project, admin_member, tmp_path, capsys
):
    bad = [*PAIRS, {"id": "p3", "prompt": "x", "response_a": "same"}]
    with pytest.raises(CommandError, match="nothing was imported"):
        call_command("import_batch", project.slug, str(_write(tmp_path / "bad.jsonl", bad)))
    err = capsys.readouterr().err
    assert 'line 3, field "response_b"' in err
    assert not Batch.objects.exists()
    assert not Prompt.objects.exists()


def test_import_batch_refuses_the_same_file_twice_unless_asked(project, admin_member, tmp_path):
    path = _write(tmp_path / "pairs.jsonl", PAIRS)
    call_command("import_batch", project.slug, str(path))
    with pytest.raises(CommandError, match="nothing was imported"):
        call_command("import_batch", project.slug, str(path))
    call_command("import_batch", project.slug, str(path), "--allow-duplicate")
    assert Batch.objects.count() == 2
    assert Pair.objects.count() == 2  # the pairs exist already: not created twice


def test_import_batch_pairs_responses_by_the_project_rule(project, admin_member, tmp_path):
    project.pairing_rule = Project.PairingRule.ALL
    project.save()
    record = {
        "id": "q",
        "prompt": "Pick",
        "responses": [{"text": t, "model": m} for t, m in [("a", "x"), ("b", "y"), ("c", "z")]],
    }
    call_command("import_batch", project.slug, str(_write(tmp_path / "r.jsonl", [record])))
    assert Pair.objects.count() == 3


def test_import_batch_of_preferences_needs_gold_or_seed(project, admin_member, tmp_path):
    path = _write(tmp_path / "pref.jsonl", [{"prompt": "Q", "chosen": "good", "rejected": "bad"}])
    with pytest.raises(CommandError):
        call_command("import_batch", project.slug, str(path))
    call_command("import_batch", project.slug, str(path), "--as", "seed")
    pair = Pair.objects.get()
    chosen_side = pair.seed_choice
    assert getattr(pair, f"response_{chosen_side}").text == "good"
    assert pair.judgments_needed == 0  # seed labels are training data, not served to raters


def test_import_batch_into_an_unknown_project_says_so(db, tmp_path):
    with pytest.raises(CommandError, match="No project"):
        call_command("import_batch", "nope", str(_write(tmp_path / "p.jsonl", PAIRS)))
