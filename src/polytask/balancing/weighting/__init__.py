"""Loss weighting methods: weights from the losses, one backward of the weighted sum."""

from .basic import EqualWeighting, FixedWeighting

__all__ = ["EqualWeighting", "FixedWeighting"]
