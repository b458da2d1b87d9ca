"""Exceptions raised by polytask, each naming the task, key or shape at fault."""

from __future__ import annotations


class PolytaskError(Exception):
    """Base class of every error polytask raises on purpose."""


class TargetMissingError(PolytaskError, KeyError):
    """A batch lacks the target of a task."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


class ShapeMismatchError(PolytaskError, ValueError):
    """A head's output does not fit its task's loss or target."""


class LabelRangeError(PolytaskError, ValueError):
    """Labels of a classification task fall outside its classes."""


class NonFiniteLossError(PolytaskError, FloatingPointError):
    """A task loss became NaN or infinite."""


class UnknownNameError(PolytaskError, KeyError):
    """A registry was asked for a name it does not hold."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class MissingExtraError(PolytaskError, ImportError):
    """An optional dependency is not installed; the message names the command that
    installs it (e.g. RDKit for the molecule benchmarks)."""
