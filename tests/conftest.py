"""Shared fixtures: one Ray instance for the whole session, small simulated populations."""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import pyarrow as pa
import pytest
import torch

from glan_ray.data.features import SPECS, Normalizer, as_columns, feature_dims
from glan_ray.data.tables import day_tables
from glan_ray.models.checkpoint import save_checkpoint
from glan_ray.models.cql import QNetConfig, QNetwork
from glan_ray.models.dt import DecisionTransformer, DTConfig
from glan_ray.models.exports import CQLRecord
from glan_ray.models.registry import build_model, model_config
from glan_ray.schema import HIST_DIM, HIST_FEATURES, OBS_DIM
from glan_ray.sim.baselines import LoggingPolicy
from glan_ray.sim.config import SimConfig
from glan_ray.sim.engine import simulate

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


@pytest.fixture(scope="session")
def random_models(tmp_path_factory) -> str:
    """Randomly initialised exports of every model the learned arms load."""
    out = str(tmp_path_factory.mktemp("models"))
    cfg = SimConfig(seed=3, block_size=100)
    tables: dict[str, list[pa.Table]] = {}
    for log in simulate(cfg, 0, 100, 2, LoggingPolicy(cfg), rct=True):
        for name, t in day_tables(log, rct=True).items():
            tables.setdefault(name, []).append(t)
    torch.manual_seed(0)
    small = {"d": 4, "n_experts": 2, "expert_hidden": 8, "tower_hidden": 8}
    for name in ("lrtg", "hrm", "isp", "am"):
        table = pa.concat_tables(tables[SPECS[name].dataset])
        cols = as_columns(table.slice(0, 200))
        over = {"d_model": 8, "n_layers": 1, "expert_hidden": 8} if name == "lrtg" else small
        mc = model_config(name, feature_dims(name, cols), over)
        feats = SPECS[name].build(cols)
        norm = Normalizer.fit([feats], SPECS[name].normalized)
        save_checkpoint(os.path.join(out, name), name, build_model(name, mc), mc, {}, norm)
    q = QNetwork(QNetConfig(hidden=(8,)))
    for name in ("cql", "cql_static"):
        save_checkpoint(os.path.join(out, name), "cql", q, dataclasses.asdict(q.cfg), {}, None)
    qh = QNetwork(QNetConfig(obs_dim=OBS_DIM + HIST_DIM, hidden=(8,)))  # klan_iit_hist's
    save_checkpoint(os.path.join(out, "cql_hist"), "cql", qh, dataclasses.asdict(qh.cfg), {},
                    None, CQLRecord(history_features=HIST_FEATURES))  # fmt: skip
    for name in ("dt", "dt_naive"):
        dt = DecisionTransformer(DTConfig(context_len=4, embed_dim=8, n_heads=2, n_layers=1))
        meta = dataclasses.asdict(dt.cfg)
        save_checkpoint(os.path.join(out, name), "dt", dt, meta, {}, None, {"rtg_scale": 3600.0})
    # glan_act's DT: the same architecture with an ACT command head ĉ(s) = 0.1·s₀ − 300 s
    command = [0.0] * (OBS_DIM + 1)
    command[0], command[-1] = 0.1, -300.0
    for name in ("dt_act", "dt_target"):  # glan_target's: a per-state target head
        save_checkpoint(os.path.join(out, name), "dt", dt, meta, {}, None,
                        {"rtg_scale": 3600.0, "command": command})  # fmt: skip
    return out
