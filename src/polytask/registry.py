"""A name -> factory registry, shared by balancers, architectures and benchmarks.

Names are case-insensitive and ``-`` and ``_`` are the same character in them
(``nash_mtl`` finds ``nash-mtl``, ``dselect-k`` finds ``dselect_k``). ``get`` also takes
a spec string ``"name:key=value,..."`` (:func:`polytask.params.parse_spec`) and checks
the settings against the factory's before building (:func:`polytask.params.check_settings`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

from .errors import UnknownNameError
from .params import check_settings, parse_spec

T = TypeVar("T")


def normalize_name(name: str) -> str:
    """The lookup key of a registry name: lower case, ``_`` read as ``-``."""
    return name.strip().lower().replace("_", "-")


class Registry(Generic[T]):
    """Factories registered by name; ``get`` builds one, ``available`` lists names."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._factories: dict[str, Callable[..., T]] = {}
        self._names: dict[str, str] = {}  # key -> the name as registered

    def register(self, name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        """Decorator registering a class or factory under ``name``."""

        def decorate(factory: Callable[..., T]) -> Callable[..., T]:
            key = normalize_name(name)
            if key in self._factories and self._factories[key] is not factory:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._factories[key] = factory
            self._names[key] = name.lower()
            if "__polytask_name__" not in getattr(factory, "__dict__", {}):
                try:  # errors about its settings name it by its registry name
                    factory.__polytask_name__ = name.lower()  # type: ignore[attr-defined]
                except (AttributeError, TypeError):
                    pass
            return factory

        return decorate

    def factory(self, name: str) -> Callable[..., T]:
        """The factory registered under ``name`` (case-insensitive, ``-`` = ``_``)."""
        if not isinstance(name, str):
            raise UnknownNameError(f"{self.kind} name must be a string, got {name!r}")
        try:
            return self._factories[normalize_name(name)]
        except KeyError:
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}; available: {', '.join(self.available())}"
            ) from None

    def check(self, spec: str, **kwargs: Any) -> tuple[Callable[..., T], dict[str, Any]]:
        """Find the factory of ``spec`` (``"name"`` or ``"name:key=value,..."``) and
        check its settings (``kwargs`` win over the spec's) without building it."""
        name, settings = parse_spec(spec)
        factory = self.factory(name)
        settings.update(kwargs)
        check_settings(factory, settings, f"{self.kind} {self._names[normalize_name(name)]!r}")
        return factory, settings

    def get(self, name: str, **kwargs: Any) -> T:
        """Build the thing registered under ``name`` (or a ``"name:key=value"`` spec)
        with ``kwargs``."""
        factory, settings = self.check(name, **kwargs)
        return factory(**settings)

    def available(self) -> list[str]:
        """Every registered name, sorted."""
        return sorted(self._names.values())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and normalize_name(name) in self._factories
