"""Settings: declared once per class, checked in one place, parsed from one syntax.

Every method and architecture states the constraints of its settings in a class-level
table, in the spirit of scikit-learn's ``_parameter_constraints``::

    class CAGrad(GradientAggregator):
        _parameter_constraints = {
            "c": [Interval(Real, 0, 1, closed="left")],
            "max_iter": [Interval(Integral, 1, None)],
        }

A setting's value must satisfy at least one constraint of its list. Tables are merged
along the class hierarchy (a subclass adds to or overrides its bases' entries).
:func:`check_settings` checks a set of keyword arguments against a class or factory:
a name that is no setting raises :class:`~polytask.errors.InvalidParameterError`
naming the owner, the closest valid names and the whole list; a bad value raises the
same error naming the setting, the value and what was expected.

Constraints are: ``None`` (the value may be None), a type (``isinstance``), an
:class:`Interval`, an :class:`Options` set, :class:`PerTask` (a number per task),
``"boolean"``, ``"callable"`` and ``"no_validation"``.

:func:`parse_spec` reads the ``name:key=value,key=value`` strings that the command
line, configs and the Trainer accept; :func:`per_task` is the one parser for "a number
per task" (a mapping by task name, a sequence in task order, or one number for all).
"""

from __future__ import annotations

import ast
import difflib
import inspect
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Any

from .errors import InvalidParameterError

__all__ = [
    "Integral",
    "Interval",
    "Options",
    "PerTask",
    "Real",
    "check_settings",
    "parse_spec",
    "per_task",
    "settings_of",
]


# -- constraints -----------------------------------------------------------------------
@dataclass(frozen=True)
class Interval:
    """A real or integral number in ``[left, right]`` (``None``: unbounded).

    ``closed`` is ``"both"`` (default), ``"left"``, ``"right"`` or ``"neither"``. NaN
    never satisfies an interval; ``bool`` is not a number here.
    """

    kind: type
    left: float | None = None
    right: float | None = None
    closed: str = "both"

    def is_satisfied_by(self, value: Any) -> bool:
        """Whether ``value`` is a number of this kind inside the interval."""
        if isinstance(value, bool) or not isinstance(value, Real):
            return False
        if self.kind is Integral and not isinstance(value, Integral):
            return False
        if math.isnan(value):
            return False
        if self.left is not None:
            if value < self.left or (value == self.left and self.closed in ("right", "neither")):
                return False
        if self.right is not None:
            if value > self.right or (value == self.right and self.closed in ("left", "neither")):
                return False
        return True

    def __str__(self) -> str:
        kind = "an int" if self.kind is Integral else "a float"
        if self.left is None and self.right is None:
            return f"{kind} (finite)" if self.kind is not Integral else kind
        lo = "-inf" if self.left is None else f"{self.left:g}"
        hi = "inf" if self.right is None else f"{self.right:g}"
        lb = "[" if self.closed in ("both", "left") and self.left is not None else "("
        rb = "]" if self.closed in ("both", "right") and self.right is not None else ")"
        return f"{kind} in {lb}{lo}, {hi}{rb}"


@dataclass(frozen=True)
class Options:
    """One of a fixed set of values."""

    values: frozenset

    def __init__(self, values: Iterable[Any]) -> None:
        object.__setattr__(self, "values", frozenset(values))

    def is_satisfied_by(self, value: Any) -> bool:
        """Whether ``value`` is one of the options."""
        try:
            return value in self.values
        except TypeError:
            return False

    def __str__(self) -> str:
        return "one of " + ", ".join(repr(v) for v in sorted(self.values, key=str))


@dataclass(frozen=True)
class PerTask:
    """A number per task: ``{task: number}``, a sequence in task order, or one number.

    Each number must satisfy ``each`` (default: any finite float). The task names are
    checked later, when they are known (:func:`per_task`).
    """

    each: Interval = Interval(Real)
    scalar: bool = False

    def is_satisfied_by(self, value: Any) -> bool:
        """Whether every number of ``value`` satisfies ``each``."""
        if isinstance(value, Mapping):
            items = list(value.values())
            if not all(isinstance(k, str) for k in value):
                return False
        elif isinstance(value, (str, bytes)):
            return False
        elif isinstance(value, Sequence):
            items = list(value)
        elif self.scalar:
            items = [value]
        else:
            return False
        return all(_finite_ok(self.each, v) for v in items)

    def __str__(self) -> str:
        forms = "a {task: number} dict or a list in task order"
        if self.scalar:
            forms += " or one number"
        return f"{forms}, each {self.each}"


def _finite_ok(each: Interval, value: Any) -> bool:
    if not each.is_satisfied_by(value):
        return False
    return not math.isinf(value)


_NAMED = {
    "boolean": (lambda v: isinstance(v, bool), "a bool"),
    "callable": (callable, "a callable"),
    "no_validation": (lambda v: True, "anything"),
}


