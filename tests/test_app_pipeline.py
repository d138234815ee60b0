"""The pipeline on an app's own raw events (``PipelineConfig.events``): a synthetic 4-page app
(glan_ray/apps/fourpage.yaml) is ingested, every model trains on it sized from its spec, and
the policies are evaluated off-policy on its logged sessions; no simulator is involved."""

from __future__ import annotations

import json
import os
import socket
from importlib import resources

import numpy as np
import pytest
import requests

from glan_ray.apps import load_spec
from glan_ray.models.checkpoint import load_checkpoint
from glan_ray.pipeline import APP_STAGES, PipelineConfig, run_pipeline
from glan_ray.sim.app_generator import AppWorld, write_events

FOURPAGE = str(resources.files("glan_ray.apps").joinpath("fourpage.yaml"))


@pytest.fixture(scope="module")
def app_run(ray_session, tmp_path_factory):
    """A tiny run on 120 users × 5 days of the 4-page app's events: (config, records)."""
    root = tmp_path_factory.mktemp("fourpage")
    write_events(load_spec(FOURPAGE), AppWorld(users=120, days=5, seed=3), str(root / "ev"))
    cfg = PipelineConfig(run=str(root / "run"), preset="tiny", events=str(root / "ev" / "events"),
                         spec=FOURPAGE, users=str(root / "ev" / "users.parquet"))  # fmt: skip
    return cfg, run_pipeline(cfg)


@pytest.mark.slow
def test_every_stage_runs_on_an_ingested_4_page_app(app_run):
    cfg, records = app_run
    assert [r["stage"] for r in records] == list(APP_STAGES)
    assert all(r["status"] == "ran" for r in records)
    spec = load_spec(FOURPAGE)
    for name in ("lrtg", "hrm", "isp", "am", "cql", "dt"):
        _, _, meta = load_checkpoint(cfg.path("models", name))
        assert meta["extra"]["app_fingerprint"] == spec.fingerprint(), name
    _, _, hrm = load_checkpoint(cfg.path("models", "hrm"))
    assert hrm["model_config"]["n_pages"] == 4
    assert hrm["model_config"]["cat_cardinalities"] == [5, 3]  # city_tier, gender
    with open(cfg.path("ope", "ope.json")) as f:
        ope = json.load(f)
    names = [p["policy"] for p in ope["policies"]]
    assert names == ["logging", *(f"page:{p}" for p in spec.pages), "cql", "klan", "glan"]
    for p in ope["policies"]:
        for est in ("ips", "snips", "dr"):
            e = p[est]
            assert np.isfinite([e["value"], e["lo"], e["hi"]]).all() and e["lo"] <= e["hi"], p
    logging_policy = ope["policies"][0]
    assert logging_policy["ips"]["value"] == pytest.approx(logging_policy["snips"]["value"])
    with open(cfg.path("report.md")) as f:
        report = f.read()
    assert "# glan-ray on app 'fourpage'" in report and "| page:mall |" in report
    assert "## Off-policy evaluation on the logged sessions" in report
    assert "| train_isp |" in report and "A/B" not in report.split("## Off-policy")[0]

    # --serve: the trained 4-page models answer over HTTP with the app's generated bodies
    from ray import serve

    from glan_ray.pipeline import serve_models
    from glan_ray.serving.app_bodies import bodies_for

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = serve_models(cfg, port=port)
    try:
        doc = requests.get(f"{url}/openapi.json", timeout=60).json()
        assert "cart_items" in doc["components"]["schemas"]["Entry"]["properties"]
        feats = bodies_for(spec).start_day.model_json_schema()["examples"][0]["features"]
        r = requests.post(f"{url}/users/3/day", timeout=60,
                          json={"event_id": "d", "day": 9, "features": feats})  # fmt: skip
        assert r.status_code == 200 and r.json()["source"] == "lrtg", r.text
        r = requests.post(f"{url}/users/3/entry", timeout=60,
                          json={"event_id": "e", "day": 9, "hour": 20.0, "cart_items": 2})
        assert r.status_code == 200, r.text
        assert r.json()["page"] in spec.pages and len(r.json()["probs"]) == 4
        r = requests.post(f"{url}/users/3/entry", timeout=60,
                          json={"event_id": "e2", "day": 9, "hour": 20.0, "live_count": 2})
        assert r.status_code == 422 and "cart_items" in r.text  # the PLPM field is not this app's
    finally:
        serve.shutdown()


def test_an_app_run_needs_its_spec_and_has_no_simulator(tmp_path):
    with pytest.raises(ValueError, match="events and spec go together"):
        PipelineConfig(run=str(tmp_path), events="ev")
    with pytest.raises(ValueError, match="--incumbent and --world are the simulator's"):
        PipelineConfig(run=str(tmp_path), events="ev", spec=FOURPAGE, incumbent="klan")
    with pytest.raises(ValueError, match="users: only with --events"):
        PipelineConfig(run=str(tmp_path), users="u.parquet")
    cfg = PipelineConfig(run=str(tmp_path), preset="tiny", events="ev", spec=FOURPAGE)
    assert cfg.stages == APP_STAGES and cfg.depends("train_hrm") == ("ingest",)
    assert os.path.basename(cfg.path("report.md")) == "report.md"
