"""Per-request isolation inside a coalesced batch.

The ingress coalesces concurrent requests into one model call (``@serve.batch``); a request
whose inputs make the call raise, or whose output is not finite, must fail alone and not take
the others of its batch with it. ``per_item`` runs the whole batch once and, only when that
raises, each item on its own; every item gets either its result or its own exception.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


class NonFiniteOutput(ValueError):
    """A model gave a non-finite number for these inputs (they are out of its range)."""


def finite(value: Any) -> bool:
    """True when every number in ``value`` (a float or a list of floats) is finite."""
    if isinstance(value, list | tuple):
        return all(finite(v) for v in value)
    return not isinstance(value, float) or math.isfinite(value)


def per_item(fn: Callable[[list[Any]], list[T]], items: list[Any]) -> list[T | Exception]:
    """``fn(items)``; if it raises, ``fn([item])`` for each item. A non-finite result becomes a
    ``NonFiniteOutput`` of that item only."""
    try:
        out: list[Any] = list(fn(items))
    except Exception as e:
        if len(items) == 1:
            return [e]
        out = []
        for item in items:
            try:
                out.append(fn([item])[0])
            except Exception as one:
                out.append(one)
    return [
        r
        if isinstance(r, Exception) or finite(r)
        else NonFiniteOutput("the model's output is not finite for these inputs")
        for r in out
    ]


def split(flat: list[Any], calls: list[list[Any]]) -> list[list[Any]]:
    """Cut one batched result back into the calls it came from."""
    out, i = [], 0
    for c in calls:
        out.append(flat[i : i + len(c)])
        i += len(c)
    return out


def n_users(calls: list[list[Any]]) -> int:
    """Batch size of coalesced calls for ``@serve.batch``: the users, not the calls."""
    return sum(len(c) for c in calls)
