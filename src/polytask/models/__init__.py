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
from .registry import Backbone, available, builder, get, register
from .sluice import Sluice
from .soft_sharing import SoftSharing

__all__ = [
    "CGC",
    "ESMM",
    "MMoE",
    "MTAN",
    "PLE",
    "AdaShare",
    "Backbone",
    "Branched",
    "CrossStitch",
    "DSelectK",
    "GradientReversal",
    "HardSharing",
    "LearningToBranch",
    "MultiTaskModel",
    "Sluice",
    "SoftSharing",
    "available",
    "builder",
    "get",
    "normalize_spec",
    "register",
    "reverse_gradient",
    "spec_from_groups",
    "with_adversarial_head",
]
