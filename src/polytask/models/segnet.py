"""SegNet encoder-decoders for dense prediction, as the MTAN paper uses them.

SegNet (Badrinarayanan, Kendall & Cipolla, TPAMI 2017) is a VGG-style encoder of
conv-BN-ReLU blocks with 2×2 max pooling and a mirrored decoder whose max-unpooling puts
each value back where the encoder's maximum came from (the pooling indices). The MTAN
paper (Liu, Johns & Davison, CVPR 2019) and its code (``lorenmt/mtan``,
``im2im_pred/model_segnet_*.py``) use it with filters 64-128-256-512-512, blocks of 2,
2, 3, 3, 3 convolutions, and per-task prediction layers (3×3 then 1×1 convolution).

Two forms:

- :class:`SegNet`, the faithful network (max-unpooling with indices) used as the shared
  encoder of hard sharing and inside :class:`~polytask.models.MTANSegNet`;
- :func:`segnet_stages`, the same blocks as a list of stages for the architectures that
  mix, attend over or branch stage outputs (cross-stitch, generic MTAN, branched). A
  stage passes one tensor to the next, so the decoder stages cannot receive pooling
  indices: they upsample by nearest-neighbour interpolation instead (polytask's choice,
  documented; the MTAN repository's cross-stitch SegNet unpools with each column's own
  indices).

Weights are initialised as in the MTAN code: Xavier-normal convolutions with zero bias,
BatchNorm weight 1 and bias 0.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from ..errors import PolytaskError

#: The MTAN paper's SegNet: filters per level and convolutions per block.
SEGNET_FILTERS = (64, 128, 256, 512, 512)
SEGNET_CONVS = (2, 2, 3, 3, 3)


def conv_bn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    """3×3 convolution (padding 1), BatchNorm, ReLU: SegNet's building block."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


def init_mtan_weights(module: nn.Module) -> None:
    """The MTAN code's initialisation: Xavier-normal conv/linear weights, zero biases,
    BatchNorm weight 1 and bias 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_normal_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def _check(filters: Sequence[int], convs: Sequence[int]) -> None:
    if len(filters) != len(convs) or not filters:
        raise PolytaskError(
            f"SegNet: filters {tuple(filters)} and convs {tuple(convs)} need one entry per "
            "level, at least one level"
        )
    if any(c < 1 for c in convs):
        raise PolytaskError(f"SegNet: every block needs at least one convolution, got {convs}")


def _rest(channels: int, convs: int) -> nn.Module:
    """The block's convolutions after the first (Identity when there are none)."""
    if convs == 1:
        return nn.Identity()
    return nn.Sequential(*[conv_bn_relu(channels, channels) for _ in range(convs - 1)])


def _encoder_blocks(in_channels: int, filters: Sequence[int],
                    convs: Sequence[int]) -> list[tuple[nn.Module, nn.Module]]:
    """Per level (u, p): u the first convolution, p the remaining ones (Identity if none),
    the split the MTAN attention reads (mask from u, applied to p)."""
    blocks = []
    cin = in_channels
    for f, n in zip(filters, convs):
        first = conv_bn_relu(cin, f)
        blocks.append((first, _rest(f, n)))
        cin = f
    return blocks


def _decoder_blocks(filters: Sequence[int],
                    convs: Sequence[int]) -> list[tuple[nn.Module, nn.Module]]:
    """Per level, deepest first: (u, p) mapping filters[i] to filters[i-1] (filters[0]
    at the top level)."""
    blocks = []
    for i in reversed(range(len(filters))):
        out = filters[i - 1] if i > 0 else filters[0]
        first = conv_bn_relu(filters[i], out)
        blocks.append((first, _rest(out, convs[i])))
    return blocks


