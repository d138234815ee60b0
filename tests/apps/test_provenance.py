"""Datasets and models carry their app spec (issue 30): a manifest's spec read back, an old one
read as the PLPM app, exports recording the spec of their training data, a model refused on data
or in a Serve app of another spec with the difference named, and models sized from a 4-page
spec. Only the last test starts Ray (an ingested 4-page dataset read and fed to the stages)."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
from importlib import resources
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import ray
import torch

from glan_ray.apps import AppSpec, load_spec, plpm_spec
from glan_ray.data import decision_log as dlog
from glan_ray.data.read import dataset_spec, spec_manifest
from glan_ray.models.app_check import AppMismatchError, check_export, require_same_app
from glan_ray.models.checkpoint import save_checkpoint
from glan_ray.models.cql import QNetConfig, QNetwork
from glan_ray.models.critic_labels import QLabeller
from glan_ray.models.exports import CQLRecord, DTRecord, ExportRecord, make_record
from glan_ray.models.registry import build_model, model_config
from glan_ray.policy.runner import ModelRunner
from glan_ray.schema import DatasetValidationError

PLPM_PAGES = "['featured', 'explore', 'following']"
SHOP_PAGES = "['featured', 'explore', 'following', 'mall']"


FOURPAGE = str(resources.files("glan_ray.apps").joinpath("fourpage.yaml"))


def shop() -> AppSpec:
    """The PLPM app with a fourth page, 'mall' (every per-page feature gains a component)."""
    d = plpm_spec().to_dict()
    d["name"] = "shop"
    d["pages"] = [*d["pages"], "mall"]
    return AppSpec.from_dict(d)


def _write_manifest(root: str, manifest: dict[str, Any]) -> str:
    os.makedirs(os.path.join(root, "sessions"), exist_ok=True)
    with open(os.path.join(root, "manifest.json"), "w") as f:
        json.dump(manifest, f)
    return root


def _cql_export(path: str, app: AppSpec | None, history: tuple[str, ...] = ()) -> str:
    """A small Q-network export sized from ``app`` (recording it; None: an old export)."""
    spec = app or plpm_spec()
    net = QNetwork(QNetConfig(obs_dim=spec.obs_dim, n_actions=spec.n_pages, hidden=(4,)))
    cfg = dataclasses.asdict(net.cfg)
    save_checkpoint(path, "cql", net, cfg, {"reward_scale": 1e-3}, None,
                    CQLRecord(history_features=history), app=app)  # fmt: skip
    return path


# ---- datasets ----


def test_a_manifest_records_the_spec_and_reads_it_back(tmp_path):
    root = _write_manifest(str(tmp_path / "data"), {"source": "ingest", **spec_manifest(shop())})
    assert dataset_spec(root) == shop()
    assert dataset_spec(os.path.join(root, "sessions")) == shop()  # a dataset's own directory
    with open(os.path.join(root, "manifest.json")) as f:
        assert json.load(f)["spec_fingerprint"] == shop().fingerprint()


def test_an_old_manifest_without_a_spec_reads_as_plpm_and_says_so(tmp_path, caplog):
    old = _write_manifest(str(tmp_path / "old"), {"sim_config": {}, "summary": {}})
    with caplog.at_level(logging.INFO, logger="glan_ray.data.read"):
        assert dataset_spec(old) == plpm_spec()
    assert "records no app spec" in caplog.text and "PLPM" in caplog.text
    none = tmp_path / "none"
    none.mkdir()
    assert dataset_spec(str(none)) == plpm_spec()  # no manifest at all


def test_an_edited_manifest_spec_is_refused(tmp_path):
    m = {**spec_manifest(shop()), "spec_fingerprint": plpm_spec().fingerprint()}
    root = _write_manifest(str(tmp_path / "data"), m)
    with pytest.raises(DatasetValidationError, match=r"field 'spec_fingerprint'.*edited"):
        dataset_spec(root)


def test_a_decision_log_of_another_app_is_refused_naming_the_field():
    lists = {"page_dur_7d": 3, "page_dur_14d": 3, "page_entries_7d": 3, "page_entries_14d": 3,
             "seq_sessions": 30, "seq_usage": 30}  # fmt: skip
    feats = {k: [0.0] * lists[k] if k in lists else 0 for k in dlog.DAY_KEYS}
    start = dlog.DayStart(7, 0, "d0", feats, app=shop().fingerprint())
    with pytest.raises(dlog.DecisionLogError, match=r"day event 'd0' of user 7 day 0: field 'app'"):
        dlog.to_datasets([start])
    plain = dlog.DayStart(7, 0, "d0", feats)  # an old log (no app): the PLPM app's
    assert dlog.to_datasets([plain]).spec == plpm_spec()
    with pytest.raises(dlog.DecisionLogError, match="4 and 32"):  # sized for schema.py's app
        dlog.to_datasets([dataclasses.replace(plain, app=shop().fingerprint())], shop())


# ---- exports ----


def test_an_export_records_the_spec_of_its_training_data(tmp_path):
    path = _cql_export(str(tmp_path / "cql"), shop())
    with open(os.path.join(path, "config.json")) as f:
        extra = json.load(f)["extra"]
    assert extra["app_fingerprint"] == shop().fingerprint() and extra["app_spec"]["name"] == "shop"
    runner = ModelRunner(path, "cql", app=shop())
    assert runner.record.app == shop()
    assert runner.model(torch.zeros(2, shop().obs_dim)).shape == (2, 4)  # (B, pages)
    old = _cql_export(str(tmp_path / "old"), None)  # before specs were recorded: PLPM
    assert ModelRunner(old, "cql").record.app == plpm_spec()


def test_a_record_refuses_a_fingerprint_that_is_not_its_specs():
    with pytest.raises(ValueError, match=r"ExportRecord.app_fingerprint 'abc' without its"):
        ExportRecord(app_fingerprint="abc")
    with pytest.raises(ValueError, match=r"CQLRecord.app_fingerprint 'abc' is not its app_spec's"):
        make_record("cql", {"app_spec": shop().to_dict(), "app_fingerprint": "abc"})
    # a DT's command head has the app's obs_dim + 1 coefficients
    assert len(DTRecord(command=(0.0,) * 33, app_spec=shop().to_dict()).command) == 33
    with pytest.raises(ValueError, match="must be empty or 29 finite"):
        DTRecord(command=(0.0,) * 33)


# ---- the refusal names the difference ----


def test_a_model_on_a_dataset_of_another_spec_names_the_difference(tmp_path):
    model = _cql_export(str(tmp_path / "models" / "cql"), None)  # trained on PLPM data
    data = _write_manifest(str(tmp_path / "shop"), spec_manifest(shop()))
    with pytest.raises(AppMismatchError) as e:
        check_export(model, dataset_spec(data), f"the dataset {data}")
    msg = str(e.value)
    assert msg.startswith(f"model {model} was trained on app 'plpm' (fingerprint "
                          f"{plpm_spec().fingerprint()}) but the dataset {data} is app 'shop' "
                          f"(fingerprint {shop().fingerprint()}): name: 'plpm' vs 'shop'; "
                          f"pages: {PLPM_PAGES} vs {SHOP_PAGES}")  # fmt: skip
    assert "observation: 28 vs 32 features" in msg
    with pytest.raises(AppMismatchError, match=r"but the q_labels data is app 'shop'"):
        QLabeller(model, app=shop())  # the DT's critic labelling another app's trajectories
    check_export(model, plpm_spec(), "the dataset")  # the same app passes


def test_a_model_of_another_spec_is_refused_by_the_serve_app(tmp_path):
    from glan_ray.serving.deployments import check_export_app

    model = _cql_export(str(tmp_path / "cql"), shop())
    with pytest.raises(AppMismatchError, match=rf"was trained on app 'shop' .* but the Serve app "
                       rf"is app 'plpm' .*pages: {re.escape(SHOP_PAGES)} vs"):  # fmt: skip
        check_export_app(model)
    with pytest.raises(AppMismatchError, match="but the app it is used in is app 'plpm'"):
        ModelRunner(model, "cql")  # a policy in the simulator
    check_export_app(_cql_export(str(tmp_path / "plpm"), plpm_spec()))


def test_two_spellings_of_one_spec_are_the_same_app():
    respelled = AppSpec.from_dict({**plpm_spec().to_dict(), "dropoff_s": 40})  # int, not float
    require_same_app(plpm_spec(), respelled, model="m", where="w")


# ---- sized from the spec ----


def test_models_built_from_a_4_page_spec_have_4_page_outputs():
    dims = {"n_num": 5, "n_cat": 3}
    small = {"d": 4, "n_experts": 2, "expert_hidden": 8, "tower_hidden": 8}
    hrm_cfg = model_config("hrm", dims, small, shop())
    assert hrm_cfg["n_pages"] == 4 and hrm_cfg["page_groups"] == (0, 1, 2, 3)
    assert model_config("hrm", dims, small)["page_groups"] == (0, 1, 1)  # PLPM: the paper's
    x_cat, x_num = torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, 5)
    out = build_model("hrm", hrm_cfg)(x_cat, x_num, torch.tensor([0, 3]))
    assert out["dur"].shape == (2, 4)  # (B, P) a duration tower per page
    am = build_model("am", model_config("am", dims, small, shop()))
    assert am(x_cat, x_num)["w"].shape == (2, 4)


def test_the_supervised_models_embed_the_apps_categorical_fields():
    lrtg_dims = {"n_num": 5, "seq_dim": 2, "seq_len": 30}
    # PLPM: the simulator's fields in its order, with the models' wider vocabularies, as before
    assert model_config("lrtg", lrtg_dims, {})["cat_cardinalities"] == [16, 64, 8, 7]
    assert model_config("hrm", {"n_num": 5}, {})["cat_cardinalities"] == [16, 64, 8]
    four = load_spec(FOURPAGE)  # city_tier (5), gender (3); weekday for L-RTG and ISP
    assert model_config("lrtg", lrtg_dims, {}, four)["cat_cardinalities"] == [5, 3, 7]
    assert model_config("am", {"n_num": 5}, {}, four)["cat_cardinalities"] == [5, 3]
    d = plpm_spec().to_dict()
    d["features"]["profile"][1]["cardinality"] = 20  # age, wider than the default 16
    assert model_config("isp", {"n_num": 5}, {}, AppSpec.from_dict(d))["cat_cardinalities"] == [
        20, 64, 8, 7]  # fmt: skip
    d["features"]["profile"] = [p for p in d["features"]["profile"] if p["kind"] == "numeric"]
    with pytest.raises(ValueError, match="hrm: app 'plpm' has no categorical profile field"):
        model_config("hrm", {"n_num": 5}, {}, AppSpec.from_dict(d))
    assert model_config("lrtg", lrtg_dims, {}, AppSpec.from_dict(d))["cat_cardinalities"] == [7]


def test_the_supervised_features_read_the_apps_columns():
    from glan_ray.data.features import SPECS, model_inputs

    four = load_spec(FOURPAGE)
    inputs = model_inputs(four)
    assert inputs.numeric == (("tenure_days", "log1p"), ("followers", "log1p"))
    assert ("usage_3d", 3600.0) in inputs.statistics and inputs.inputs == (("cart_items", True),)
    n, p = 2, four.n_pages
    cols: dict[str, Any] = {"city_tier": np.array([4, 0]), "gender": np.array([2, 1]),
                            "tenure_days": np.array([0.0, np.e - 1]), "followers": np.zeros(n),
                            "hour": np.array([6.0, 18.0]), "entries_today": np.array([0, 3]),
                            "cart_items": np.array([0, 4]), "today_dur": np.full((n, p), 600.0),
                            "video_views": np.zeros((n, p)), "n_switches": np.array([1, 0]),
                            "action": np.array([3, 0])}  # fmt: skip
    for name, _ in inputs.statistics:
        cols[name] = np.ones((n, p)) if name.startswith("page_") else np.full(n, 7200.0)
    f = SPECS["hrm"].build(cols, four)
    # numeric profile 2 + stats (7 scalars, 4 per-page lists of 4) + context (sin, cos,
    # entries, cart, today_dur ×4) + session (views ×4, switches)
    assert f["x_num"].shape == (n, 2 + 7 + 4 * 4 + 4 + 4 + 4 + 1)
    assert f["x_cat"].tolist() == [[4, 2], [0, 1]] and f["page"].tolist() == [3, 0]
    assert f["x_num"][1, 0] == pytest.approx(1.0)  # log1p(e − 1)
    assert f["x_num"][0, 2] == pytest.approx(2.0)  # usage_7d in hours
    cols["city_tier"] = np.array([5, 0])  # outside the spec's cardinality 5
    with pytest.raises(DatasetValidationError, match=r"column 'city_tier': 1 rows outside the "
                       r"vocabulary \[0, 5\)"):  # fmt: skip
        SPECS["hrm"].build(cols, four)


def test_the_rl_policies_spaces_come_from_the_spec():
    from glan_ray.rllib.cql.cql import DiscreteCQLConfig
    from glan_ray.rllib.dt.dt import DTConfig
    from glan_ray.rllib.dt.torch.dt_torch_rl_module import dt_config
    from glan_ray.schema import HIST_DIM

    cql = DiscreteCQLConfig().set_app(shop())
    assert cql.observation_space.shape == (32,) and cql.action_space.n == 4
    assert cql.training(history=True).observation_space.shape == (32 + HIST_DIM,)
    plpm = DiscreteCQLConfig()
    assert plpm.observation_space.shape == (28,) and plpm.action_space.n == 3  # as before
    dt = DTConfig().set_app(shop())
    net = dt_config({"context_len": 4}, dt.observation_space, dt.action_space)
    assert (net.obs_dim, net.n_actions) == (32, 4)
    assert dt.app == shop() and DTConfig().app == plpm_spec()


def _shop_events() -> pa.Table:
    """Raw events of 3 users over 2 days (glan_ray.ingest's contract): every page visited."""
    rows: dict[str, list[Any]] = {k: [] for k in ("user_id", "ts", "page", "dwell_s", "views",
                                                  "propensity", "live_count")}  # fmt: skip
    pages = shop().pages
    for u in range(3):
        for d in range(2):
            t = (20_000 + d) * 86_400.0 + 3600.0 * (u + 1)
            for s in range(2):  # two sessions a day, two visits each
                for v in range(2):
                    dwell = 30.0 + 60.0 * ((u + d + s + v) % 3)
                    for k, x in zip(rows, (u, t, pages[(u + d + 2 * s + v) % 4], dwell, v, 0.25,
                                           s), strict=True):  # fmt: skip
                        rows[k].append(x)
                    t += dwell + 5.0
                t += 3 * 3600.0
    events = pa.table(rows)
    ids = events.column("user_id").to_pylist()
    for k, v in {"activity": [i % 4 for i in ids], "age": [i % 6 for i in ids],
                 "region": [i % 8 for i in ids],
                 "social_degree": [float(i) for i in ids]}.items():  # fmt: skip
        events = events.append_column(k, pa.array(v))
    return events


def test_the_cql_pre_learner_validates_its_batches_against_the_apps_schema():
    from glan_ray.rllib.cql.cql import DiscreteCQLConfig
    from glan_ray.rllib.cql.prelearner import TransitionsPreLearner
    from glan_ray.schema import schemas_for

    obs = [[0.1 * i] * 32 for i in range(2)]
    rows = {"user_id": [1, 2], "day": [0, 0], "weekday": [0, 0], "session_idx": [0, 0],
            "obs": obs, "action": [3, 1], "reward": [60.0, 5.0], "next_obs": obs,
            "done": [True, True], "hour": [9.0, 20.0], "entries_today": [0, 0],
            "propensity": [0.25, 0.25]}  # fmt: skip
    table = pa.table(rows, schema=schemas_for(shop())["transitions"])
    batch = TransitionsPreLearner(config=DiscreteCQLConfig().set_app(shop()))(table)
    assert batch["default_policy/obs"].shape == (2, 32)  # (B, obs_dim)
    assert batch["default_policy/actions"].tolist() == [3, 1]  # the fourth page is an action
    with pytest.raises(DatasetValidationError, match=r"column 'obs': has type .*\[32\], "
                       r"expected fixed_size_list<item: float>\[28\]"):  # fmt: skip
        TransitionsPreLearner(config=DiscreteCQLConfig())(table)  # a PLPM run refuses it


# ~50 s under load on the 2-core box (ingest, two validated reads); the pre-learner's schema and
# the sizes are checked without Ray above, ingest itself in tests/ingest
@pytest.mark.heavy
def test_an_ingested_4_page_dataset_is_read_and_fed_to_4_page_stages(ray_session, tmp_path):
    from glan_ray.data.features import SPECS, as_columns, feature_dims
    from glan_ray.data.read import read_dataset
    from glan_ray.ingest import ingest
    from glan_ray.rllib.cql.cql import DiscreteCQLConfig
    from glan_ray.rllib.cql.prelearner import TransitionsPreLearner

    pq.write_table(_shop_events(), tmp_path / "events.parquet")
    out = str(tmp_path / "shop")
    ingest(shop(), str(tmp_path / "events.parquet"), out)
    app = dataset_spec(out)
    assert app == shop()
    # read and validated against the app's schema: obs 32 wide, 4 pages
    transitions = pa.concat_tables(ray.get(read_dataset(out, "transitions").to_arrow_refs()))
    cfg = DiscreteCQLConfig().set_app(app)
    assert cfg.action_space.n == 4
    out_cql = TransitionsPreLearner(config=cfg)(transitions)  # conformed to the app's schema
    batch = {k.split("/")[-1]: v for k, v in out_cql.items()}
    assert batch["obs"].shape == (transitions.num_rows, 32)  # (B, obs_dim)
    assert set(batch["actions"].tolist()) <= {0, 1, 2, 3}
    sessions = as_columns(pa.concat_tables(ray.get(read_dataset(out, "sessions").to_arrow_refs())))
    cfg_hrm = model_config("hrm", feature_dims("hrm", sessions, app), {"d": 4}, app)
    feats = SPECS["hrm"].build(sessions, app)
    out_hrm = build_model("hrm", cfg_hrm)(*(torch.from_numpy(feats[k]) for k in
                                            ("x_cat", "x_num", "page")))  # fmt: skip
    assert out_hrm["dur"].shape == (len(feats["page"]), 4)  # (B, pages)


def test_a_simulated_world_that_departs_from_the_recorded_plpm_spec_is_named():
    from glan_ray.data.generate import spec_mismatches
    from glan_ray.sim.config import SimConfig

    assert spec_mismatches(SimConfig(), plpm_spec()) == []  # the default world is the spec
    assert spec_mismatches(SimConfig(tau=60.0, n_ages=8), plpm_spec()) == [
        "tau is 60 s but the recorded spec's dropoff_s is 40 s",
        "n_ages is 8 but the recorded spec's age cardinality is 6",
    ]
