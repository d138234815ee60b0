"""The observation vector ``obs`` (schema.OBS_FEATURES): what a policy sees at an app entry.

Built from observed data only (profile x, statistics t, real-time context c); the hidden intent,
fatigue and satisfaction are not in it. The same function builds the ``obs`` columns of the
datasets and the live observations, so training and acting see identical features.
"""

from __future__ import annotations

import numpy as np

from glan_ray.schema import N_PAGES, OBS_DIM

HOUR_SCALE = 3600.0
"""Daily usage is given to models in hours."""
PAGE_SCALE = 600.0
"""Page consumption is given to models in units of 10 minutes."""


def build_obs(
    user: dict[str, np.ndarray],
    stats: dict[str, np.ndarray],
    hour: np.ndarray,
    weekday: np.ndarray | int,
    entries_today: np.ndarray,
    live_count: np.ndarray,
    today_dur: np.ndarray,
    prev_dropoff: np.ndarray,
    last_exit: np.ndarray,
) -> np.ndarray:
    """Observation matrix (B, OBS_DIM) float32; every argument has B rows (weekday may be int).

    ``user`` holds activity, age, region, social_degree; ``stats`` the schema's statistical
    features; ``today_dur`` (B, 3) the consumption per page so far today.
    """
    b = len(hour)
    page_7d = stats["page_entries_7d"]
    share = page_7d / np.maximum(page_7d.sum(1, keepdims=True), 1e-6)  # (B, 3)
    last = np.zeros((b, N_PAGES), dtype=np.float32)
    last[np.arange(b), last_exit] = 1.0
    rad = 2 * np.pi * hour / 24.0
    weekend = np.broadcast_to(np.isin(np.asarray(weekday), (5, 6)), (b,))
    cols = [
        user["activity"] / 3.0,
        user["age"] / 5.0,
        user["region"] / 7.0,
        np.log1p(user["social_degree"]) / 3.0,
        stats["usage_7d"] / HOUR_SCALE,
        stats["usage_30d"] / HOUR_SCALE,
        stats["sessions_7d"] / 10.0,
        stats["sessions_30d"] / 10.0,
        *share.T,
        *(stats["page_dur_14d"] / PAGE_SCALE).T,
        *last.T,
        hour / 24.0,
        np.sin(rad),
        np.cos(rad),
        weekend,
        entries_today / 10.0,
        live_count / 5.0,
        *(today_dur / PAGE_SCALE).T,
        today_dur.sum(1) / HOUR_SCALE,
        prev_dropoff,
    ]
    obs = np.stack([np.asarray(c, dtype=np.float32) for c in cols], axis=1)
    assert obs.shape == (b, OBS_DIM), obs.shape
    return obs
