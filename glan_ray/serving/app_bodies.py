"""The request and response bodies of the Serve app of one app spec (``bodies_for(spec)``).

The PLPM app keeps its hand-written bodies (``serving.bodies``: their descriptions say what
each PLPM field means, which a spec does not). Any other spec gets bodies generated from it with
pydantic's ``create_model``, as strict as the hand-written ones (strict types, finite numbers,
bounded values, unknown fields refused, so a client mistake is a 422 naming the field):

- the day-start features: each profile source field (a categorical: an integer in
  [0, cardinality); a numeric: a finite number in its unit, in [0, ``MAX_NUMBER``] when the unit
  cannot be negative or the feature is log1p'd, else within ±``MAX_NUMBER``), the weekday, the
  statistics columns the models read (``schema.stat_fields``: ``usage_{w}d``,
  ``sessions_{w}d`` and per-page lists ``page_dur_{w}d`` / ``page_entries_{w}d`` of the spec's
  pages) and the 30-day sequences L-RTG reads;
- the entry: the hour and each context ``input`` of the spec, in its unit (a count: an integer);
- the session end: per-page durations and views over the spec's pages, and its pages by name.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Literal, cast

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, create_model
from pydantic.config import JsonDict

from glan_ray.apps import AppSpec, plpm_spec
from glan_ray.apps.features import ContextSpec, ProfileSpec
from glan_ray.schema import SEQ_LEN, stat_fields
from glan_ray.serving import bodies as plpm
from glan_ray.serving.bodies import (
    MAX_DAY,
    MAX_FOLLOWED,
    Body,
    Count,
    EventId,
    Int,
    PageEntries,
    Seconds,
    SessionEndChecks,
    Views,
)

MAX_NUMBER = 1e9
"""Bound of a numeric profile field or context input whose unit the server does not know."""
NONNEGATIVE_UNITS = frozenset({"count", "s", "seconds", "days", "hours", "h", "minutes", "min",
                               "items", "bytes"})  # fmt: skip
"""Units whose values cannot be negative."""
MAX_COUNT = int(MAX_FOLLOWED)
"""Bound of a count input (the PLPM app's ``live_count``)."""


@dataclass(frozen=True)
class Bodies:
    """The pydantic models of one Serve app's requests and its spec-dependent responses."""

    spec: AppSpec
    """The app they were made for."""
    day_features: type[BaseModel]
    """The day start's ``features``."""
    start_day: type[Body]
    """``POST /users/{id}/day``."""
    entry: type[Body]
    """``POST /users/{id}/entry``: the hour and the spec's context inputs."""
    session_end: type[SessionEndChecks]
    """``POST /users/{id}/session_end``: per-page values over the spec's pages."""
    entry_response: type[BaseModel]
    """The entry's answer (its ``page`` is one of the spec's pages)."""

    @property
    def inputs(self) -> tuple[str, ...]:
        """The context inputs an entry carries, by name."""
        return input_names(self.spec)


def input_names(spec: AppSpec) -> tuple[str, ...]:
    """The names of ``spec``'s context inputs (sent with every app entry)."""
    return tuple(str(c.name) for c in spec.features.context if c.quantity == "input")


@functools.cache
def _bodies(fingerprint: str, spec_yaml: str) -> Bodies:
    from glan_ray.apps import spec_from_yaml

    spec = spec_from_yaml(spec_yaml)
    if fingerprint == plpm_spec().fingerprint():
        return Bodies(spec, plpm.DayFeatures, plpm.StartDay, plpm.Entry, plpm.SessionEnd,
                      plpm.EntryResponse)  # fmt: skip
    return generate(spec)


def bodies_for(spec: AppSpec) -> Bodies:
    """The bodies of ``spec``'s Serve app (made once per spec): the PLPM app's hand-written
    ones, else generated (``generate``)."""
    return _bodies(spec.fingerprint(), spec.to_yaml())


# ---- generated from a spec ----


def _nonnegative(unit: str | None, transform: str = "none") -> bool:
    return transform == "log1p" or (unit or "").lower() in NONNEGATIVE_UNITS


def _profile_field(p: ProfileSpec) -> tuple[Any, Any]:
    source = p.source or p.name
    if p.kind == "categorical":
        card = int(p.cardinality or 2)
        return Int, Field(ge=0, lt=card, description=f"{source}: a category, an integer in "
                          f"[0, {card}) (profile feature {p.name})")  # fmt: skip
    lo = 0.0 if _nonnegative(p.unit, p.transform) else -MAX_NUMBER
    how = f"log1p'd and divided by {p.scale:g}" if p.transform == "log1p" else f"/ {p.scale:g}"
    return float, Field(ge=lo, le=MAX_NUMBER, description=f"{source} ({p.unit}; profile feature "
                        f"{p.name} = {source} {how})")  # fmt: skip


def _per_page(item: Any, what: str, pages: tuple[str, ...]) -> tuple[Any, Any]:
    what = f"{what}, one per page in the order {list(pages)}"
    return list[item], Field(min_length=len(pages), max_length=len(pages), description=what)


def _stat_field(f: pa.Field, pages: tuple[str, ...]) -> tuple[Any, Any]:
    stem, _, window = f.name.rpartition("_")
    w = window.removesuffix("d")
    if stem == "usage":
        return Seconds, Field(description=f"mean daily usage time over the last {w} days (s)")
    if stem == "sessions":
        return Count, Field(description=f"mean daily app entries over the last {w} days (count)")
    if stem == "page_dur":
        return _per_page(Seconds, f"mean daily consumption over {w} days (s)", pages)
    if stem == "page_entries":
        return _per_page(PageEntries, f"mean daily entries over {w} days (count)", pages)
    raise ValueError(f"no body field for the statistics column {f.name!r}")


def _input_field(c: ContextSpec) -> tuple[Any, Any]:
    what = f"{c.name} at this entry ({c.unit}; a context input of the app spec)"
    if c.unit == "count":
        return Int, Field(ge=0, le=MAX_COUNT, description=what)
    lo = 0.0 if _nonnegative(c.unit) else -MAX_NUMBER
    return float, Field(ge=lo, le=MAX_NUMBER, description=what)


def _example_features(spec: AppSpec) -> JsonDict:
    n = spec.n_pages
    out: JsonDict = {}
    for p in spec.features.profile:
        out[p.source or p.name] = 1 if p.kind == "categorical" else 10.0
    out["weekday"] = 2
    for f in stat_fields(spec):
        stem = f.name.rpartition("_")[0]
        value = {"usage": 1500.0, "sessions": 4.0, "page_dur": 300.0, "page_entries": 1.0}[stem]
        out[f.name] = [value] * n if stem.startswith("page_") else value
    out["seq_sessions"] = [4.0] * SEQ_LEN
    out["seq_usage"] = [1500.0] * SEQ_LEN
    return out


def _example(base: type[Body], example: dict[str, Any]) -> Any:
    """A subclass of ``base`` whose schema shows ``example`` (the body generated on it)."""
    config = ConfigDict(json_schema_extra=cast(JsonDict, {"examples": [example]}))
    return type(base.__name__, (base,), {"model_config": config, "__module__": __name__})


def generate(spec: AppSpec) -> Bodies:
    """Bodies generated from ``spec`` (see the module docstring)."""
    pages = spec.pages
    page = Literal[pages]  # type: ignore[valid-type]  # the spec's pages, known at run time
    fields: dict[str, Any] = {(p.source or p.name): _profile_field(p) for p in
                              spec.features.profile}  # fmt: skip
    fields["weekday"] = (Int, Field(ge=0, le=6, description="day of the week of this day, "
                                    "0 = Monday"))  # fmt: skip
    fields.update({f.name: _stat_field(f, pages) for f in stat_fields(spec)})
    each = f"of each of the last {SEQ_LEN} days, yesterday first"
    fields["seq_sessions"] = (
        list[Count],
        Field(min_length=SEQ_LEN, max_length=SEQ_LEN, description=f"app entries (count) {each}"),
    )
    fields["seq_usage"] = (list[Seconds], Field(min_length=SEQ_LEN, max_length=SEQ_LEN,
                                                description=f"usage time (s) {each}"))  # fmt: skip
    day_features = create_model("DayFeatures", __base__=Body, __doc__=(
        f"The user's start-of-day features in app {spec.name!r}: its profile fields, the "
        "weekday, the statistics the models read and the 30-day sequences."), **fields)  # fmt: skip
    feats = _example_features(spec)
    start_day = create_model(
        "StartDay", __base__=_example(Body, {"event_id": "d-42", "day": 42, "features": feats}),
        __doc__=plpm.StartDay.__doc__,
        event_id=(str, EventId),
        day=(Int, Field(ge=0, le=MAX_DAY, description="day number; only moves forward (a new "
                        "day > the last)")),
        features=(day_features, ...),
        last_exit_page=(page | None, Field(
            default=None, description="the page the user's last session (on an earlier day) "
            f"exited from, one of {list(pages)}; omitted: as the server saw the previous day "
            f"end, else {pages[0]}")),
    )  # fmt: skip
    inputs = {str(c.name): _input_field(c) for c in spec.features.context
              if c.quantity == "input"}  # fmt: skip
    example: dict[str, Any] = {"event_id": "e-42-0", "day": 42, "hour": 13.5,
               **{k: (1 if t is Int else 1.0) for k, (t, _) in inputs.items()}}  # fmt: skip
    entry: type[Body] = create_model(  # type: ignore[call-overload]  # fields from the spec
        "Entry", __base__=_example(Body, example), __doc__=(
            "An app entry: what the client knows now (the hour and the app's context inputs). "
            "The server adds the day's features and what it holds of the day so far and builds "
            "the model's observation with the app spec's own definition."),
        event_id=(str, EventId),
        day=(Int, Field(ge=0, le=MAX_DAY, description="the day this entry belongs to (the "
                        "current)")),
        hour=(float, Field(ge=0, lt=24, description="local time of the entry (h, e.g. 13.5)")),
        **inputs,
    )  # fmt: skip
    n = len(pages)
    example = {"event_id": "s-42-0", "day": 42, "page_durations_s": [310.0] + [0.0] * (n - 1),
               "video_views": [5] + [0] * (n - 1), "n_switches": 0, "usage_time": 320.0,
               "exit_page": pages[0]}  # fmt: skip
    session_end: type[SessionEndChecks] = create_model(
        "SessionEnd", __base__=_example(SessionEndChecks, example), __doc__=plpm.SessionEnd.__doc__,
        event_id=(str, EventId),
        day=(Int, Field(ge=0, le=MAX_DAY, description="the day this session belongs to")),
        page_durations_s=_per_page(Seconds, "consumption time in this session (s)", pages),
        video_views=_per_page(Views, "videos viewed in this session (count)", pages),
        n_switches=(Int, Field(ge=0, le=127, description="page switches in this session "
                               "(count)")),
        usage_time=(Seconds, Field(description="session usage time (s), the page durations plus "
                                   "browsing: the naive reward")),
        exit_page=(page, Field(description=f"the page the user left the app from, one of "
                               f"{list(pages)}")),
        page_seq=(list[page] | None, Field(
            default=None, min_length=1, max_length=128,
            description="optional: the pages in the order visited, the landing page first and "
            "exit_page last (n_switches + 1 of them; otherwise 409); for the decision log")),
        watch_time_s=(Seconds | None, Field(
            default=None, description="optional: video watch time in this session (s), for "
            "the log")),
    )  # fmt: skip
    entry_response = create_model(
        "EntryResponse", __base__=plpm.EntryResponse, __doc__=plpm.EntryResponse.__doc__,
        page=(str, Field(description=f"landing page, one of {list(pages)}")),
    )  # fmt: skip
    return Bodies(spec, day_features, start_day, entry, session_end, entry_response)


__all__ = ["Bodies", "bodies_for", "generate", "input_names"]
