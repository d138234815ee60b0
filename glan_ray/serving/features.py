"""The model inputs of an app entry and a session end, built on the server from named facts.

A client sends what it knows in natural units (the day's features at the day start; the hour
and the app's context inputs at an entry; the per-page durations, views, switches, usage and
exit page at a session end). The server keeps the day's running context in the user's state
(consumption per page so far, whether the last session was a drop-off, the last exited page) and
builds ``obs`` with ``glan_ray.apps.observation.build_obs(spec, columns)``, the one spec-driven
definition (for the PLPM app exactly the simulator's, which the datasets and training use), so
the served models see exactly their training features.

The supervised models read dataset columns named as ``schema.schemas_for(spec)``'s ``daily``
(L-RTG: ``daily_columns``) and ``sessions`` (HRM: ``session_columns``); these builders give
them from the day's features and the session's facts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from glan_ray.apps import AppSpec
from glan_ray.apps.observation import build_obs
from glan_ray.schema import SEQ_LEN

Doc = dict[str, Any]
Inputs = Mapping[str, float]
"""An entry's context inputs by name (the spec's ``input`` entries, e.g. live_count)."""


def day_context(spec: AppSpec, last_exit: str | None, previous: Doc | None) -> Doc:
    """The running context at the start of a day: nothing consumed yet, no drop-off, and the
    last exited page as the client says, else as the previous day ended, else the first page."""
    if last_exit is not None:
        exit_idx = spec.pages.index(last_exit)
    else:
        exit_idx = previous["last_exit"] if previous and "last_exit" in previous else 0
    return {"today_dur": [0.0] * spec.n_pages, "prev_drop": 0.0, "last_exit": exit_idx}


Observe = tuple[Doc, float, Inputs]
"""What an entry's observation is built from: the user's stored day, the hour, the inputs."""


def entry_obs(spec: AppSpec, state: Doc, hour: float, inputs: Inputs) -> list[float]:
    """``obs`` (``spec.obs_features``) of the user's next entry, from the stored day."""
    return entry_obs_many(spec, [(state, hour, inputs)])[0]


def entry_obs_many(spec: AppSpec, rows: Sequence[Observe]) -> list[list[float]]:
    """``entry_obs`` of several entries (the users of a coalesced batch) in one ``build_obs``
    call; row ``i`` is exactly ``entry_obs(spec, *rows[i])`` (``build_obs`` is row-wise)."""
    feats = [state["features"] for state, _, _ in rows]
    names = {k for f in feats for k in f} - {"seq_sessions", "seq_usage"}
    cols: dict[str, np.ndarray | int] = {
        k: np.asarray([f[k] for f in feats], dtype=np.float64) for k in names
    }
    cols["weekday"] = np.asarray([int(f["weekday"]) for f in feats], dtype=np.int64)
    cols["hour"] = np.asarray([hour for _, hour, _ in rows], dtype=np.float64)
    cols["entries_today"] = np.asarray([len(s["actions"]) for s, _, _ in rows], dtype=np.int64)
    cols["today_dur"] = np.asarray([s["today_dur"] for s, _, _ in rows], dtype=np.float64)
    cols["prev_dropoff"] = np.asarray([s["prev_drop"] for s, _, _ in rows], dtype=np.float64)
    cols["last_exit"] = np.asarray([s["last_exit"] for s, _, _ in rows], dtype=np.int64)
    for c in spec.features.context:
        if c.quantity == "input":
            name = str(c.name)
            dtype = np.int64 if c.unit == "count" else np.float64
            cols[name] = np.asarray([inputs[name] for _, _, inputs in rows], dtype=dtype)
    bad = [int(x) for x in np.asarray(cols["last_exit"]) if not 0 <= int(x) < spec.n_pages]
    if bad:  # a page index the spec does not have: this entry's error
        raise IndexError(f"last_exit {bad[0]} is not a page index of app {spec.name!r}")
    obs = build_obs(spec, cols)
    return obs.tolist()  # Python floats, each the float32 value (as float(x) gives)


def after_session(
    spec: AppSpec, state: Doc, landing: int, durations: list[float], exit_page: str
) -> Doc:
    """The running context once a session ends (as the simulator updates it): a session whose
    landing page was consumed less than the spec's ``dropoff_s`` is a drop-off."""
    return {
        "today_dur": [a + b for a, b in zip(state["today_dur"], durations, strict=True)],
        "prev_drop": float(durations[landing] < spec.dropoff_s),
        "last_exit": spec.pages.index(exit_page),
    }


def daily_columns(features: Sequence[Doc]) -> dict[str, np.ndarray]:
    """``daily``-like columns of B users from their day-start features (the body's fields by
    name, as ``schemas_for(spec)['daily']`` names them), for L-RTG and HRM."""
    n = len(features)
    cols = {k: np.asarray([f[k] for f in features]) for k in features[0]}
    cols["user_id"] = np.arange(n)
    cols["weekday"] = np.asarray([int(f["weekday"]) for f in features], dtype=np.int64)
    for k in ("seq_sessions", "seq_usage"):
        cols[k] = np.asarray([f[k] for f in features], dtype=np.float32)
    cols["seq_dt"] = np.broadcast_to(np.arange(1, SEQ_LEN + 1), (n, SEQ_LEN))
    return cols


def open_entry_facts(spec: AppSpec, entry: Doc) -> tuple[dict[str, float], list[float]]:
    """(inputs, today_dur) of an open entry: as stored with it, or, for an entry stored before
    they were, read back from its ``obs`` (each value times its scale; a count rounded)."""
    if "inputs" in entry and "today_dur" in entry:
        return dict(entry["inputs"]), list(entry["today_dur"])
    obs = np.asarray(entry["obs"], dtype=np.float64)
    names, scales = spec.obs_features, spec.obs_scales
    inputs: dict[str, float] = {}
    for c in spec.features.context:
        if c.quantity == "input":
            i = names.index(str(c.name))
            v = obs[i] * scales[i]
            inputs[str(c.name)] = float(np.rint(v)) if c.unit == "count" else float(v)
    dur = [f"today_dur_{p}" for p in spec.pages]
    if not all(n in names for n in dur):
        raise ValueError("this open entry was stored without its day's consumption per page")
    return inputs, [float(obs[names.index(n)] * scales[names.index(n)]) for n in dur]


def session_columns(spec: AppSpec, reqs: Sequence[Doc]) -> dict[str, np.ndarray]:
    """``sessions``-like columns (no outcome) of B finished sessions, for HRM: the day's
    profile and statistics, the entry's hour, entries so far, inputs and consumption per page
    so far, and the session's views, switches and landing page (``action``)."""
    cols = daily_columns([r["features"] for r in reqs])
    facts = [open_entry_facts(spec, r) for r in reqs]
    cols["hour"] = np.asarray([r["hour"] for r in reqs], dtype=np.float32)
    cols["entries_today"] = np.asarray([r["t"] for r in reqs])
    for c in spec.features.context:
        if c.quantity == "input":
            cols[str(c.name)] = np.asarray([inputs[str(c.name)] for inputs, _ in facts])
    cols["today_dur"] = np.asarray([dur for _, dur in facts], dtype=np.float32)
    cols["video_views"] = np.asarray([r["video_views"] for r in reqs])
    cols["n_switches"] = np.asarray([r["n_switches"] for r in reqs])
    cols["action"] = np.asarray([r["action"] for r in reqs], dtype=np.int64)
    return cols