def _satisfies(constraint: Any, value: Any) -> bool:
    if constraint is None:
        return value is None
    if isinstance(constraint, str):
        return _NAMED[constraint][0](value)
    if isinstance(constraint, type):
        if constraint is float:  # an int is a fine float; NaN/inf are not a setting
            return (
                isinstance(value, Real) and not isinstance(value, bool)
                and math.isfinite(value)
            )
        return isinstance(value, constraint)
    return constraint.is_satisfied_by(value)


def _describe(constraint: Any) -> str:
    if constraint is None:
        return "None"
    if isinstance(constraint, str):
        return _NAMED[constraint][1]
    if isinstance(constraint, type):
        return f"a {constraint.__name__}"
    return str(constraint)


# -- tables and checks -----------------------------------------------------------------
def constraints_of(owner: Any) -> dict[str, list[Any]]:
    """The merged ``_parameter_constraints`` of a class (along its MRO) or factory."""
    table: dict[str, list[Any]] = {}
    classes = reversed(owner.__mro__) if isinstance(owner, type) else [owner]
    for cls in classes:
        own = cls.__dict__.get("_parameter_constraints") if isinstance(owner, type) else getattr(
            cls, "_parameter_constraints", None
        )
        if own:
            table.update(own)
    return table


def _init_of(owner: Any) -> Callable[..., Any]:
    if isinstance(owner, type):
        init = owner.__init__
        return getattr(init, "__wrapped__", init)
    return owner


def settings_of(owner: Any) -> tuple[list[str], str | None]:
    """(the setting names ``owner`` accepts, the name of its open ``**kwargs`` or None).

    For a class whose ``__init__`` forwards ``**kwargs`` to its base, the base's
    settings are included; a ``**name`` listed in the constraints table (e.g. a
    ``{task: weight}`` keyword set) stays open: any key is accepted.
    """
    names: list[str] = []
    table = constraints_of(owner)
    chain = [c for c in owner.__mro__ if "__init__" in c.__dict__] if isinstance(owner, type) \
        else [owner]
    for item in chain:
        if item is object:
            break
        try:
            sig = inspect.signature(_init_of(item) if isinstance(item, type) else item)
        except (TypeError, ValueError):
            return names, "?"
        var_kw = None
        for p in sig.parameters.values():
            if p.name == "self" or p.kind is p.VAR_POSITIONAL:
                continue
            if p.kind is p.VAR_KEYWORD:
                var_kw = p.name
            elif p.name not in names:
                names.append(p.name)
        if var_kw is None:
            return names, None
        if f"**{var_kw}" in table:
            return names, var_kw
        if not isinstance(owner, type):
            return names, var_kw  # a factory forwarding **kwargs: cannot tell
    return names, None


def owner_label(owner: Any) -> str:
    """How errors name ``owner``: its registry name (and class) when registered."""
    registered = getattr(owner, "__dict__", {}).get("__polytask_name__")
    cls = getattr(owner, "__name__", type(owner).__name__)
    return f"{registered!r} ({cls})" if registered else cls


def check_settings(owner: Any, settings: Mapping[str, Any], label: str | None = None) -> None:
    """Check ``settings`` (keyword arguments) against ``owner``'s settings and table.

    Raises :class:`~polytask.errors.InvalidParameterError` for a name ``owner`` does
    not take (with the closest names and the full list) or a value outside its
    constraints (naming the setting, the value and what is expected).
    """
    label = label or owner_label(owner)
    names, open_kw = settings_of(owner)
    table = constraints_of(owner)
    for key, value in settings.items():
        if key not in names:
            if open_kw is None:
                close = difflib.get_close_matches(key, names, n=2, cutoff=0.6)
                hint = f" (did you mean {' or '.join(map(repr, close))}?)" if close else ""
                raise InvalidParameterError(
                    f"{label}: unknown setting {key!r}{hint}; valid settings: "
                    f"{', '.join(names) or 'none'}"
                )
            constraint = table.get(f"**{open_kw}")
        else:
            constraint = table.get(key)
        if constraint is None:
            continue
        _check_value(label, key, value, constraint)


def _check_value(label: str, key: str, value: Any, constraints: Sequence[Any]) -> None:
    if any(_satisfies(c, value) for c in constraints):
        return
    expected = " or ".join(_describe(c) for c in constraints)
    if any(isinstance(c, Options) for c in constraints):
        raise InvalidParameterError(
            f"{label}: unknown {key} {value!r}; setting {key!r} must be {expected}"
        )
    raise InvalidParameterError(f"{label}: setting {key!r} must be {expected}; got {value!r}")


