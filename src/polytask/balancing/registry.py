"""Balancing methods by name: ``get("pcgrad")``, ``available()``."""

from __future__ import annotations

from typing import Any

from ..registry import Registry
from .base import Balancer

_METHODS: Registry[Balancer] = Registry("balancing method")
register = _METHODS.register
available = _METHODS.available


def get(name: str, **kwargs: Any) -> Balancer:
    """A new balancer of method ``name`` with hyper-parameters ``kwargs``.

    An unknown name raises an error listing every available method.
    """
    return _METHODS.get(name, **kwargs)


def method_class(name: str) -> type[Balancer]:
    """The class registered under ``name``."""
    return _METHODS.factory(name)  # type: ignore[return-value]