class SegNet(nn.Module):
    """SegNet (Badrinarayanan et al., TPAMI 2017) in the MTAN paper's configuration.

    Maps (N, in_channels, H, W) to a (N, filters[0], H, W) feature map (``out_channels``);
    H and W must be divisible by ``2 ** len(filters)`` (288×384 and 128×256 are, with 5
    levels). Task heads go on top (hard sharing). Size: 24.94 M parameters with the
    paper's filters, without heads (25.06 M with the three NYUv2 heads).

    Args:
        in_channels: input channels (3 for RGB).
        filters: channels per level.
        convs: convolutions per encoder (and mirrored decoder) block.
    """

    def __init__(self, in_channels: int = 3, filters: Sequence[int] = SEGNET_FILTERS,
                 convs: Sequence[int] = SEGNET_CONVS) -> None:
        super().__init__()
        _check(filters, convs)
        self.filters, self.convs = tuple(filters), tuple(convs)
        enc = _encoder_blocks(in_channels, filters, convs)
        dec = _decoder_blocks(filters, convs)
        self.enc_first = nn.ModuleList([u for u, _ in enc])
        self.enc_rest = nn.ModuleList([p for _, p in enc])
        self.dec_first = nn.ModuleList([u for u, _ in dec])
        self.dec_rest = nn.ModuleList([p for _, p in dec])
        self.pool = nn.MaxPool2d(2, 2, return_indices=True)
        self.unpool = nn.MaxUnpool2d(2, 2)
        self.out_channels = self.filters[0]
        init_mtan_weights(self)

    def _check_input(self, x: Tensor) -> None:
        k = 2 ** len(self.filters)
        if x.dim() != 4 or x.shape[-2] % k or x.shape[-1] % k:
            raise PolytaskError(
                f"SegNet with {len(self.filters)} levels needs (N, C, H, W) input with H and "
                f"W divisible by {k}; got {tuple(x.shape)}"
            )

    def features(self, x: Tensor) -> dict[str, list[Tensor]]:
        """Every intermediate feature: encoder ``enc_u``/``enc_p`` per level, decoder
        ``dec_up`` (the unpooled input), ``dec_u`` and ``dec_p`` per level (deepest
        first); ``dec_p[-1]`` is the output."""
        self._check_input(x)
        feats: dict[str, list[Tensor]] = {k: [] for k in
                                          ("enc_u", "enc_p", "dec_up", "dec_u", "dec_p")}
        indices = []
        for first, rest in zip(self.enc_first, self.enc_rest):
            u = first(x)
            p = rest(u)
            feats["enc_u"].append(u)
            feats["enc_p"].append(p)
            x, idx = self.pool(p)
            indices.append(idx)
        for j, (first, rest) in enumerate(zip(self.dec_first, self.dec_rest)):
            up = self.unpool(x, indices[-j - 1])
            u = first(up)
            x = rest(u)
            feats["dec_up"].append(up)
            feats["dec_u"].append(u)
            feats["dec_p"].append(x)
        return feats

    def forward(self, x: Tensor) -> Tensor:
        return self.features(x)["dec_p"][-1]


class _Upsample(nn.Module):
    """Nearest-neighbour ×2 upsampling (the stage form's stand-in for unpooling)."""

    def forward(self, x: Tensor) -> Tensor:
        return nn.functional.interpolate(x, scale_factor=2, mode="nearest")


def segnet_stages(in_channels: int = 3, filters: Sequence[int] = SEGNET_FILTERS,
                  convs: Sequence[int] = SEGNET_CONVS) -> list[nn.Module]:
    """SegNet as 2·L stages: L encoder stages (block, then 2×2 max pooling) and L decoder
    stages (nearest ×2 upsampling in place of index unpooling, then the block).

    The last stage outputs (N, filters[0], H, W). Same blocks, channels and
    initialisation as :class:`SegNet`.
    """
    _check(filters, convs)
    stages: list[nn.Module] = []
    for first, rest in _encoder_blocks(in_channels, filters, convs):
        stages.append(nn.Sequential(first, rest, nn.MaxPool2d(2, 2)))
    for first, rest in _decoder_blocks(filters, convs):
        stages.append(nn.Sequential(_Upsample(), first, rest))
    for stage in stages:
        init_mtan_weights(stage)
    return stages


class StagedDense(nn.Sequential):
    """Stages run in sequence as one encoder, with the ``out_channels`` of the last."""

    def __init__(self, stages: Sequence[nn.Module], out_channels: int) -> None:
        super().__init__(*stages)
        self.out_channels = int(out_channels)
