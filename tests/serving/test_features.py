"""The server builds each entry's observation from named facts exactly as the simulator does
(``build_obs``, the one definition): replaying a simulated day through ``serving.features``
reproduces every logged ``obs``."""

from __future__ import annotations

import numpy as np

from glan_ray.schema import PAGES
from glan_ray.serving.features import after_session, day_context, entry_obs
from glan_ray.serving.schemas import DayFeatures
from glan_ray.sim.config import SimConfig
from glan_ray.sim.engine import simulate
from glan_ray.sim.policies import LoggingPolicy


def test_a_simulated_day_rebuilds_every_logged_observation():
    cfg = SimConfig(seed=11, block_size=200)
    logs = list(simulate(cfg, 0, 200, 2, LoggingPolicy(cfg)))
    checked = 0
    last_exit: dict[int, int] = {}
    for log in logs:
        s = log.sessions
        for row in np.unique(s["row"]):
            mine = np.flatnonzero(s["row"] == row)
            feats = {k: np.asarray(v[row]).tolist() for k, v in log.stats.items()}
            for k in ("age", "region", "activity", "social_degree"):
                feats[k] = getattr(log.users, k)[row].item()
            feats["weekday"] = log.weekday
            feats["seq_sessions"] = log.seq_sessions[row].tolist()
            feats["seq_usage"] = log.seq_usage[row].tolist()
            DayFeatures.model_validate(feats)  # the simulator's days are valid requests
            prev = {"last_exit": last_exit[row]} if row in last_exit else None
            state = {"features": feats, "actions": [], **day_context(None, prev)}
            for i in mine:
                obs = entry_obs(state, float(s["hour"][i]), int(s["live_count"][i]))
                np.testing.assert_allclose(obs, s["obs"][i], rtol=1e-5, atol=1e-6)
                exit_page = PAGES[s["page_seq"][i, s["seq_len"][i] - 1]]
                state = {**state, "actions": [*state["actions"], int(s["action"][i])],
                         **after_session(state, int(s["action"][i]), s["dur"][i].tolist(),
                                         exit_page)}  # fmt: skip
                checked += 1
            last_exit[row] = state["last_exit"]
    assert checked > 500
