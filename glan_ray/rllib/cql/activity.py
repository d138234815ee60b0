"""ρ_h and ρ_n of the dynamic α(s), measured on the logged transitions with Ray Data."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import ray

from glan_ray.models.cql import N_HOURS, activity_ratios

logger = logging.getLogger(__name__)


def measure_activity(input_: Any, n_freq: int) -> tuple[list[float], list[float]]:
    """(ρ_h for 24 hours, ρ_n for entry counts 0..n_freq−1, the last bucket holding the tail).

    One streaming pass over two columns of the transitions dataset: app entries per hour of the
    day and per number of entries the user already made that day, each divided by its mean.
    """
    ds = ray.data.read_parquet(input_).select_columns(["hour", "entries_today"])
    hours = np.zeros(N_HOURS, np.int64)
    freq = np.zeros(n_freq, np.int64)
    for b in ds.iter_batches(batch_size=65536, batch_format="numpy"):
        h = np.clip(b["hour"].astype(np.int64), 0, N_HOURS - 1)
        hours += np.bincount(h, minlength=N_HOURS)
        n = np.clip(b["entries_today"].astype(np.int64), 0, n_freq - 1)
        freq += np.bincount(n, minlength=n_freq)
    rho_h, rho_n = activity_ratios(hours), activity_ratios(freq)
    logger.info(
        "dynamic alpha: measured %d entries; rho_hour in [%.3f, %.3f], rho_freq in [%.3f, %.3f]",
        hours.sum(),
        rho_h.min(),
        rho_h.max(),
        rho_n.min(),
        rho_n.max(),
    )
    return rho_h.tolist(), rho_n.tolist()
