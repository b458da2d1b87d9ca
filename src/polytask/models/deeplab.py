"""DeepLabV3 with a dilated ResNet-50 (through torchvision, an optional extra).

Chen, Papandreou, Schroff & Adam, "Rethinking Atrous Convolution for Semantic Image
Segmentation", arXiv 2017: a ResNet-50 whose last two stages use dilation instead of
stride (output stride 8) and an Atrous Spatial Pyramid Pooling head per task. LibMTL's
NYUv2 and Cityscapes examples use this encoder (ImageNet-pretrained) with one ASPP head
per task and upsample the predictions bilinearly to the input size; polytask does the
same. LibMTL calls it DeepLabV3+, but its heads have no decoder with low-level features
(the "+" of Chen et al., ECCV 2018) — they are DeepLabV3 heads, as here.

Weights are never downloaded: give ``weights=PATH`` to a local ResNet-50 state dict
(torchvision's ``resnet50`` keys, e.g. ImageNet weights saved with ``torch.save``), else
the encoder starts from random initialisation. Needs ``torchvision`` (the
``polytask[deeplab]`` extra), which must match the installed torch build.

Cost: the encoder is 23.5 M parameters; each ASPP head about 16 M (2048 input channels,
counted from the layer sizes); at 288×384 the encoder's feature map is 36×48.
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import PolytaskError


def _torchvision():  # noqa: ANN202
    try:
        import torchvision
    except Exception as error:  # ImportError, or a torchvision built for another torch
        raise PolytaskError(
            "DeepLabV3 needs torchvision matching the installed torch "
            f"({torch.__version__}): pip install 'polytask[deeplab]' ({error})"
        ) from error
    return torchvision


def resnet50_stages(weights: str | os.PathLike[str] | None = None) -> list[nn.Module]:
    """A dilated ResNet-50 (output stride 8) as 4 stages: stem + layer1, layer2, layer3,
    layer4. ``weights``: a local state-dict file of torchvision's ``resnet50``."""
    tv = _torchvision()
    net = tv.models.resnet50(weights=None, replace_stride_with_dilation=[False, True, True])
    if weights is not None:
        state = torch.load(weights, map_location="cpu", weights_only=True)
        missing, _ = net.load_state_dict(state, strict=False)
        missing = [k for k in missing if not k.startswith("fc.")]
        if missing:
            raise PolytaskError(f"{weights}: not a ResNet-50 state dict (missing {missing[:3]})")
    stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool, net.layer1)
    return [stem, net.layer2, net.layer3, net.layer4]


class ASPPHead(nn.Module):
    """torchvision's DeepLabHead (ASPP with rates 12, 24, 36, then 3×3 and 1×1 conv)
    followed by bilinear upsampling by ``stride`` (8: back to the input resolution)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 8) -> None:
        super().__init__()
        tv = _torchvision()
        self.head = tv.models.segmentation.deeplabv3.DeepLabHead(in_channels, out_channels)
        self.stride = int(stride)

    def forward(self, x: Tensor) -> Tensor:
        size = (x.shape[-2] * self.stride, x.shape[-1] * self.stride)
        return F.interpolate(self.head(x), size=size, mode="bilinear", align_corners=True)


def aspp_head_factory(out_channels: int, stride: int = 8):  # noqa: ANN201
    """A ``head`` factory for a dense task: ``in_channels -> ASPPHead``."""
    def build(in_channels: int) -> nn.Module:
        return ASPPHead(in_channels, out_channels, stride)

    return build
