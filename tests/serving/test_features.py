"""The server builds each entry's observation from named facts exactly as the simulator does
(``build_obs``, the one definition): replaying a simulated day through ``serving.features``
reproduces every logged ``obs``, and a batch's observations built in one call are exactly the
ones built row by row."""

from __future__ import annotations

import random
from functools import partial

import numpy as np

from glan_ray.apps import plpm_spec
from glan_ray.schema import PAGES
from glan_ray.serving.batching import per_item
from glan_ray.serving.bodies import DayFeatures
from glan_ray.serving.features import (
    after_session,
    daily_columns,
    day_context,
    entry_obs,
    entry_obs_many,
    session_columns,
)
from glan_ray.sim.baselines import LoggingPolicy
from glan_ray.sim.config import SimConfig
from glan_ray.sim.engine import simulate

PLPM = plpm_spec()


def _replayed_entries(seed: int = 11, days: int = 2) -> list[tuple[dict, float, dict, np.ndarray]]:
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
            state = {"features": feats, "actions": [], **day_context(PLPM, None, prev)}
            for i in mine:
                live = {"live_count": int(s["live_count"][i])}
                out.append((state, float(s["hour"][i]), live, s["obs"][i]))
                exit_page = PAGES[s["page_seq"][i, s["seq_len"][i] - 1]]
                state = {**state, "actions": [*state["actions"], int(s["action"][i])],
                         **after_session(PLPM, state, int(s["action"][i]),
                                         s["dur"][i].tolist(), exit_page)}  # fmt: skip
            last_exit[row] = state["last_exit"]
    return out


def test_a_simulated_day_rebuilds_every_logged_observation():
    entries = _replayed_entries()
    for state, hour, live, logged in entries:
        obs = entry_obs(PLPM, state, hour, live)
        np.testing.assert_allclose(obs, logged, rtol=1e-5, atol=1e-6)
    assert len(entries) > 500


def test_a_batch_of_observations_is_exactly_the_rows_built_alone():
    """The ingress builds a coalesced batch's observations in one ``build_obs`` call: bit for
    bit the per-entry ones, whatever the batch's size and mix (two days: two weekdays), and an
    entry whose state cannot be observed fails alone."""
    entries = [e[:3] for e in _replayed_entries(seed=5, days=2)]
    alone = [entry_obs(PLPM, *e) for e in entries]
    assert entry_obs_many(PLPM, entries) == alone
    rng = random.Random(0)
    for size in (1, 2, 3, 7, 31, 32, 64):
        idx = rng.sample(range(len(entries)), size)
        assert entry_obs_many(PLPM, [entries[i] for i in idx]) == [alone[i] for i in idx]
    bad = ({**entries[0][0], "last_exit": 7}, 9.0, {"live_count": 1})  # no such page
    out = per_item(partial(entry_obs_many, PLPM), [entries[1], bad, entries[2]])
    assert out[0] == alone[1] and out[2] == alone[2] and isinstance(out[1], IndexError)


