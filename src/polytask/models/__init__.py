"""Architectures: which parameters the tasks share."""

from .base import MultiTaskModel
from .hard_sharing import HardSharing
from .registry import Backbone, available, get, register

__all__ = ["Backbone", "HardSharing", "MultiTaskModel", "available", "get", "register"]
