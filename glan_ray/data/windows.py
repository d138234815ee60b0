"""Decision-Transformer windows: user-day trajectories -> fixed windows of K sessions with RTG.

R̂_t = Σ_{t' ≥ t} r_t' over the rest of the user's day (GLAN eq. 2), computed once here in the
data pipeline (CORL ``dt.py``), from whichever reward column is chosen: ``reward`` (the naive
session duration, the "w/o HRM" ablation) or ``reward_hrm`` (HRM's r̂). Both are in seconds;
the model sees RTG / ``rtg_scale`` (hours by default, the unit L-RTG predicts R̂₁ in).

Each day of n sessions is cut into ⌈n/K⌉ consecutive windows starting at sessions 0, K, 2K, …,
so every session is a training target exactly once per epoch; the last window is right-padded
and ``mask`` is 0 on the padding. Vectorised over the Arrow list columns: no Python loop over
rows.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from glan_ray.schema import OBS_DIM, DatasetValidationError

REWARD_COLUMNS = ("reward", "reward_hrm")
"""Trajectory columns that can serve as the DT's per-session reward."""
WINDOW_KEYS = ("obs", "actions", "rtg", "timesteps", "mask", "propensity")
"""What ``cut_windows`` returns."""


def _flat(table: pa.Table, name: str) -> tuple[pa.Array, np.ndarray]:
    """(values, offsets) of a list column; values (an Arrow array) flattened one level."""
    col = table.column(name).combine_chunks()
    if col.null_count:
        raise DatasetValidationError(
            f"column '{name}': {col.null_count} null rows"
            + (
                "; label the trajectories with HRM rewards first (glan-ray label-hrm)"
                if name == "reward_hrm"
                else ""
            )
        )
    offsets = col.offsets.to_numpy()
    return col.values, offsets - offsets[0]


def obs_matrix(obs_lists: pa.Array, dtype: type = np.float32) -> np.ndarray:
    """(S, D) of S observations given as lists (fixed-size or not): D is their length, the
    app's obs_dim (``schema.OBS_DIM`` for an empty column of variable-size lists)."""
    values: np.ndarray = np.asarray(
        pc.list_flatten(obs_lists).to_numpy(zero_copy_only=False), dtype
    )
    n = len(obs_lists)
    if pa.types.is_fixed_size_list(obs_lists.type):
        d = obs_lists.type.list_size
    else:
        d = len(values) // n if n else OBS_DIM
    return values.reshape(n, d)


def deterministic_days(table: pa.Table) -> np.ndarray:
    """(N,) bool: user-days on which every page was chosen with probability 1.

    An RCT treatment day lands the user on one fixed page all day; its later actions are copies
    of the first, so a sequence model learns "repeat the previous page" from them instead of a
    choice. Days without sessions count as deterministic (they hold no decision).
    """
    if "propensity" not in table.column_names:
        return np.zeros(table.num_rows, dtype=bool)
    mu = table.column("propensity")
    n = np.asarray(pc.list_value_length(mu).to_numpy(zero_copy_only=False), np.int64)  # (N,)
    values = np.asarray(pc.list_flatten(mu).to_numpy(zero_copy_only=False), np.float64)
    start = np.concatenate([[0], np.cumsum(n)[:-1]])  # (N,) first session of each day
    mins = np.ones(len(n))
    if values.size:
        mins[n > 0] = np.minimum.reduceat(values, start[n > 0])
    return mins >= 1.0


