"""How many (prompt, response) pairs per second the score server answers, with the MiniLM base.

Scores HH-RLHF responses (max length 256, the prompt cut from the left) three ways: the
RewardModel in process, and the score server's HTTP app (wsgiref, threaded, one model thread that
batches concurrent requests) with 1 and 4 concurrent clients sending 32 pairs per request.
The model is MiniLM with a fresh reward head (speed does not depend on the head's weights),
written as a real version directory and loaded the way the score server loads it
(`load_reward_model`: checksums verified, bf16 weights where the CPU has bf16).

    .venv/bin/python benchmarks/score_speed.py [--seconds 15]
    .venv/bin/python benchmarks/score_speed.py --profile   # where the in-process time goes

`--profile` scores 1,024 items once under the PyTorch profiler and prints the share of the
model's CPU time in each kind of operator: the Linear products, attention, GELU, LayerNorm and
the rest. Those shares bound what a faster kernel for one kind can gain
(docs/benchmarks_training.md).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("DEBUG", "true")

import django  # noqa: E402

django.setup()

import torch  # noqa: E402
from score_api import PER_REQUEST, concurrently, hh_items, write_minilm_version  # noqa: E402

from rewardtrain.model import RewardModel, load_reward_model  # noqa: E402
from rewardtrain.score_server import Batcher, ModelCache, score_server_app  # noqa: E402

SECRET = secrets.token_hex(16)  # the benchmark's own server and clients share it


class _FixedModel(ModelCache):
    """The benchmark's model, without a database: the lookup is not what is measured."""

    def __init__(self, model: RewardModel) -> None:
        super().__init__()
        self.model = model

    def published(self, project: str) -> tuple[int, RewardModel]:
        return 1, self.model


def _served_minilm(root: Path) -> RewardModel:
    path, sha256 = write_minilm_version(root)
    return load_reward_model(path, checkpoint_root=root, expected_sha256=sha256)


def _http_rate(url: str, items: list[dict[str, str]], clients: int, seconds: float) -> float:
    done = [0] * clients
    stop = time.monotonic() + seconds

    def client(index: int) -> None:
        position = index * PER_REQUEST
        while time.monotonic() < stop:
            batch = [items[(position + k) % len(items)] for k in range(PER_REQUEST)]
            position += PER_REQUEST * clients
            body = json.dumps({"project": "bench", "items": batch}).encode()
            request = urllib.request.Request(url, data=body, method="POST")  # noqa: S310
            request.add_header("X-Score-Server-Secret", SECRET)
            with urllib.request.urlopen(request, timeout=120) as response:  # noqa: S310
                assert len(json.load(response)["scores"]) == PER_REQUEST
            done[index] += PER_REQUEST

    seconds = concurrently(client, clients)
    return sum(done) / seconds


# Operator name fragments of each kind `--profile` reports, first match wins.
KINDS = {
    "Linear products": ("linear", "addmm", "_int_mm"),
    "attention": ("scaled_dot_product", "bmm", "softmax"),
    "GELU": ("gelu",),
    "LayerNorm": ("layer_norm",),
}


def profile_shares(reward_model: RewardModel, items: list[dict[str, str]]) -> None:
    """Print each kind of operator's share of the self CPU time of scoring `items` once."""
    from torch.profiler import ProfilerActivity, profile

    encoded = reward_model.encoder.encode(
        [i["prompt"] for i in items], [i["response"] for i in items]
    )
    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        started = time.monotonic()
        reward_model.score_encoded(encoded, dedupe=False)
        elapsed = time.monotonic() - started
    totals = dict.fromkeys([*KINDS, "the rest"], 0.0)
    for event in profiler.key_averages():
        kind = next(
            (k for k, names in KINDS.items() if any(n in event.key for n in names)), "the rest"
        )
        totals[kind] += event.self_cpu_time_total
    whole = sum(totals.values())
    print(f"profiled: {len(encoded)} items in {elapsed:.1f} s ({len(encoded) / elapsed:.0f}/s)")
    for kind, spent in totals.items():
        print(f"  {kind:16s} {100 * spent / whole:5.1f}% of the CPU time")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--profile", action="store_true", help="only print where the time goes")
    args = parser.parse_args()
    from wsgiref.simple_server import make_server

    from rewardtrain.score_server import _QuietHandler, _ThreadingServer

    reward_model = _served_minilm(Path(tempfile.mkdtemp(prefix="score-speed-")))
    items = hh_items(1024)
    mean_tokens = (
        sum(
            len(e.input_ids)
            for e in reward_model.encoder.encode(
                [i["prompt"] for i in items[:256]], [i["response"] for i in items[:256]]
            )
        )
        / 256
    )
    print(
        f"{len(items)} HH items, mean {mean_tokens:.0f} tokens (max 256), torch threads "
        f"{torch.get_num_threads()}, weights {reward_model.model.dtype}"
    )

    reward_model.score([i["prompt"] for i in items[:64]], [i["response"] for i in items[:64]])
    if args.profile:
        profile_shares(reward_model, items)
        return
    started, scored = time.monotonic(), 0
    while time.monotonic() - started < args.seconds:
        chunk = items[scored % len(items) :][:256]
        reward_model.score([i["prompt"] for i in chunk], [i["response"] for i in chunk])
        scored += len(chunk)
    print(f"in process, 256 per call: {scored / (time.monotonic() - started):.0f} pairs/s")

    server = make_server(
        "127.0.0.1",
        0,
        score_server_app(Batcher(_FixedModel(reward_model)), secret=SECRET),
        server_class=_ThreadingServer,
        handler_class=_QuietHandler,
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/score"
    try:
        for clients in (1, 4):
            rate = _http_rate(url, items, clients, args.seconds)
            print(
                f"HTTP score server, {clients} client(s) x {PER_REQUEST} pairs/request: "
                f"{rate:.0f} pairs/s"
            )
    finally:
        server.shutdown()
        server.server_close()


if __name__ == "__main__":
    main()
