"""The uncertainty heads: they differ, they disagree more on pairs unlike their training data,
and they travel in their own file beside a checkpoint that `from_pretrained` still loads."""

import json

import pytest
import torch
from transformers import AutoModelForSequenceClassification

from rewardtrain.checkpoints import checkpoint_verify, checkpoint_write
from rewardtrain.config import TrainConfig
from rewardtrain.ensemble import (
    ENSEMBLE_FILE,
    disagreement,
    ensemble_fit,
    ensemble_load,
    fit_heads,
    pair_estimates,
    reward_features,
)
from rewardtrain.model import Encoded, distinct, load_reward_model
from rewardtrain.train import train, version_metadata
from tests.rewardtrain.helpers import build_tiny_model, polite_pairs


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("tiny-bert-ensemble"))


@pytest.fixture(scope="module")
def trained(tiny_model_dir):
    config = TrainConfig(
        base_model=str(tiny_model_dir),
        max_length=64,
        batch_size=8,
        learning_rate=1e-3,
        epochs=3,
        num_threads=1,
    )
    pairs = polite_pairs(48)
    return train(config, pairs), pairs


def _planted(generator, count, *, familiar: bool):
    """Feature differences of 16 dims whose preference follows the first two: the training
    pairs vary only in the first 8 dims; unfamiliar pairs also in the last 8."""
    differences = torch.randn(count, 16, generator=generator)
    if familiar:
        differences[:, 8:] = 0
    targets = (differences[:, 0] + 0.5 * differences[:, 1] > 0).float()
    return differences, targets


def test_the_heads_differ_and_disagree_more_on_pairs_unlike_the_training_data():
    generator = torch.Generator().manual_seed(0)
    train_differences, targets = _planted(generator, 300, familiar=True)
    main = fit_heads(
        train_differences,
        targets,
        main_weight=torch.zeros(16),
        main_bias=0.0,
        heads=1,
        generator=generator,
        resample=False,
        offset_scale=0.0,
    )

    heads = fit_heads(
        train_differences,
        targets,
        main_weight=main.weight[0],
        main_bias=0.0,
        heads=5,
        generator=generator,
    )

    assert heads.count == 5
    assert all(
        not torch.allclose(heads.weight[i], heads.weight[j])
        for i in range(5)
        for j in range(i + 1, 5)
    )
    familiar, _ = _planted(generator, 200, familiar=True)
    unfamiliar, _ = _planted(generator, 200, familiar=False)
    assert disagreement(unfamiliar, heads).mean() > 2 * disagreement(familiar, heads).mean()
    # Each head still learned the preference on familiar pairs.
    for k in range(5):
        accuracy = ((train_differences @ heads.weight[k] > 0).float() == targets).float().mean()
        assert accuracy > 0.9


def test_resampling_alone_makes_the_heads_differ():
    generator = torch.Generator().manual_seed(1)
    differences, targets = _planted(generator, 100, familiar=True)

    heads = fit_heads(
        differences,
        targets,
        main_weight=torch.zeros(16),
        main_bias=0.0,
        heads=3,
        generator=generator,
        offset_scale=0.0,
    )

    assert not torch.allclose(heads.weight[0], heads.weight[1])


def test_ensemble_heads_must_be_none_or_several(tiny_model_dir):
    with pytest.raises(ValueError, match="ensemble_heads"):
        TrainConfig(base_model=str(tiny_model_dir), ensemble_heads=1)


def _write(root, result, ensemble):
    metadata, tensors = ensemble.checkpoint_parts() if ensemble else ({}, None)
    return checkpoint_write(
        root=root,
        project="alpha",
        version=1,
        model=result.model,
        tokenizer=result.tokenizer,
        metadata=version_metadata(
            result,
            data_cutoff=1,
            data_sha256="0" * 64,
            counts={"train": 48, "heldout": 0},
            metrics={},
        )
        | metadata,
        extra_tensors=tensors,
    )