def cut_windows(
    table: pa.Table, k: int, reward_column: str = "reward_hrm", rtg_scale: float = 3600.0
) -> dict[str, np.ndarray]:
    """Trajectories (one row per user-day) -> W windows of K sessions.

    Returns obs (W, K, D) float32, actions (W, K) int64, rtg (W, K) float32 (RTG / rtg_scale),
    timesteps (W, K) int64 (session index within the day), mask (W, K) float32 and propensity
    (W, K) float32: the logging policy's probability of the logged page (1 on padding, and
    everywhere when the table has no ``propensity`` column).
    """
    if reward_column not in REWARD_COLUMNS:
        raise ValueError(f"reward_column must be one of {REWARD_COLUMNS}; got {reward_column!r}")
    missing = [c for c in ("obs", "actions", reward_column) if c not in table.column_names]
    if missing:
        raise DatasetValidationError(f"trajectories lack column(s): {', '.join(missing)}")
    actions, offsets = _flat(table, "actions")
    rewards, r_off = _flat(table, reward_column)
    obs_rows, o_off = _flat(table, "obs")
    if not (np.array_equal(offsets, r_off) and np.array_equal(offsets, o_off)):
        raise DatasetValidationError(
            f"columns 'actions', 'obs' and '{reward_column}' differ in length on some rows"
        )
    n = np.diff(offsets)  # (N,) sessions per day
    total = int(offsets[-1])
    obs = obs_matrix(obs_rows)  # (S, D), D the app's obs_dim
    if len(obs) != total:
        raise DatasetValidationError(f"column 'obs': {len(obs)} observations for {total} sessions")
    d = obs.shape[1]
    r = np.asarray(rewards.to_numpy(zero_copy_only=False), np.float64)  # (S,)
    if not np.isfinite(r).all():
        raise DatasetValidationError(f"column '{reward_column}': non-finite rewards")
    # reverse cumulative sum within each day: R̂_j = (Σ of the day) − (Σ before j)
    csum = np.concatenate([[0.0], np.cumsum(r)])  # (S + 1,)
    day = np.repeat(np.arange(len(n)), n)  # (S,) row of each session
    rtg = csum[offsets[1:]][day] - csum[:-1]  # (S,)
    step = np.arange(total) - offsets[:-1][day]  # (S,) 0-based session index
    n_win = -(-n // k)  # ceil(n / k), 0 for empty days
    win_start = np.concatenate([[0], np.cumsum(n_win)])
    w = win_start[:-1][day] + step // k  # (S,) window of each session
    p = step % k  # (S,) position within the window
    out = {
        "obs": np.zeros((win_start[-1], k, d), np.float32),
        "actions": np.zeros((win_start[-1], k), np.int64),
        "rtg": np.zeros((win_start[-1], k), np.float32),
        "timesteps": np.zeros((win_start[-1], k), np.int64),
        "mask": np.zeros((win_start[-1], k), np.float32),
    }
    out["obs"][w, p] = obs
    out["actions"][w, p] = np.asarray(actions.to_numpy(zero_copy_only=False), np.int64)
    out["rtg"][w, p] = rtg / rtg_scale
    out["timesteps"][w, p] = step
    out["mask"][w, p] = 1.0
    out["propensity"] = np.ones((win_start[-1], k), np.float32)
    if "propensity" in table.column_names:
        mu, mu_off = _flat(table, "propensity")
        if not np.array_equal(offsets, mu_off):
            raise DatasetValidationError(
                "columns 'actions' and 'propensity' differ in length on some rows"
            )
        mu = np.asarray(mu.to_numpy(zero_copy_only=False), np.float32)
        if not ((mu > 0) & (mu <= 1)).all():
            raise DatasetValidationError("column 'propensity': values outside (0, 1]")
        out["propensity"][w, p] = mu
    return out


def remaining_returns(table: pa.Table, reward_column: str) -> tuple[np.ndarray, np.ndarray]:
    """(obs (S, D), R̂ (S,) seconds) of every session of the user-days of ``table``."""
    lengths = np.asarray([len(r) for r in table.column(reward_column).to_pylist()], np.int64)
    r = np.concatenate([np.asarray(x, np.float64) for x in
                        table.column(reward_column).to_pylist()] or [np.zeros(0)])  # fmt: skip
    obs = obs_matrix(table.column("obs").combine_chunks().flatten(), np.float64)  # (S, D)
    day = np.repeat(np.arange(len(lengths)), lengths)  # (S,)
    csum = np.concatenate([[0.0], np.cumsum(r)])
    ends = np.cumsum(lengths)
    rtg = csum[ends][day] - csum[:-1]  # Σ of the day's rewards from this session on
    return obs, rtg
