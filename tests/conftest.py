"""Shared fixtures: one Ray instance for the whole session, small simulated populations."""

from __future__ import annotations

import os

import numpy as np
import pytest

from glan_ray.sim.config import SimConfig
from glan_ray.sim.engine import simulate
from glan_ray.sim.policies import LoggingPolicy

os.environ.setdefault("RAY_AUTH_MODE", "disabled")


@pytest.fixture(scope="session")
def ray_session():
    """A local Ray with 2 CPUs, started once and shared by every test that needs Ray."""
    import ray

    from glan_ray.runtime import init_ray

    if not ray.is_initialized():
        ray.init(
            num_cpus=2,
            include_dashboard=False,
            log_to_driver=False,
            object_store_memory=512 * 1024**2,
        )
    init_ray()  # quiet Ray Data logs; reuses the instance above
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def sim_cfg() -> SimConfig:
    return SimConfig(seed=7)


@pytest.fixture(scope="session")
def logged_days(sim_cfg):
    """3,000 users x 14 days under the logging policy (two full weeks)."""
    return list(simulate(sim_cfg, 0, 3000, 14, LoggingPolicy(sim_cfg)))


def concat_sessions(logs, key: str) -> np.ndarray:
    return np.concatenate([log.sessions[key] for log in logs])


@pytest.fixture(scope="module")
def torch_one_thread():
    """Tiny models run fastest on one thread; intra-op threads only contend on a busy CI box."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def torch_seed() -> None:
    import torch

    torch.manual_seed(0)
