"""QM9 with the graph network of the standard MTL protocol (LibMTL's QM9 example).

Data: Ramakrishnan et al., Sci. Data 2014 (see :mod:`polytask.data.qm9` for the graphs,
units and split). Tasks: LibMTL's eleven targets ``mu, alpha, homo, lumo, r2, zpve,
u0_atom, u_atom, h_atom, g_atom, cv`` (PyG's target indices 0, 1, 2, 3, 5, 6, 12, 13,
14, 15, 11; the gap is left out as it is ``lumo - homo``), each a
:class:`~polytask.tasks.StandardizedRegression` trained with MSE on the standardised
target; MAE is reported per target in PyG's units (eV for energies; LibMTL prints
meV, i.e. ×1000, for homo, lumo, zpve and the four energies).

Backbone (Gilmer et al., ICML 2017, as in PyG's ``qm9_nn_conv`` example, Navon et al.,
ICML 2022, and LibMTL): a linear layer to 64 features, three rounds of NNConv message
passing (edge network 5 → 128 → 64·64, mean aggregation) each followed by a GRU
update, a Set2Set readout (3 steps) and a linear layer with ReLU to a 64-dimensional
graph representation; a linear head per target. Built with PyTorch Geometric (the
``graph`` extra). Differences from LibMTL: LibMTL standardises with the whole data
set's mean and std and decays its learning rate on plateaus (ReduceLROnPlateau,
factor 0.7, patience 5); polytask standardises with the training split and keeps the
learning rate constant. LibMTL's split is its saved permutation; polytask's is a
seeded one of the same sizes (10,000 test, 10,000 validation, the rest training).

``qm9`` is the short CPU configuration (2,000 training, 200 validation and 200 test
molecules, few epochs); ``qm9-full`` is the full protocol (300 epochs, batch 128, lr
1e-3), meant for a GPU.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..data.qm9 import EDGE_FEATURES, NODE_FEATURES, load_qm9
from ..errors import MissingExtraError
from ..models import Backbone
from ..tasks import StandardizedRegression, Task
from .base import Benchmark, BenchmarkData, Split, register

#: LibMTL's QM9 targets, in its order.
LIBMTL_TARGETS: tuple[str, ...] = (
    "mu", "alpha", "homo", "lumo", "r2", "zpve", "u0_atom", "u_atom", "h_atom", "g_atom", "cv",
)  # fmt: skip
PYG_INSTALL = "python -m pip install torch_geometric rdkit  (or: pip install 'polytask[graph]')"


def _pyg():
    try:
        from torch_geometric.nn import NNConv
        from torch_geometric.nn.aggr import Set2Set
    except ImportError as e:
        raise MissingExtraError(
            f"the QM9 graph network needs PyTorch Geometric, which is not installed ({e}). "
            f"Install it with: {PYG_INSTALL}"
        ) from None
    return NNConv, Set2Set


class MPNNEncoder(nn.Module):
    """NNConv + GRU message passing with a Set2Set readout (Gilmer et al., ICML 2017).

    Input: a batch dict with ``x``, ``edge_index``, ``edge_attr`` and ``batch`` (a
    :class:`polytask.data.GraphSet` batch). Output: (graphs, ``dim``). Cost per
    molecule: ``steps`` rounds over its E edges, each edge computing a ``dim × dim``
    matrix from its features (the edge network dominates: O(E · 128 · dim²)).
    """

    def __init__(self, node_features: int = NODE_FEATURES, edge_features: int = EDGE_FEATURES,
                 dim: int = 64, steps: int = 3) -> None:
        super().__init__()
        NNConv, Set2Set = _pyg()
        self.lin0 = nn.Linear(node_features, dim)
        edge_net = nn.Sequential(
            nn.Linear(edge_features, 128), nn.ReLU(), nn.Linear(128, dim * dim)
        )
        self.conv = NNConv(dim, dim, edge_net, aggr="mean")
        self.gru = nn.GRU(dim, dim)
        self.set2set = Set2Set(dim, processing_steps=3)
        self.lin1 = nn.Linear(2 * dim, dim)
        self.steps = steps
        self.out_features = dim

    def forward(self, graphs: dict[str, torch.Tensor]) -> torch.Tensor:
        out = F.relu(self.lin0(graphs["x"]))
        h = out.unsqueeze(0)
        for _ in range(self.steps):
            m = F.relu(self.conv(out, graphs["edge_index"], graphs["edge_attr"]))
            out, h = self.gru(m.unsqueeze(0), h)
            out = out.squeeze(0)
        pooled = self.set2set(out, graphs["batch"])
        return F.relu(self.lin1(pooled))


def _backbone(data: BenchmarkData) -> Backbone:
    _pyg()  # fail early, naming the install command
    return Backbone(make_encoder=MPNNEncoder, out_features=64)


def _tasks() -> dict[str, Task]:
    return {name: StandardizedRegression(name) for name in LIBMTL_TARGETS}


def _fit_tasks(data: BenchmarkData) -> dict[str, Task]:
    tasks: dict[str, Task] = {}
    for name in LIBMTL_TARGETS:
        y = data.train.targets[name].double()
        tasks[name] = StandardizedRegression(name, mean=float(y.mean()), std=float(y.std()))
    return tasks


def _loader(n_train: int | None, n_val: int, n_test: int):
    def load(data_dir: Path | None, seed: int) -> BenchmarkData:
        raw = load_qm9(data_dir, n_train=n_train, n_val=n_val, n_test=n_test)

        def convert(split) -> Split:  # noqa: ANN001
            targets = {t: torch.as_tensor(split.targets[t]) for t in LIBMTL_TARGETS}
            return Split(split.x, targets)

        return BenchmarkData(convert(raw.train), convert(raw.val), convert(raw.test))

    return load


def _benchmark(name: str, description: str, sizes: tuple, epochs: int) -> Benchmark:
    return Benchmark(
        name=name,
        description=description,
        tasks=_tasks,
        fit_tasks=_fit_tasks,
        load=_loader(*sizes),
        backbone=_backbone,
        report={t: ("mae",) for t in LIBMTL_TARGETS},
        epochs=epochs,
        batch_size=128,
        lr=1e-3,
        fetch_name="qm9",
    )


register("qm9")(
    lambda: _benchmark(
        "qm9",
        "QM9, 11 targets, NNConv+GRU+Set2Set (LibMTL protocol); short CPU configuration: "
        "2,000/200/200 molecules (Ramakrishnan et al., 2014)",
        (2000, 200, 200),
        5,
    )
)
register("qm9-full")(
    lambda: _benchmark(
        "qm9-full",
        "QM9, 11 targets, NNConv+GRU+Set2Set, LibMTL's protocol: 110,831/10,000/10,000 "
        "molecules, 300 epochs (for a GPU)",
        (None, 10_000, 10_000),
        300,
    )
)