def test_plpm_model_columns_are_the_offline_policys():
    """L-RTG's and HRM's columns built from a request's named facts are the ones the offline
    policies build from the day's features and the logged ``obs`` (``policy.context``)."""
    from glan_ray.policy import context
    from glan_ray.serving.deployments import day_features

    entries = _replayed_entries(seed=3, days=1)[:40]
    reqs = []
    for t, (state, hour, live, logged) in enumerate(entries):
        opened = {"obs": logged.tolist(), "hour": hour, "action": t % 3, "inputs": live,
                  "today_dur": state["today_dur"]}  # fmt: skip
        reqs.append({**opened, "features": state["features"], "t": len(state["actions"]),
                     "video_views": [1, 0, 2], "n_switches": 1})  # fmt: skip
    feats = [r["features"] for r in reqs]
    day = context.daily_columns(day_features(feats), int(feats[0]["weekday"]))
    mine = daily_columns(feats)
    assert set(day) <= set(mine)
    for k, v in day.items():
        np.testing.assert_array_equal(mine[k], v, err_msg=k)
    rows = np.arange(len(reqs))
    obs = np.asarray([r["obs"] for r in reqs], dtype=np.float32)
    theirs = context.session_columns(day, rows, obs, np.asarray([r["hour"] for r in reqs]),
                                     np.asarray([r["t"] for r in reqs]))  # fmt: skip
    served = session_columns(PLPM, reqs)
    for k, v in theirs.items():
        np.testing.assert_allclose(served[k], v, rtol=1e-5, atol=1e-3, err_msg=k)
    # an open entry stored before its inputs and consumption were: read back from its obs
    old = [{k: v for k, v in r.items() if k not in ("inputs", "today_dur")} for r in reqs]
    for k, v in session_columns(PLPM, old).items():
        np.testing.assert_allclose(v, served[k], rtol=1e-5, atol=1e-3, err_msg=k)


def test_a_four_page_apps_observation_and_columns_follow_its_spec():
    from glan_ray.apps import load_spec
    from glan_ray.apps.observation import build_obs
    from glan_ray.schema import schemas_for
    from glan_ray.serving.app_bodies import bodies_for

    spec = load_spec("glan_ray/apps/fourpage.yaml")
    example = bodies_for(spec).start_day.model_json_schema()["examples"][0]["features"]
    feats = bodies_for(spec).day_features.model_validate(example).model_dump()
    feats["page_entries_7d"] = [2.0, 1.0, 0.0, 1.0]
    state = {"features": feats, "actions": [0, 3], **day_context(spec, "mall", None)}
    state = {**state, **after_session(spec, state, 3, [100.0, 0.0, 0.0, 20.0], "explore")}
    assert state == {**state, "today_dur": [100.0, 0.0, 0.0, 20.0], "prev_drop": 1.0,
                     "last_exit": 1}  # fmt: skip  # 20 s on the landing page < τ = 30 s
    obs = entry_obs(spec, state, 21.0, {"cart_items": 3})
    assert len(obs) == spec.obs_dim
    named = dict(zip(spec.obs_features, obs, strict=True))
    assert named["cart_items"] == np.float32(3 / 5)
    assert named["last_exit_explore"] == 1.0 and named["last_exit_mall"] == 0.0
    assert named["page_entries_7d_featured"] == np.float32(2.0 / 5)
    assert named["today_usage"] == np.float32(120 / 3600)
    assert named["entries_today"] == np.float32(0.2)
    # what build_obs gives from the dataset's own columns
    cols = {k: np.asarray([v]) for k, v in feats.items()}
    cols.update(hour=np.asarray([21.0]), entries_today=np.asarray([2]),
                cart_items=np.asarray([3]), today_dur=np.asarray([[100.0, 0.0, 0.0, 20.0]]),
                prev_dropoff=np.asarray([1.0]), last_exit=np.asarray([1]))  # fmt: skip
    np.testing.assert_array_equal(obs, build_obs(spec, cols)[0])
    # HRM's columns are named as the app's sessions dataset (every input column it has)
    req = {"features": feats, "obs": obs, "hour": 21.0, "t": 2, "action": 3,
           "inputs": {"cart_items": 3}, "today_dur": state["today_dur"],
           "video_views": [0, 0, 0, 4], "n_switches": 0}  # fmt: skip
    got = session_columns(spec, [req])
    outcomes = {"dur", "y_sw", "usage_time", "watch_time", "value_true", "obs", "propensity",
                "page_seq", "session_idx", "day"}  # fmt: skip
    need = {f.name for f in schemas_for(spec)["sessions"]} - outcomes
    assert need <= set(got), need - set(got)
    assert got["today_dur"].shape == (1, 4) and got["cart_items"].tolist() == [3]
    assert need - {"user_id"} >= {"city_tier", "tenure_days", "usage_3d", "sessions_3d"}
