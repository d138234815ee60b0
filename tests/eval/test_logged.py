"""Off-policy evaluation on logged sessions (glan_ray.eval.logged): the estimators' values by
hand, the logged days' order and their daily rows, and the report's files."""

from __future__ import annotations

import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from glan_ray.apps import plpm_spec
from glan_ray.eval.logged import Logged, LoggedOPEConfig, evaluate_policy, read_logged, write_ope
from glan_ray.eval.ope import FQEConfig
from tests.serving.test_fourpage_app import _columns as _random_columns

FAST = LoggedOPEConfig(bootstrap=100, fqe=FQEConfig(iterations=2, steps_per_iteration=20))


def _log(n_users: int = 40, per_day: int = 3, seed: int = 0) -> Logged:
    """``n_users`` users, one day each, ``per_day`` sessions; page 0 logged with propensity 0.5,
    pages 1 and 2 with 0.25; the reward is 100 s on page 2, else 10 s."""
    rng = np.random.default_rng(seed)
    n = n_users * per_day
    action = rng.choice(3, size=n, p=[0.5, 0.25, 0.25])
    obs = rng.normal(size=(n, 4)).astype(np.float32)
    sessions = {"user_id": np.repeat(np.arange(n_users), per_day), "action": action,
                "propensity": np.where(action == 0, 0.5, 0.25), "obs": obs}  # fmt: skip
    reward = np.where(action == 2, 100.0, 10.0)
    return Logged(sessions, {}, np.repeat(np.arange(n_users), per_day),
                  np.tile(np.arange(per_day), n_users), reward, False)  # fmt: skip


def test_ips_and_snips_by_hand():
    log = _log()
    a, r = log.sessions["action"], log.reward
    always2 = np.tile([0.0, 0.0, 1.0], (len(a), 1))
    v = evaluate_policy("page:2", always2, log, FAST, log.sessions["user_id"])
    w = (a == 2) / 0.25
    assert v.ips.value == pytest.approx(np.mean(w * r))
    assert v.snips.value == pytest.approx(100.0)  # every supported row earned 100 s
    assert v.agree == pytest.approx(np.mean(a == 2))
    assert v.ess == pytest.approx(w.sum() ** 2 / (w**2).sum())
    assert v.ips.lo <= v.ips.value <= v.ips.hi and v.ips.lo < v.ips.hi  # a real interval
    assert v.snips.lo == pytest.approx(100.0) and v.snips.hi == pytest.approx(100.0)


def test_the_logging_policy_is_valued_at_the_logged_mean():
    log = _log()
    a, mu = log.sessions["action"], log.sessions["propensity"]
    pi = np.repeat(((1 - mu) / 2)[:, None], 3, axis=1)
    pi[np.arange(len(a)), a] = mu
    v = evaluate_policy("logging", pi, log, FAST, log.sessions["user_id"])
    assert v.ips.value == pytest.approx(log.reward.mean())  # w = 1 on every row
    assert v.snips.value == pytest.approx(log.reward.mean())
    assert v.ess == pytest.approx(len(a))


def test_a_zero_propensity_is_refused_naming_the_column():
    log = _log()
    log.sessions["propensity"][0] = 0.0
    with pytest.raises(ValueError, match="column 'propensity'"):
        evaluate_policy("x", np.full((len(log.t), 3), 1 / 3), log, FAST, log.sessions["user_id"])


def _write(tmp_path, name: str, table: pa.Table) -> None:
    (tmp_path / name).mkdir()
    pq.write_table(table, tmp_path / name / "part-0.parquet")


def test_read_logged_orders_sessions_by_day_and_joins_their_daily_row(tmp_path):
    sessions = pa.table({"user_id": [2, 1, 2, 1], "day": [5, 5, 5, 6], "session_idx": [1, 0, 0, 0],
                         "usage_time": [30.0, 10.0, 20.0, 40.0]})  # fmt: skip
    daily = pa.table({"user_id": [1, 1, 2], "day": [5, 6, 5], "usage_7d": [1.0, 2.0, 3.0]})
    _write(tmp_path, "sessions", sessions)
    _write(tmp_path, "daily", daily)
    log = read_logged(str(tmp_path), plpm_spec(), max_sessions=100)
    assert log.sessions["user_id"].tolist() == [1, 1, 2, 2]
    assert log.reward.tolist() == [10.0, 40.0, 20.0, 30.0]  # usage_time: the spec's reward
    assert log.episode.tolist() == [0, 1, 2, 2] and log.t.tolist() == [0, 0, 0, 1]
    assert log.daily["usage_7d"].tolist() == [1.0, 2.0, 3.0, 3.0]
    assert not log.truncated
    pq.write_table(daily.slice(0, 2), tmp_path / "daily" / "part-0.parquet")
    with pytest.raises(ValueError, match=r"sessions of user-day \(2, 5\) have no 'daily' row"):
        read_logged(str(tmp_path), plpm_spec(), max_sessions=100)


def test_write_ope_writes_the_table_and_the_json(tmp_path):
    log = _log()
    v = evaluate_policy("page:2", np.tile([0.0, 0.0, 1.0], (len(log.t), 1)), log, FAST,
                        log.sessions["user_id"])  # fmt: skip
    md = write_ope(str(tmp_path), [v], log, FAST)
    with open(md) as f:
        text = f.read()
    assert "| page:2 |" in text and "120 logged sessions of 40 user-days, 40 users" in text
    with open(tmp_path / "ope.json") as f:
        data = json.load(f)
    assert data["policies"][0]["snips"]["value"] == pytest.approx(100.0)


# ---- every policy of a 4-page app's exports, on a log of its schema (no Ray) ----