def check_call(owner: Any, args: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
    """Check a constructor call ``owner(*args, **kwargs)`` (positional ones bound by
    name first); used by classes that validate on construction."""
    check_settings(owner, kwargs)  # names first: a misspelt keyword lists the valid ones
    if not args:
        return
    init = _init_of(owner)
    signature = inspect.signature(init)
    try:
        bound = signature.bind_partial(None, *args, **kwargs)
    except TypeError as error:
        raise InvalidParameterError(f"{owner_label(owner)}: {error}") from None
    named: dict[str, Any] = {}
    for name, value in bound.arguments.items():
        param = signature.parameters[name]
        if param.kind is param.VAR_POSITIONAL or name == next(iter(signature.parameters)):
            continue
        if param.kind is not param.VAR_KEYWORD:
            named[name] = value
    check_settings(owner, {k: v for k, v in named.items() if k not in kwargs})


def check_task_settings(
    owner: Any, settings: Mapping[str, Any], task_names: Sequence[str], label: str | None = None
) -> None:
    """Check the settings declared :class:`PerTask` against the task names: a mapping
    names only known tasks, a sequence has one value per task (and, for an open
    ``**kwargs`` declared per task, every key is a task)."""
    label = label or owner_label(owner)
    names, open_kw = settings_of(owner)
    table = constraints_of(owner)
    for key, value in settings.items():
        constraint = table.get(key) if key in names else table.get(f"**{open_kw}")
        per = [c for c in (constraint or []) if isinstance(c, PerTask)]
        if not per or value is None:
            continue
        if key in names:
            per_task(value, task_names, what=f"{label}: setting {key!r}", default=1.0,
                     each=per[0].each)
        elif key not in task_names:
            raise InvalidParameterError(
                f"{label}: {key!r} is no task (a {{task: value}} keyword); tasks are "
                f"{list(task_names)}"
            )


# -- the one "number per task" parser -------------------------------------------------
def per_task(
    value: Mapping[str, Any] | Sequence[Any] | float | None,
    names: Sequence[str],
    *,
    what: str,
    default: float | None = None,
    each: Interval = Interval(Real),
) -> list[float] | None:
    """Read "a number per task" into a list in the order of ``names``.

    Accepts ``{task: number}`` (tasks left out get ``default``; without a default
    every task must be given), a sequence of exactly ``len(names)`` numbers in task
    order, or one number for every task. ``None`` gives ``None``. Every number must be
    finite and satisfy ``each``. Errors name ``what``, the task and the value.
    """
    if value is None:
        return None
    names = list(names)
    if isinstance(value, Mapping):
        unknown = [k for k in value if k not in names]
        if unknown:
            raise InvalidParameterError(
                f"{what}: unknown task(s) {unknown}; tasks are {names}"
            )
        missing = [n for n in names if n not in value]
        if missing and default is None:
            raise InvalidParameterError(f"{what}: no value for task(s) {missing}")
        pairs = [(n, value.get(n, default)) for n in names]
    elif isinstance(value, (str, bytes)):
        raise InvalidParameterError(f"{what}: expected numbers, got the string {value!r}")
    elif isinstance(value, Sequence):
        if len(value) != len(names):
            raise InvalidParameterError(
                f"{what}: {len(value)} values for {len(names)} tasks {names}"
            )
        pairs = list(zip(names, value))
    else:
        pairs = [(n, value) for n in names]
    out = []
    for name, v in pairs:
        if not _finite_ok(each, v):
            raise InvalidParameterError(
                f"{what}: the value for task {name!r} must be {each} (finite); got {v!r}"
            )
        out.append(float(v))
    return out


# -- the "name:key=value" syntax ------------------------------------------------------
def parse_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """``"cagrad:c=0.4,path=gramian"`` -> ``("cagrad", {"c": 0.4, "path": "gramian"})``.

    Values are Python literals where they parse as one (numbers, lists, dicts, True,
    None), else strings. Commas inside brackets do not split.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise InvalidParameterError(f"empty name in spec {spec!r}")
    name, _, rest = spec.partition(":")
    if not name.strip():
        raise InvalidParameterError(f"spec {spec!r} has no name before ':'")
    kwargs: dict[str, Any] = {}
    for item in filter(None, (s.strip() for s in _split_top_level(rest))):
        key, eq, text = item.partition("=")
        if not eq or not key.strip():
            raise InvalidParameterError(f"spec {spec!r}: {item!r} is not key=value")
        try:
            kwargs[key.strip()] = ast.literal_eval(text.strip())
        except (ValueError, SyntaxError):
            kwargs[key.strip()] = text.strip()
    return name.strip(), kwargs


def _split_top_level(text: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for char in text:
        if char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return parts


def validate_on_init(cls: type) -> None:
    """Make ``cls``'s constructor check its settings (the outermost call only) against
    the class's merged ``_parameter_constraints`` before running."""
    import functools

    init = cls.__dict__.get("__init__")
    if init is None or getattr(init, "_checks_settings", False):
        return

    @functools.wraps(init)
    def checked_init(self: Any, *args: Any, **kwargs: Any) -> None:
        outer = not self.__dict__.get("_checking_settings", False)
        if outer:
            check_call(type(self), args, kwargs)
            object.__setattr__(self, "_checking_settings", True)
        try:
            init(self, *args, **kwargs)
        finally:
            if outer:
                self.__dict__.pop("_checking_settings", None)

    checked_init._checks_settings = True  # type: ignore[attr-defined]
    cls.__init__ = checked_init  # type: ignore[method-assign]
