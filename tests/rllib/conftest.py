"""Small simulated datasets for the RL pre-learners (no Ray: the tables are built in-process)."""

from __future__ import annotations

import pyarrow as pa
import pytest

from glan_ray.data.tables import day_tables
from glan_ray.sim.baselines import LoggingPolicy
from glan_ray.sim.config import SimConfig
from glan_ray.sim.engine import simulate


@pytest.fixture(scope="package")
def rl_tables() -> dict[str, pa.Table]:
    """Two logged days of 100 users: every dataset's table, days concatenated."""
    cfg = SimConfig(seed=12, block_size=100)
    parts: dict[str, list[pa.Table]] = {}
    for log in simulate(cfg, 0, 100, 2, LoggingPolicy(cfg)):
        for name, t in day_tables(log, rct=False).items():
            parts.setdefault(name, []).append(t)
    return {name: pa.concat_tables(ts).combine_chunks() for name, ts in parts.items()}


@pytest.fixture(scope="package")
def transitions(rl_tables) -> pa.Table:
    return rl_tables["transitions"]


@pytest.fixture(scope="package")
def trajectories(rl_tables) -> pa.Table:
    return rl_tables["trajectories"]
