"""Architectures: which parameters the tasks share."""

from .adashare import AdaShare
from .base import MultiTaskModel
from .branched import Branched, normalize_spec, spec_from_groups
from .cross_stitch import CrossStitch
from .esmm import ESMM
from .experts import CGC, PLE, DSelectK, MMoE
from .hard_sharing import HardSharing
from .layers import GradientReversal, reverse_gradient, with_adversarial_head
from .learning_to_branch import LearningToBranch
from .mtan import MTAN
from .mtan_segnet import MTANSegNet
from .registry import Backbone, available, builder, get, register
from .segnet import SEGNET_CONVS, SEGNET_FILTERS, SegNet, StagedDense, segnet_stages
from .sluice import Sluice
from .soft_sharing import SoftSharing

__all__ = [
    "CGC",
    "ESMM",
    "MMoE",
    "MTAN",
    "SEGNET_CONVS",
    "SEGNET_FILTERS",
    "PLE",
    "AdaShare",
    "Backbone",
    "Branched",
    "CrossStitch",
    "DSelectK",
    "GradientReversal",
    "HardSharing",
    "LearningToBranch",
    "MTANSegNet",
    "MultiTaskModel",
    "SegNet",
    "Sluice",
    "SoftSharing",
    "StagedDense",
    "available",
    "builder",
    "get",
    "normalize_spec",
    "register",
    "reverse_gradient",
    "segnet_stages",
    "spec_from_groups",
    "with_adversarial_head",
]
