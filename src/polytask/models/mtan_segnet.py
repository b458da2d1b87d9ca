"""MTAN on SegNet, as in the MTAN paper's dense-prediction experiments."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import PolytaskError
from ..tasks import Task, is_dense
from .base import MultiTaskModel
from .layers import modules_parameters
from .registry import Backbone, register
from .segnet import SEGNET_CONVS, SEGNET_FILTERS, SegNet, conv_bn_relu, init_mtan_weights


def _attention(in_channels: int, out_channels: int) -> nn.Sequential:
    """g: [1×1 conv, BN, ReLU, 1×1 conv, BN, sigmoid] (the paper's attention module)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 1), nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
        nn.Conv2d(out_channels, out_channels, 1), nn.BatchNorm2d(out_channels), nn.Sigmoid(),
    )


class MTANSegNet(MultiTaskModel):
    """Multi-Task Attention Network on SegNet (Liu, Johns & Davison, CVPR 2019), as the
    authors' ``im2im_pred/model_segnet_mtan.py``, for any number of dense tasks.

    A shared :class:`SegNet`; each task has one soft-attention module per encoder and
    per decoder block. In encoder block j the mask is computed from the block's first
    convolution ``u_j`` (and, after the first block, the task's previous attended
    feature) and applied to the block's output ``p_j``: ``â_j = g_j([u_j; f_j(â_{j-1})])
    ⊙ p_j``, where the shared ``f_j`` is a conv-BN-ReLU followed by 2×2 max pooling. In
    decoder block j the task's feature is upsampled (bilinear ×2), passed through a
    shared conv-BN-ReLU, concatenated with the block's unpooled input, and the mask is
    applied to the block's output. Each task's head reads its last attended decoder
    feature (default head: 3×3 then 1×1 convolution, as the paper).

    Parameter split: the SegNet and the shared ``f`` blocks are shared; a task's
    attention modules and head are its own. There is no single shared representation
    (``shared_representation`` stays None).

    Cost relative to hard sharing on the same SegNet: the trunk once, plus per task and
    per block two 1×1 convolutions and a masked copy of the block's output, and per block
    one shared 3×3 convolution run on each task's feature (K runs): 44.23 M parameters
    for the three NYUv2 tasks against 25.06 M for hard sharing (the paper: 1.77×);
    compute grows by roughly K shared 3×3 convolutions per block.

    Where the code and the paper differ: the paper's Figure 2 feeds the decoder masks
    from the block's intermediate feature; the code concatenates the unpooled input
    ``up_j`` instead — polytask follows the code. The code's encoder ``f`` of the deepest
    block keeps 512 channels and its first decoder ``f`` maps 512 to 512; with general
    filters polytask maps to the next level's channels, which equals the code for the
    paper's filters. The code outputs log-softmax for segmentation and unit normals;
    here heads give logits and raw normals, and the tasks apply softmax (in the loss)
    and normalisation.

    Args:
        tasks: dense task specs (any number).
        in_channels, filters, convs: the SegNet (see :class:`SegNet`).
        heads: optional ``{task: module}`` mapping the (N, filters[0], H, W) feature.
    """

    def __init__(
        self,
        tasks: Mapping[str, Task] | Iterable[Task],
        in_channels: int = 3,
        filters: Sequence[int] = SEGNET_FILTERS,
        convs: Sequence[int] = SEGNET_CONVS,
        heads: Mapping[str, nn.Module] | None = None,
    ) -> None:
        super().__init__(tasks)
        flat = [n for n, t in self.tasks.items() if not is_dense(t) and n not in (heads or {})]
        if flat:
            raise PolytaskError(
                f"MTANSegNet: tasks {flat} are not dense; its heads read a (N, C, H, W) map"
            )
        self.segnet = SegNet(in_channels, filters, convs)
        f = list(filters)
        levels = len(f)
        # shared f blocks: encoder level j maps f[j] to f[j+1] (the last keeps f[-1]),
        # decoder level i (deepest first) maps the previous attended feature to the
        # channels of that level's decoder output
        self.enc_shared = nn.ModuleList(
            [conv_bn_relu(f[j], f[j + 1] if j + 1 < levels else f[j]) for j in range(levels)]
        )
        dec_in = [f[-1]]  # channels of the feature entering decoder level 0 (deepest)
        dec_out = []
        for i in reversed(range(levels)):
            dec_out.append(f[i - 1] if i > 0 else f[0])
            dec_in.append(dec_out[-1])
        self.dec_shared = nn.ModuleList(
            [conv_bn_relu(dec_in[j], dec_out[j]) for j in range(levels)]
        )
        unpooled = [f[i] for i in reversed(range(levels))]  # channels of dec_up per level
        self.enc_att = nn.ModuleDict()
        self.dec_att = nn.ModuleDict()
        for k in self.task_names:
            self.enc_att[k] = nn.ModuleList(
                [_attention(f[0], f[0])] + [_attention(2 * f[j], f[j]) for j in range(1, levels)]
            )
            self.dec_att[k] = nn.ModuleList(
                [_attention(unpooled[j] + dec_out[j], dec_out[j]) for j in range(levels)]
            )
        init_mtan_weights(self.enc_shared)
        init_mtan_weights(self.dec_shared)
        init_mtan_weights(self.enc_att)
        init_mtan_weights(self.dec_att)
        heads = dict(heads or {})
        for name, task in self.tasks.items():
            if name not in heads:
                heads[name] = task.build_head(f[0])
        self.heads = nn.ModuleDict({name: heads[name] for name in self.task_names})

    def task_features(self, x: Tensor) -> dict[str, Tensor]:
        """Each task's last attended decoder feature (N, filters[0], H, W)."""
        feats = self.segnet.features(x)
        out = {}
        for k in self.task_names:
            a = None
            for j, g in enumerate(self.enc_att[k]):
                u, p = feats["enc_u"][j], feats["enc_p"][j]
                mask = g(u if a is None else torch.cat([u, a], dim=1))
                a = F.max_pool2d(self.enc_shared[j](mask * p), 2, 2)
            for j, g in enumerate(self.dec_att[k]):
                a = F.interpolate(a, scale_factor=2, mode="bilinear", align_corners=True)
                a = self.dec_shared[j](a)
                mask = g(torch.cat([feats["dec_up"][j], a], dim=1))
                a = mask * feats["dec_p"][j]
            out[k] = a
        return out

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        feats = self.task_features(x)
        return {k: self.heads[k](feats[k]) for k in self.task_names}

    def shared_parameters(self) -> Iterator[nn.Parameter]:
        return modules_parameters([self.segnet, self.enc_shared, self.dec_shared])

    def task_parameters(self, name: str) -> Iterator[nn.Parameter]:
        self._check_task(name)
        return modules_parameters([self.enc_att[name], self.dec_att[name], self.heads[name]])


