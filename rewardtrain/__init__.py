"""Turning judgments into reward models: runs, versions, scoring.

`load_reward_model` is imported lazily: this package is a Django app that the web process loads,
and the web process must never import torch.
"""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rewardtrain.model import load_reward_model

__all__ = ["load_reward_model"]


def __getattr__(name: str) -> Any:
    if name == "load_reward_model":
        from rewardtrain.model import load_reward_model

        return load_reward_model
    raise AttributeError(name)
