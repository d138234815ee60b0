"""Checks of an app specification's fields, each raising a ``SpecError`` that names the field.

A spec usually comes from YAML, where any value can have any type, so every field is checked for
its type as well as its value, and normalised (lists become tuples, integers floats where a float
is meant) so that two spellings of one spec compare, and fingerprint, equal.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from glan_ray.checks import check_fields

NAME = re.compile(r"[a-z][a-z0-9_]*")
"""Page and feature names: they become column names, feature names and request fields."""


class SpecError(ValueError):
    """An invalid app specification. ``where`` names the field, from the owning class down
    (``AppSpec.features.profile[2].cardinality``); ``problem`` says what is wrong with it."""

    def __init__(self, where: str, problem: str, source: str | None = None) -> None:
        self.where, self.problem, self.source = where, problem, source
        sep = " " if problem.startswith("must ") else ": "
        prefix = f"{source}: " if source else ""
        super().__init__(f"{prefix}{where}{sep}{problem}")

    def under(self, prefix: str) -> SpecError:
        """The same error seen from an owner: ``ProfileSpec.cardinality`` under
        ``AppSpec.features.profile[2]`` is ``AppSpec.features.profile[2].cardinality``."""
        _, dot, rest = self.where.partition(".")
        return SpecError(f"{prefix}.{rest}" if dot else prefix, self.problem, self.source)

    def in_file(self, source: str) -> SpecError:
        """The same error, saying which file it is in."""
        return SpecError(self.where, self.problem, source)


def check_ranges(obj: Any) -> None:
    """``checks.check_fields`` (the ``ranged`` fields of ``obj``), raising a ``SpecError``."""
    try:
        check_fields(obj)
    except ValueError as e:
        owner = type(obj).__name__
        field, _, problem = str(e).removeprefix(f"{owner}.").partition(" ")
        raise SpecError(f"{owner}.{field}", problem) from None


def name(v: object, where: str) -> str:
    """A page or feature name: a lowercase identifier."""
    if not isinstance(v, str) or not NAME.fullmatch(v):
        raise SpecError(
            where,
            f"{v!r} is not a name: use lowercase letters, digits and _, starting with a letter",
        )
    return v


def text(v: object, where: str) -> str:
    """A non-empty string (a unit)."""
    if not isinstance(v, str) or not v.strip():
        raise SpecError(where, f"must be a non-empty string; got {v!r}")
    return v


def number(v: object) -> object:
    """An integer given where a float is meant becomes that float (``3600`` and ``3600.0`` are
    one spec); anything else is left for the range check to refuse."""
    return float(v) if isinstance(v, int) and not isinstance(v, bool) else v


def integer(v: object, where: str, ge: int) -> int:
    """An integer (not a bool, not 7.0) >= ``ge``."""
    if isinstance(v, bool) or not isinstance(v, int) or v < ge:
        raise SpecError(where, f"must be an integer >= {ge}; got {v!r}")
    return v


def choice(v: object, where: str, choices: Collection[str]) -> str:
    """One of ``choices``."""
    if v not in choices:
        raise SpecError(where, f"unknown {v!r}; expected one of {list(choices)}")
    return str(v)


def sequence(v: object, where: str) -> tuple[Any, ...]:
    """A list or tuple, as a tuple."""
    if not isinstance(v, list | tuple):
        raise SpecError(where, f"must be a list; got {type(v).__name__}")
    return tuple(v)


def names(v: object, where: str, noun: str) -> tuple[str, ...]:
    """A list of distinct names (``noun`` says what they are in an error)."""
    out = tuple(name(x, f"{where}[{i}]") for i, x in enumerate(sequence(v, where)))
    for i, x in enumerate(out):
        if x in out[:i]:
            raise SpecError(where, f"duplicate {noun} {x!r}")
    return out


if TYPE_CHECKING:
    from _typeshed import DataclassInstance  # typeshed's protocol of a dataclass; no runtime name

T = TypeVar("T", bound="DataclassInstance")


def build(cls: type[T], data: object, where: str) -> T:
    """``cls(**data)`` for a mapping read from YAML: unknown keys are refused naming them and the
    valid ones, missing required keys are named, and the class's own errors are reported under
    ``where``."""
    if isinstance(data, cls):
        return data
    if not isinstance(data, Mapping):
        raise SpecError(where, f"must be a mapping; got {type(data).__name__}")
    fields = dataclasses.fields(cls)
    valid = [f.name for f in fields]
    unknown = sorted(str(k) for k in data if k not in valid)
    if unknown:
        raise SpecError(where, f"unknown key(s) {unknown}; the valid keys are {valid}")
    missing = [f.name for f in fields if f.name not in data and _required(f)]
    if missing:
        raise SpecError(where, f"missing key(s) {missing}")
    try:
        return cls(**data)
    except SpecError as e:
        raise e.under(where) from None


def _required(f: dataclasses.Field) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


def plain(v: object) -> object:
    """A spec value as plain YAML/JSON data: dataclasses become dicts (None fields left out, so
    a field added later with a None default does not change older specs' fingerprints), tuples
    lists."""
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        return {
            f.name: plain(getattr(v, f.name))
            for f in dataclasses.fields(v)
            if getattr(v, f.name) is not None
        }
    if isinstance(v, tuple | list):
        return [plain(x) for x in v]
    return v


__all__ = ["NAME", "SpecError", "build", "check_ranges", "choice", "integer", "name", "names",
           "number", "plain", "sequence", "text"]  # fmt: skip
