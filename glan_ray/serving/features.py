"""The model observation of an app entry, built on the server from named facts.

A client sends what it knows in natural units (the day's features at the day start; the hour
and the followed creators live at an entry; the per-page durations, views, switches, usage and
exit page at a session end). The server keeps the day's running context in the user's state
(consumption per page so far, whether the last session was a drop-off, the last exited page) and
builds ``obs`` with ``glan_ray.sim.observation.build_obs``, the one feature definition that the
simulator, the datasets and training use, so the served models see exactly their training
features.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from glan_ray.schema import N_PAGES, PAGES
from glan_ray.sim.config import SimConfig
from glan_ray.sim.observation import build_obs

DROPOFF_S = SimConfig.tau
"""τ (s): a session whose landing page is consumed less than this is a drop-off (y_sw = 1)."""
_USER = ("activity", "age", "region", "social_degree")
_STATS = (
    *("usage_7d", "usage_30d", "sessions_7d", "sessions_30d"),
    *("page_dur_7d", "page_dur_14d", "page_entries_7d", "page_entries_14d"),
)

Doc = dict[str, Any]


def day_context(last_exit: str | None, previous: Doc | None) -> Doc:
    """The running context at the start of a day: nothing consumed yet, no drop-off, and the
    last exited page as the client says, else as the previous day ended, else featured."""
    if last_exit is not None:
        exit_idx = PAGES.index(last_exit)
    else:
        exit_idx = previous["last_exit"] if previous and "last_exit" in previous else 0
    return {"today_dur": [0.0] * N_PAGES, "prev_drop": 0.0, "last_exit": exit_idx}


Observe = tuple[Doc, float, int]
"""What an entry's observation is built from: the user's stored day, the hour, the live count."""


def entry_obs(state: Doc, hour: float, live_count: int) -> list[float]:
    """``obs`` (schema.OBS_FEATURES) of the user's next entry, from the stored day."""
    return entry_obs_many([(state, hour, live_count)])[0]


def entry_obs_many(rows: Sequence[Observe]) -> list[list[float]]:
    """``entry_obs`` of several entries (the users of a coalesced batch) in one ``build_obs``
    call; row ``i`` is exactly ``entry_obs(*rows[i])`` (``build_obs`` is row-wise)."""
    feats = [state["features"] for state, _, _ in rows]

    def col(key: str) -> np.ndarray:
        return np.asarray([f[key] for f in feats], dtype=np.float64)

    obs = build_obs(
        {k: col(k) for k in _USER},
        {k: col(k) for k in _STATS},
        np.asarray([hour for _, hour, _ in rows], dtype=np.float64),
        np.asarray([int(f["weekday"]) for f in feats], dtype=np.int64),
        np.asarray([len(state["actions"]) for state, _, _ in rows], dtype=np.int64),
        np.asarray([live for _, _, live in rows], dtype=np.int64),
        np.asarray([state["today_dur"] for state, _, _ in rows], dtype=np.float64),
        np.asarray([state["prev_drop"] for state, _, _ in rows], dtype=np.float64),
        np.asarray([state["last_exit"] for state, _, _ in rows], dtype=np.int64),
    )
    return obs.tolist()  # Python floats, each the float32 value (as float(x) gives)


def after_session(state: Doc, landing: int, durations: list[float], exit_page: str) -> Doc:
    """The running context once a session ends (as the simulator updates it)."""
    return {
        "today_dur": [a + b for a, b in zip(state["today_dur"], durations, strict=True)],
        "prev_drop": float(durations[landing] < DROPOFF_S),
        "last_exit": PAGES.index(exit_page),
    }