def test_a_checkpoint_with_heads_lists_them_and_still_loads_with_from_pretrained(tmp_path, trained):
    result, pairs = trained
    ensemble = ensemble_fit(result, pairs)
    assert ensemble is not None
    assert ensemble.count == 5

    written = _write(tmp_path, result, ensemble)

    manifest = json.loads((written.path / "pairwise.json").read_text())
    assert manifest["ensemble"]["file"] == ENSEMBLE_FILE
    assert manifest["ensemble"]["heads"] == 5
    assert ENSEMBLE_FILE in manifest["files"]
    checkpoint_verify(written.path, root=tmp_path, expected_sha256=written.files_sha256)
    model = AutoModelForSequenceClassification.from_pretrained(written.path)
    assert model.config.num_labels == 1
    loaded = ensemble_load(written.path)
    assert loaded is not None
    assert torch.equal(loaded.weight, ensemble.weight)

    scorer = load_reward_model(written.path, checkpoint_root=tmp_path, bf16=False)
    estimates = pair_estimates(
        scorer,
        loaded,
        ["tell me about rivers", "tell me about lamps"],
        ["sure, gladly: it is lovely, thank you", "no. go away"],
        ["no. go away", "sure, gladly: it is lovely, thank you"],
    )
    assert estimates[0].p_a > 0.5 > estimates[1].p_a
    assert all(0.0 <= e.uncertainty <= 0.5 for e in estimates if e.uncertainty is not None)
    main = scorer.score(
        ["tell me about rivers"] * 2, ["sure, gladly: it is lovely, thank you", "no. go away"]
    )
    assert estimates[0].p_a == pytest.approx(
        torch.sigmoid(torch.tensor(main[0] - main[1])).item(), abs=1e-5
    )


def test_a_checkpoint_without_heads_loads_and_has_no_uncertainty(tmp_path, trained):
    result, _ = trained

    written = _write(tmp_path, result, None)

    assert "ensemble" not in json.loads((written.path / "pairwise.json").read_text())
    assert not (written.path / ENSEMBLE_FILE).exists()
    AutoModelForSequenceClassification.from_pretrained(written.path)
    assert ensemble_load(written.path) is None
    scorer = load_reward_model(written.path, checkpoint_root=tmp_path, bf16=False)
    (estimate,) = pair_estimates(scorer, None, ["hi"], ["sure, thank you"], ["go away"])
    assert estimate.uncertainty is None
    assert 0.0 < estimate.p_a < 1.0


def _all_against_all(responses_per_prompt: int) -> tuple[list[str], list[str], list[str]]:
    """The pool of an import with the "all" pairing rule: every two responses of a prompt."""
    prompts, a_side, b_side = [], [], []
    for prompt in ("tell me about rivers", "tell me about lamps"):
        answers = [f"{prompt}: answer {n} " + "sure " * n for n in range(responses_per_prompt)]
        for first in range(responses_per_prompt):
            for second in range(first + 1, responses_per_prompt):
                prompts.append(prompt)
                a_side.append(answers[first])
                b_side.append(answers[second])
    return prompts, a_side, b_side


def test_each_distinct_response_runs_through_the_model_once_and_scores_as_its_twins(
    tmp_path, trained
):
    result, pairs = trained
    written = _write(tmp_path, result, ensemble_fit(result, pairs))
    scorer = load_reward_model(written.path, checkpoint_root=tmp_path, bf16=False)
    heads = ensemble_load(written.path)
    prompts, a_side, b_side = _all_against_all(4)  # 2 prompts x 6 pairs: 24 items, 8 distinct
    rows: list[int] = []
    hook = scorer.model.register_forward_hook(lambda _m, _a, out: rows.append(len(out.logits)))
    try:
        estimates = pair_estimates(scorer, heads, prompts, a_side, b_side)
    finally:
        hook.remove()

    assert sum(rows) == 8
    encoded = scorer.encoder.encode([*prompts, *prompts], [*a_side, *b_side])
    options = {
        "pad_token_id": scorer.tokenizer.pad_token_id,
        "token_type_ids": scorer.spec.token_type_ids,
        "bf16": False,
    }
    reference = reward_features(scorer.model, encoded, dedupe=False, **options)
    deduped = reward_features(scorer.model, encoded, **options)
    for ours, theirs in zip(deduped, reference, strict=True):
        torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)
    assert scorer.score_encoded(encoded) == pytest.approx(
        scorer.score_encoded(encoded, dedupe=False), abs=1e-5
    )
    count = len(prompts)
    p_a = torch.sigmoid(reference[0][:count] - reference[0][count:])
    assert [e.p_a for e in estimates] == pytest.approx(p_a.tolist(), abs=1e-5)
    assert len({round(e.p_a, 6) for e in estimates}) > 1


def test_distinct_keeps_the_first_of_each_item_and_maps_every_item_to_it():
    one = Encoded(input_ids=[1, 5, 2], token_type_ids=[0, 1, 1], response_cut=False)
    other_segments = Encoded(input_ids=[1, 5, 2], token_type_ids=[0, 0, 1], response_cut=False)
    two = Encoded(input_ids=[1, 6, 2], token_type_ids=[0, 1, 1], response_cut=False)

    unique, where = distinct([one, two, one, other_segments, two])

    assert unique == [one, two, other_segments]
    assert where == [0, 1, 0, 2, 1]
    assert distinct([]) == ([], [])
