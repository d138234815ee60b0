"""A Serve app of another app spec, end to end: tiny untrained exports of the 4-page app
(``glan_ray/apps/fourpage.yaml``: a Mall page, other profile fields and statistics windows, a
``cart_items`` input) are served over HTTP with that app's bodies, observations and pages, and a
models directory whose exports disagree on the app is refused before any replica starts."""

from __future__ import annotations

import dataclasses
import os
import pathlib

import numpy as np
import pyarrow as pa
import pytest
import requests
import torch

from glan_ray.apps import load_spec
from glan_ray.models.app_check import AppMismatchError
from glan_ray.schema import schemas_for
from tests.serving.conftest import app_args

pytestmark = pytest.mark.slow

SPEC = load_spec(pathlib.Path(__file__).parents[2] / "glan_ray/apps/fourpage.yaml")
PAGES4 = ["featured", "explore", "following", "mall"]


def _columns(schema: pa.Schema, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Random values of each column of ``schema`` (integers 0 or 1: valid for every
    categorical, page index and label)."""
    out: dict[str, np.ndarray] = {}
    for f in schema:
        t = f.type
        shape = (n, t.list_size) if pa.types.is_fixed_size_list(t) else (n,)
        base = t.value_type if pa.types.is_fixed_size_list(t) else t
        if pa.types.is_list(t):
            continue  # page_seq: not a model input
        if pa.types.is_integer(base):
            out[f.name] = rng.integers(0, 2, shape)
        elif pa.types.is_boolean(base):
            out[f.name] = np.ones(shape, dtype=bool)
        else:
            out[f.name] = rng.uniform(0, 100, shape).astype(np.float32)
    return out


def fourpage_models(out: str, with_supervised: bool = True) -> str:
    """Tiny untrained exports of the 4-page app: DT, and L-RTG and HRM on random columns named
    as its datasets (``schemas_for``), each recording the app's spec."""
    from glan_ray.data.features import SPECS, Normalizer, feature_dims
    from glan_ray.models.checkpoint import save_checkpoint
    from glan_ray.models.dt import DecisionTransformer, DTConfig
    from glan_ray.models.registry import build_model, model_config

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    cfg = DTConfig(obs_dim=SPEC.obs_dim, n_actions=SPEC.n_pages, context_len=4, embed_dim=8,
                   n_heads=2, n_layers=1)  # fmt: skip
    dt = DecisionTransformer(cfg)
    save_checkpoint(os.path.join(out, "dt"), "dt", dt, dataclasses.asdict(dt.cfg), {}, None,
                    {"rtg_scale": 3600.0}, app=SPEC)  # fmt: skip
    if not with_supervised:
        return out
    small = {"d": 4, "n_experts": 2, "expert_hidden": 8, "tower_hidden": 8}
    for name in ("lrtg", "hrm"):
        cols = _columns(schemas_for(SPEC)[SPECS[name].dataset], 64, rng)
        over = {"d_model": 8, "n_layers": 1, "expert_hidden": 8} if name == "lrtg" else small
        mc = model_config(name, feature_dims(name, cols, SPEC), over, SPEC)
        norm = Normalizer.fit([SPECS[name].build(cols, SPEC)], SPECS[name].normalized)
        save_checkpoint(os.path.join(out, name), name, build_model(name, mc), mc, {}, norm,
                        app=SPEC)  # fmt: skip
    return out


@pytest.fixture(scope="module")
def fourpage_dir(tmp_path_factory) -> pathlib.Path:
    """The 4-page app's directory: its exports (``models``) and its state (``state.db``)."""
    return tmp_path_factory.mktemp("fourpage")


@pytest.fixture(scope="module")
def fourpage_server(serve_http, fourpage_dir) -> str:
    from ray import serve

    from glan_ray.serving.app import build_app

    tmp = fourpage_dir
    models = fourpage_models(str(tmp / "models"))
    serve.run(build_app(app_args(models, tmp)), name="fourpage", route_prefix="/fourpage")
    yield f"{serve_http}/fourpage"
    serve.delete("fourpage")


def _features() -> dict:
    from glan_ray.serving.app_bodies import bodies_for

    return bodies_for(SPEC).start_day.model_json_schema()["examples"][0]["features"]


def test_a_day_of_the_four_page_app_over_http(fourpage_server):
    base = fourpage_server
    doc = requests.get(f"{base}/openapi.json", timeout=60).json()
    assert "cart_items" in doc["components"]["schemas"]["Entry"]["properties"]
    r = requests.post(f"{base}/users/7/day", timeout=60,
                      json={"event_id": "d", "day": 3, "features": _features(),
                            "last_exit_page": "mall"})  # fmt: skip
    assert r.status_code == 200, r.text
    assert r.json()["source"] == "lrtg" and np.isfinite(r.json()["r1_s"])
    rewards = []
    for t, cart in enumerate((0, 3, 1)):
        r = requests.post(f"{base}/users/7/entry", timeout=60,
                          json={"event_id": f"e{t}", "day": 3, "hour": 9.0 + t,
                                "cart_items": cart})  # fmt: skip
        assert r.status_code == 200, r.text
        got = r.json()
        assert len(got["probs"]) == 4 and sum(got["probs"]) == pytest.approx(1.0)
        assert got["page"] == PAGES4[got["page_index"]] and got["session_idx"] == t
        assert got["probs"][got["page_index"]] == 1.0 and got["propensity"] == 1.0  # greedy
        assert got["page_index"] == int(np.argmax(got["policy_probs"]))
        landing = got["page"]
        r = requests.post(f"{base}/users/7/session_end", timeout=60, json={
            "event_id": f"s{t}", "day": 3, "page_durations_s": [40.0, 0.0, 0.0, 70.0],
            "video_views": [2, 0, 0, 3], "n_switches": 1, "usage_time": 120.0,
            "exit_page": "mall", "page_seq": [landing, "mall"]})  # fmt: skip
        assert r.status_code == 200, r.text
        assert r.json()["sessions"] == t + 1 and np.isfinite(r.json()["reward_s"])
        rewards.append(r.json()["reward_s"])
    state = requests.get(f"{base}/users/7/state", timeout=60).json()
    assert state["sessions"] == 3 and state["rewards_s"] == pytest.approx(rewards)
    assert all(0 <= a < 4 for a in state["actions"]) and not state["open_entry"]


def test_the_four_page_apps_client_mistakes_are_422s_naming_the_field(fourpage_server):
    base = fourpage_server
    day = {"event_id": "d", "day": 1, "features": _features()}
    r = requests.post(f"{base}/users/8/day", json=day, timeout=60)
    assert r.status_code == 200, r.text
    r = requests.post(f"{base}/users/8/entry", json={"event_id": "e", "day": 1, "hour": 9.0},
                      timeout=60)  # fmt: skip
    assert r.status_code == 422 and "cart_items" in r.text
    r = requests.post(f"{base}/users/8/entry", timeout=60,
                      json={"event_id": "e", "day": 1, "hour": 9.0, "live_count": 1,
                            "cart_items": 1})  # fmt: skip
    assert r.status_code == 422 and "live_count" in r.text  # the PLPM app's field: unknown here
    r = requests.post(f"{base}/users/8/entry", timeout=60,
                      json={"event_id": "e", "day": 1, "hour": 9.0, "cart_items": 1})
    assert r.status_code == 200, r.text
    end = {"event_id": "s", "day": 1, "page_durations_s": [40.0, 0.0, 0.0, 0.0],
           "video_views": [2, 0, 0, 0], "n_switches": 0, "usage_time": 50.0}  # fmt: skip
    r = requests.post(f"{base}/users/8/session_end", json={**end, "exit_page": "live"},
                      timeout=60)  # fmt: skip
    assert r.status_code == 422 and "exit_page" in r.text
    r = requests.post(f"{base}/users/8/session_end", timeout=60,
                      json={**end, "exit_page": "featured", "page_durations_s": [1.0, 2.0, 3.0]})
    assert r.status_code == 422 and "page_durations_s" in r.text  # the PLPM app's 3 pages
    bad = {"event_id": "d2", "day": 2, "features": {**_features(), "age": 1}}
    r = requests.post(f"{base}/users/8/day", json=bad, timeout=60)
    assert r.status_code == 422 and "age" in r.text


def test_a_day_started_by_another_apps_server_is_a_409(fourpage_server, fourpage_dir):
    """A user whose stored day was started by the PLPM app's server (its document has no
    ``app``: written before days recorded it): the 4-page app answers 409 until a new day."""
    import asyncio

    from glan_ray.serving.state import SQLiteStore

    doc = {"day": 5, "features": {}, "r1": 600.0, "open": None, "rewards": [], "obs": [],
           "hours": [], "actions": [], "today_dur": [0.0] * 3, "prev_drop": 0.0,
           "last_exit": 2, "events": {}}  # fmt: skip
    assert asyncio.run(SQLiteStore(str(fourpage_dir / "state.db")).put(9, doc, 0))
    base = fourpage_server
    r = requests.post(f"{base}/users/9/entry", timeout=60,
                      json={"event_id": "e", "day": 5, "hour": 9.0, "cart_items": 1})
    assert r.status_code == 409 and "another app spec" in r.text, r.text
    day = {"event_id": "d", "day": 6, "features": _features()}
    assert requests.post(f"{base}/users/9/day", json=day, timeout=60).status_code == 200
    r = requests.post(f"{base}/users/9/entry", timeout=60,
                      json={"event_id": "e", "day": 6, "hour": 9.0, "cart_items": 1})
    assert r.status_code == 200 and len(r.json()["probs"]) == 4, r.text


def test_any_of_the_four_pages_can_be_served():
    """The serving distribution and its draw cover every page of the app, the last too."""
    from glan_ray.policy.explore import Exploration, sample_pages

    pi = np.eye(4)
    for mode in ("greedy", "epsilon=0.2", "softmax"):
        probs = Exploration.parse(mode).probs(pi, 4)
        assert probs.shape == (4, 4) and np.allclose(probs.sum(1), 1.0)
        assert sample_pages(probs, np.full(4, 0.999))[3] == 3  # the last page's row
    assert sample_pages(Exploration().probs(pi, 4), np.full(4, 0.5)).tolist() == [0, 1, 2, 3]
    assert sample_pages(np.full((1, 4), 0.25), np.asarray([0.9])).tolist() == [3]
    with pytest.raises(ValueError, match=r"pi must have shape \(B, 3\)"):
        Exploration().probs(pi)  # the simulator's 3 pages unless told


def test_exports_of_two_apps_are_refused_before_any_replica(tmp_path, random_models):
    """A 4-page DT beside a PLPM HRM: the Serve app is the DT's app, and the HRM is refused
    when the app is built (served or not: every export of the directory), naming the
    difference."""
    import shutil

    from glan_ray.serving.app import build_app

    models = fourpage_models(str(tmp_path / "models"), with_supervised=False)
    shutil.copytree(os.path.join(random_models, "hrm"), os.path.join(models, "hrm"))
    with pytest.raises(AppMismatchError) as e:
        build_app(app_args(models, tmp_path))
    msg = str(e.value)
    assert f"model {models}/hrm was trained on app 'plpm'" in msg
    assert "but the Serve app is app 'fourpage'" in msg and "'mall'" in msg
    with pytest.raises(AppMismatchError, match="hrm was trained on app 'plpm'"):
        build_app(app_args(models, tmp_path, use_hrm=False))  # in the directory, even unserved
    shutil.rmtree(os.path.join(models, "hrm"))
    build_app(app_args(models, tmp_path))  # without it, the app builds


def test_klan_and_the_decision_log_are_refused_for_another_app(tmp_path):
    from glan_ray.serving.app import build_app
    from glan_ray.serving.ingress import parse_user_config

    with pytest.raises(ValueError, match="decision_log: the decision log records the PLPM"):
        parse_user_config({"decision_log": True}, SPEC)
    with pytest.raises(ValueError, match="policy klan serves the PLPM app only"):
        parse_user_config({"policy": "klan", "decision_log": False}, SPEC)
    assert parse_user_config({"decision_log": False}, SPEC)[3] is False
    models = fourpage_models(str(tmp_path / "models"), with_supervised=False)
    with pytest.raises(ValueError, match="app arg decision_log: the decision log records"):
        build_app(app_args(models, tmp_path, decision_log=True))
