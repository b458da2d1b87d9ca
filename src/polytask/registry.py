"""A name -> factory registry, shared by balancers, architectures and benchmarks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

from .errors import UnknownNameError

T = TypeVar("T")


class Registry(Generic[T]):
    """Factories registered by name; ``get`` builds one, ``available`` lists names."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._factories: dict[str, Callable[..., T]] = {}

    def register(self, name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        """Decorator registering a class or factory under ``name``."""

        def decorate(factory: Callable[..., T]) -> Callable[..., T]:
            key = name.lower()
            if key in self._factories and self._factories[key] is not factory:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._factories[key] = factory
            return factory

        return decorate

    def factory(self, name: str) -> Callable[..., T]:
        """The factory registered under ``name`` (case-insensitive)."""
        try:
            return self._factories[name.lower()]
        except KeyError:
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}; available: {', '.join(self.available())}"
            ) from None

    def get(self, name: str, **kwargs: Any) -> T:
        """Build the thing registered under ``name`` with ``kwargs``."""
        return self.factory(name)(**kwargs)

    def available(self) -> list[str]:
        """Every registered name, sorted."""
        return sorted(self._factories)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._factories
