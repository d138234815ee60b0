"""Model inputs at decision time, rebuilt from what a policy sees (day features, obs, history).

The supervised models were trained on dataset columns; a live policy has the start-of-day
features (``Policy.begin_day``), the entry's observation vector and today's completed sessions.
These builders produce the same columns, so ``glan_ray.data.features`` turns them into exactly
the training features.
"""

from __future__ import annotations

import numpy as np

from glan_ray.schema import OBS_FEATURES, SEQ_LEN
from glan_ray.sim.interface import IntraDayHistory
from glan_ray.sim.observation import PAGE_SCALE

_I = {name: i for i, name in enumerate(OBS_FEATURES)}
TODAY_DUR = [_I["today_dur_featured"], _I["today_dur_explore"], _I["today_dur_following"]]
DAY_KEYS = (
    *("age", "region", "activity", "social_degree", "usage_7d", "usage_30d", "sessions_7d"),
    *("sessions_30d", "page_dur_7d", "page_dur_14d", "page_entries_7d", "page_entries_14d"),
)


def daily_columns(features: dict[str, np.ndarray], weekday: int) -> dict[str, np.ndarray]:
    """``daily``/``rct``-like columns of every user from ``begin_day``'s features."""
    n = len(features["user_id"])
    cols = {k: np.asarray(features[k]) for k in DAY_KEYS}
    cols["weekday"] = np.full(n, weekday, dtype=np.int64)
    cols["seq_sessions"] = np.asarray(features["seq_sessions"], dtype=np.float32)
    cols["seq_usage"] = np.asarray(features["seq_usage"], dtype=np.float32)
    cols["seq_dt"] = np.broadcast_to(np.arange(1, SEQ_LEN + 1), (n, SEQ_LEN))
    return cols


def session_columns(
    day: dict[str, np.ndarray],
    rows: np.ndarray,
    obs: np.ndarray,
    hour: np.ndarray,
    entries_today: np.ndarray,
) -> dict[str, np.ndarray]:
    """``sessions``-like context columns (no outcome) of the entries ``rows``; obs (B, D)."""
    cols = {k: day[k][rows] for k in DAY_KEYS}
    cols["hour"] = np.asarray(hour, dtype=np.float32)
    cols["entries_today"] = np.asarray(entries_today)
    cols["live_count"] = np.rint(obs[:, _I["live_count"]] * 5.0)
    cols["today_dur"] = obs[:, TODAY_DUR] * PAGE_SCALE
    return cols


def completed_session_columns(
    day: dict[str, np.ndarray], hist: IntraDayHistory, rows: np.ndarray, t: np.ndarray
) -> dict[str, np.ndarray]:
    """Full ``sessions`` feature columns of session ``t`` of each user in ``rows`` (for HRM)."""
    obs = hist.obs[rows, t]  # (B, D)
    cols = session_columns(day, rows, obs, hist.hour[rows, t], t)
    cols["video_views"] = hist.video_views[rows, t]
    cols["n_switches"] = hist.n_switches[rows, t]
    cols["action"] = hist.action[rows, t].astype(np.int64)
    return cols
