"""The server builds each entry's observation from named facts exactly as the simulator does
(``build_obs``, the one definition): replaying a simulated day through ``serving.features``
reproduces every logged ``obs``, and a batch's observations built in one call are exactly the
ones built row by row."""

from __future__ import annotations

import random

import numpy as np

from glan_ray.schema import PAGES
from glan_ray.serving.batching import per_item
from glan_ray.serving.bodies import DayFeatures
from glan_ray.serving.features import after_session, day_context, entry_obs, entry_obs_many
from glan_ray.sim.baselines import LoggingPolicy
from glan_ray.sim.config import SimConfig
from glan_ray.sim.engine import simulate


def _replayed_entries(seed: int = 11, days: int = 2) -> list[tuple[dict, float, int, np.ndarray]]:
    """(state, hour, live count, logged obs) of every entry of a simulated run, the state as the
    server holds it at that entry."""
    cfg = SimConfig(seed=seed, block_size=200)
    out = []
    last_exit: dict[int, int] = {}
    for log in simulate(cfg, 0, 200, days, LoggingPolicy(cfg)):
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
                out.append((state, float(s["hour"][i]), int(s["live_count"][i]), s["obs"][i]))
                exit_page = PAGES[s["page_seq"][i, s["seq_len"][i] - 1]]
                state = {**state, "actions": [*state["actions"], int(s["action"][i])],
                         **after_session(state, int(s["action"][i]), s["dur"][i].tolist(),
                                         exit_page)}  # fmt: skip
            last_exit[row] = state["last_exit"]
    return out


def test_a_simulated_day_rebuilds_every_logged_observation():
    entries = _replayed_entries()
    for state, hour, live, logged in entries:
        obs = entry_obs(state, hour, live)
        np.testing.assert_allclose(obs, logged, rtol=1e-5, atol=1e-6)
    assert len(entries) > 500


def test_a_batch_of_observations_is_exactly_the_rows_built_alone():
    """The ingress builds a coalesced batch's observations in one ``build_obs`` call: bit for
    bit the per-entry ones, whatever the batch's size and mix (two days: two weekdays), and an
    entry whose state cannot be observed fails alone."""
    entries = [e[:3] for e in _replayed_entries(seed=5, days=2)]
    alone = [entry_obs(*e) for e in entries]
    assert entry_obs_many(entries) == alone
    rng = random.Random(0)
    for size in (1, 2, 3, 7, 31, 32, 64):
        idx = rng.sample(range(len(entries)), size)
        assert entry_obs_many([entries[i] for i in idx]) == [alone[i] for i in idx]
    bad = ({**entries[0][0], "last_exit": 7}, 9.0, 1)  # no such page
    out = per_item(entry_obs_many, [entries[1], bad, entries[2]])
    assert out[0] == alone[1] and out[2] == alone[2] and isinstance(out[1], IndexError)