def _fourpage_run(tmp_path) -> tuple[str, str]:
    """A log of 30 user-days (1 to 4 sessions each) of the 4-page app and tiny untrained
    exports of every model sized from its spec: (data dir, models dir)."""
    import dataclasses
    from importlib import resources

    import torch

    from glan_ray.apps import load_spec
    from glan_ray.data.features import SPECS, Normalizer, feature_dims
    from glan_ray.models.checkpoint import save_checkpoint
    from glan_ray.models.cql import QNetConfig, QNetwork
    from glan_ray.models.dt import DecisionTransformer, DTConfig
    from glan_ray.models.exports import CQLRecord
    from glan_ray.models.registry import build_model, model_config
    from glan_ray.schema import schemas_for

    spec = load_spec(str(resources.files("glan_ray.apps").joinpath("fourpage.yaml")))
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    per_day = rng.integers(1, 5, 30)
    n = int(per_day.sum())
    schemas = schemas_for(spec)
    s = _random_columns(schemas["sessions"], n, rng)
    s["user_id"] = np.repeat(np.arange(30) // 3, per_day)  # 10 users × 3 days
    s["day"] = np.repeat(np.arange(30) % 3, per_day)
    s["session_idx"] = np.concatenate([np.arange(k) for k in per_day])
    s["action"] = rng.integers(0, 4, n)
    s["propensity"] = np.full(n, 0.25, dtype=np.float32)
    d = _random_columns(schemas["daily"], 30, rng)
    d["user_id"], d["day"] = np.arange(30) // 3, np.arange(30) % 3
    for name, cols in (("sessions", s), ("daily", d)):
        (tmp_path / "data" / name).mkdir(parents=True)
        sch = schemas[name]
        table = pa.table({f.name: pa.array(list(cols[f.name]), f.type)
                          if pa.types.is_fixed_size_list(f.type)
                          else pa.array(cols[f.name]).cast(f.type)
                          for f in sch if f.name in cols})  # fmt: skip
        pq.write_table(table, tmp_path / "data" / name / "part-0.parquet")
    models = tmp_path / "models"
    small = {"d": 4, "n_experts": 2, "expert_hidden": 8, "tower_hidden": 8}
    for name in ("lrtg", "hrm", "isp", "am"):
        cols = _random_columns(schemas[SPECS[name].dataset], 64, rng)
        if name == "isp":
            cols["treatment"] = rng.integers(0, 5, 64)
        over = {"d_model": 8, "n_layers": 1, "expert_hidden": 8} if name == "lrtg" else small
        mc = model_config(name, feature_dims(name, cols, spec), over, spec)
        norm = Normalizer.fit([SPECS[name].build(cols, spec)], SPECS[name].normalized)
        save_checkpoint(str(models / name), name, build_model(name, mc), mc, {}, norm, app=spec)
    q = QNetwork(QNetConfig(obs_dim=spec.obs_dim, n_actions=4, hidden=(8,)))
    save_checkpoint(str(models / "cql"), "cql", q, dataclasses.asdict(q.cfg), {}, None,
                    CQLRecord(), app=spec)  # fmt: skip
    dt = DecisionTransformer(DTConfig(obs_dim=spec.obs_dim, n_actions=4, context_len=2,
                                      embed_dim=8, n_heads=2, n_layers=1))  # fmt: skip
    save_checkpoint(str(models / "dt"), "dt", dt, dataclasses.asdict(dt.cfg), {}, None,
                    {"rtg_scale": 3600.0}, app=spec)  # fmt: skip
    return str(tmp_path / "data"), str(models)


def test_every_policy_of_a_4_page_apps_exports_is_evaluated_on_its_log(tmp_path):
    from glan_ray.apps import load_spec
    from glan_ray.eval.logged import glan_scores, run_logged_ope
    from glan_ray.policy.runner import ModelRunner

    data, models = _fourpage_run(tmp_path)
    spec = load_spec(os.path.join(os.path.dirname(__file__), "..", "..", "glan_ray", "apps",
                                  "fourpage.yaml"))  # fmt: skip
    values, log = run_logged_ope(data, models, spec, FAST)
    names = [v.policy for v in values]
    assert names == ["logging", "page:featured", "page:explore", "page:following", "page:mall",
                     "cql", "klan", "glan"]  # fmt: skip
    for v in values:
        assert np.isfinite([v.ips.value, v.snips.value, v.dr.value, v.fqe_day]).all(), v
    always_mall = values[4]  # uniform logging at 1/4: IPS = 4 × the mall sessions' reward / n
    mall = log.sessions["action"] == 3
    assert always_mall.ips.value == pytest.approx(4 * log.reward[mall].sum() / len(log.t))
    # the DT sees each day's earlier sessions: its logits at a day's first session are those
    # of the day alone, whatever came before in the log
    runner = ModelRunner(os.path.join(models, "dt"), "dt", app=spec)
    lrtg = ModelRunner(os.path.join(models, "lrtg"), "lrtg", app=spec)
    hrm = ModelRunner(os.path.join(models, "hrm"), "hrm", app=spec)
    full = glan_scores(log, runner, lrtg, hrm)
    assert full.shape == (len(log.t), 4)
    last = np.flatnonzero(log.episode == log.episode.max())
    alone = Logged({k: v[last] for k, v in log.sessions.items()},
                   {k: v[last] for k, v in log.daily.items()}, log.episode[last] * 0,
                   log.t[last], log.reward[last], False)  # fmt: skip
    np.testing.assert_allclose(glan_scores(alone, runner, lrtg, hrm), full[last], atol=1e-5)