@register("mtan_segnet")
def _mtan_segnet(tasks, backbone: Backbone, **kwargs: Any) -> MTANSegNet:  # noqa: ANN001
    """MTAN on SegNet (Liu et al., CVPR 2019), the authors' dense architecture.

    Uses the backbone's input channels and, when the backbone says so (the dense
    benchmarks put ``filters``/``convs`` in ``Backbone.options``), its SegNet size."""
    options = dict(getattr(backbone, "options", None) or {})
    if backbone.input_shape is not None:
        kwargs.setdefault("in_channels", int(backbone.input_shape[0]))
    for key in ("filters", "convs"):
        if key in options:
            kwargs.setdefault(key, options[key])
    return MTANSegNet(tasks, **kwargs)


@register("segnet")
def _segnet(tasks, backbone: Backbone, **kwargs: Any) -> MultiTaskModel:  # noqa: ANN001
    """Hard sharing on the index-unpooling SegNet (MTAN paper's "split" baseline).

    Sized by ``Backbone.options`` (``filters``/``convs``) when given."""
    from .hard_sharing import HardSharing

    options = dict(getattr(backbone, "options", None) or {})
    in_channels = int(backbone.input_shape[0]) if backbone.input_shape is not None else 3
    net = SegNet(in_channels, options.get("filters", SEGNET_FILTERS),
                 options.get("convs", SEGNET_CONVS))
    return HardSharing(net, tasks, **kwargs)
