"""Helpers shared by the aggregation methods."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def to_weights(w: np.ndarray, like: Tensor) -> Tensor:
    """A float64 NumPy weight vector as a tensor on the device of ``like``."""
    w = np.array(w, dtype=np.float64)  # an own copy: the rule's arrays may be its state
    if like.device.type == "cpu":
        return torch.from_numpy(w)
    return torch.as_tensor(w, device=like.device)


def seeded_rng(seed_source: np.random.Generator | None) -> np.random.Generator:
    """The method's own generator, or one drawn from torch's global RNG (so that
    ``torch.manual_seed`` makes every method reproducible)."""
    if seed_source is not None:
        return seed_source
    return np.random.default_rng(int(torch.randint(0, 2**62, ()).item()))


def task_order(rng: np.random.Generator, k: int) -> np.ndarray:
    """K×(K-1): row i is a random order of the other tasks j ≠ i."""
    keys = rng.random((k, k))
    np.fill_diagonal(keys, np.inf)
    return np.argsort(keys, axis=1)[:, : k - 1]


def resize_buffers_on_load(
    module: torch.nn.Module, state_dict: dict, prefix: str, names: tuple[str, ...]
) -> None:
    """Give lazily-sized buffers the shape stored in a checkpoint before loading it."""
    for name in names:
        key = prefix + name
        if key in state_dict and isinstance(state_dict[key], Tensor):
            setattr(module, name, torch.empty_like(state_dict[key]))
