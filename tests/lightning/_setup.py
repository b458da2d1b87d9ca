"""A tiny multi-task problem shared by the Lightning tests (CPU, a few steps)."""

from __future__ import annotations

import os

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler

import polytask as pt

TASKS = [pt.Regression("r"), pt.Binary("b"), pt.Regression("s")]
N = 16  # samples: two batches of 8 (one process) or of 4 on each of two


class Pairs(Dataset):
    """(x, {task: target}) samples that the default collate batches."""

    def __init__(self, n: int = N, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, 5, generator=g)
        self.y = {
            "r": self.x[:, 0] - 0.5 * self.x[:, 1] + 0.1 * torch.randn(n, generator=g),
            "b": (self.x[:, 2] > 0).float(),
            "s": self.x[:, 3] * self.x[:, 4],
        }

    def __len__(self) -> int:
        return self.x.shape[0]

    def __getitem__(self, i: int):
        return self.x[i], {name: y[i] for name, y in self.y.items()}


def model(seed: int = 0) -> pt.HardSharing:
    torch.manual_seed(seed)
    return pt.HardSharing(nn.Sequential(nn.Linear(5, 8), nn.Tanh()), TASKS,
                          encoder_out_features=8)


def loader(batch_size: int = 8, seed: int = 0, ranks: int = 1) -> DataLoader:
    """The samples in order; on ``ranks`` > 1 processes, this rank's share of each."""
    data = Pairs(seed=seed)
    if ranks == 1:
        return DataLoader(data, batch_size=batch_size, shuffle=False)
    rank = int(os.environ["RANK"])  # set before Lightning joins the process group
    sampler = DistributedSampler(data, num_replicas=ranks, rank=rank, shuffle=False)
    return DataLoader(data, batch_size=batch_size, sampler=sampler)


def flat(module: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in module.parameters()])
