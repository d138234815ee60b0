"""The whole pipeline end to end on the ``tiny`` preset: every stage runs on the shared Ray, the
report has every arm, a rerun skips finished stages, ``--from`` reruns from a stage."""

from __future__ import annotations

import json
import logging
import os
import socket
import urllib.request

import numpy as np
import pytest

from glan_ray.data.read import read_dataset
from glan_ray.pipeline import (
    ALL_STAGES,
    GEN1_STAGES,
    STAGES,
    PipelineConfig,
    run_pipeline,
    serve_models,
    stage_marker,
)
from glan_ray.policy.registry import ALIASES, ARMS, COMMAND_ARMS, CRITIC_GUIDED_ARMS
from glan_ray.schema import PAGES, SEQ_LEN

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny_run(ray_session, tmp_path_factory):
    """One tiny generation-0 run shared by this module's tests: (config, its records)."""
    cfg = PipelineConfig(run=str(tmp_path_factory.mktemp("tiny") / "run"), preset="tiny")
    return cfg, run_pipeline(cfg)


def test_tiny_pipeline_runs_resumes_and_reports_every_arm(tiny_run, caplog):
    cfg, records = tiny_run
    assert [r["stage"] for r in records] == list(STAGES)
    assert all(r["status"] == "ran" and r["wall_s"] >= 0 for r in records)
    with open(cfg.path("report.md")) as f:
        report = f.read()
    arms = set(ARMS) - set(ALIASES)  # an alias (cql = klan_iit) is not run twice
    arms -= set(CRITIC_GUIDED_ARMS)  # they join the demo's A/B once their λ is tuned
    arms -= set(COMMAND_ARMS)  # their DTs train only where ``only`` names their stages
    for arm in arms:
        assert f"| {arm} |" in report
    assert not any(f"| {arm} |" in report for arm in CRITIC_GUIDED_ARMS)
    for name in ("lrtg", "hrm", "isp", "am", "cql", "cql_static", "cql_hist", "dt", "dt_naive"):
        assert os.path.exists(cfg.path("models", name, "model.pt"))
    assert "klan_iit_hist" in arms and os.path.isdir(cfg.path("data", "transitions_hist"))
    with open(cfg.path("ab", "ab.json")) as f:
        summary = json.load(f)
    assert set(summary["metrics"]) == arms
    assert summary["protocol"]["burn_in_days"] == 2 and summary["protocol"]["aa_days"] == 1
    assert "### GLAN Table 1: GLAN vs KLAN" in report and "### KLAN Table 2" in report
    # the report names the world and opens with its premise diagnostics (the diagnose stage)
    assert "World: **default**" in report and "| history_gap_closed |" in report
    assert os.path.exists(cfg.path("diagnosis", "diagnosis.md"))
    assert summary["config"]["world"] == "default"

    # a rerun does nothing; a lost marker (a killed stage) reruns that stage only
    os.remove(stage_marker(cfg, "evaluate"))
    again = run_pipeline(cfg)
    assert [r["status"] for r in again[:-1]] == ["skipped (done)"] * (len(STAGES) - 1)
    assert again[-1]["status"] == "ran"
    # --from, run as Ray tasks (--parallel): the two stages in their order, each with its log
    caplog.set_level(logging.INFO)  # the tasks log at the driver's level
    redo = run_pipeline(
        PipelineConfig(run=cfg.run, preset="tiny", first_stage="train_dt_naive", parallel=2)
    )
    assert [r["status"] for r in redo[-2:]] == ["ran", "ran"]
    assert [r["status"] for r in redo[:-2]] == ["skipped (done)"] * (len(STAGES) - 2)
    with open(cfg.path("stages", "evaluate.log")) as f:
        assert "A/B tasks done" in f.read()

    # --serve: the run's models answer the loop over HTTP
    from ray import serve

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = serve_models(cfg, port=port)
    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=30) as r:
            assert r.status == 200
        three, month = [1.0, 1.0, 1.0], [1.0] * SEQ_LEN
        feats = {"age": 1, "region": 2, "activity": 1, "social_degree": 3.0, "weekday": 2,
                 "usage_7d": 600.0, "usage_30d": 600.0, "sessions_7d": 4.0, "sessions_30d": 4.0,
                 "page_dur_7d": three, "page_dur_14d": three, "page_entries_7d": three,
                 "page_entries_14d": three, "seq_sessions": month, "seq_usage": month}  # fmt: skip
        day = _post(f"{url}/users/7/day", {"event_id": "d", "day": 0, "features": feats})
        assert day["r1_s"] >= 0
        body = {"event_id": "e", "day": 0, "hour": 9.0, "live_count": 1}
        entry = _post(f"{url}/users/7/entry", body)
        assert entry["page"] in PAGES and len(entry["probs"]) == len(PAGES)
    finally:
        serve.shutdown()


@pytest.mark.heavy  # 140 s; its pieces (burn-in, policy factory, exploration, variants) are in CI
def test_generation_1_learns_from_the_exploring_incumbents_traffic(tiny_run):
    """--incumbent klan: the incumbent's log continues the training users, with ε-greedy
    propensities; the A/B's control is the incumbent; the report says who learned from what."""
    cfg, _ = tiny_run
    gen1 = run_pipeline(PipelineConfig(run=cfg.run, preset="tiny", incumbent="klan"))
    assert [r["stage"] for r in gen1] == [*STAGES, *GEN1_STAGES]
    assert [r["status"] for r in gen1[: len(STAGES)]] == ["skipped (done)"] * len(STAGES)
    assert all(r["status"] == "ran" for r in gen1[len(STAGES) :])
    logged = read_dataset(cfg.path("data_gen1"), "sessions").to_pandas()
    assert logged["day"].min() == cfg.sizes.days  # the training users' next days
    greedy = logged["propensity"] > 0.5  # epsilon=0.1: 1 - 0.1 * 2/3 on the argmax, else 0.1/3
    np.testing.assert_allclose(logged["propensity"], np.where(greedy, 1 - 0.2 / 3, 0.1 / 3),
                               rtol=1e-6)  # fmt: skip
    assert 0.02 < (~greedy).mean() < 0.15
    with open(cfg.path("gen1", "ab", "ab.json")) as f:
        summary1 = json.load(f)
    assert summary1["config"]["control"] == summary1["protocol"]["burn_in_arm"] == "incumbent"
    for arm in ("incumbent_explore", "glan", "glan_no_lrtg", "glan_no_hrm", "klan", "glan_gen0"):
        assert arm in summary1["metrics"]
    with open(cfg.path("gen1", "learned_from.json")) as f:
        learned = json.load(f)
    assert learned["glan"] == cfg.path("data_gen1") and learned["incumbent"] == cfg.path("data")
    assert os.path.exists(cfg.path("models_gen1", "isp", "model.pt"))
    with open(cfg.path("gen1", "report.md")) as f:
        assert "| glan | generation 1: the incumbent's log" in f.read()


def _post(url: str, body: dict) -> dict:
    req = urllib.request.Request(
        url, json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.load(r)


def test_eta_scales_the_remaining_stage_costs_by_the_measured_speed():
    from glan_ray.pipeline import STAGE_COST, eta_s

    assert set(STAGE_COST) == set(ALL_STAGES)
    assert eta_s({}, list(STAGES)) is None
    # simulate + train_lrtg ran twice as slowly as in the demo: the rest is expected likewise
    ran = {"simulate": 2 * STAGE_COST["simulate"], "train_lrtg": 2 * STAGE_COST["train_lrtg"]}
    left = eta_s(ran, ["train_dt", "evaluate"])
    assert left == pytest.approx(2 * (STAGE_COST["train_dt"] + STAGE_COST["evaluate"]))
    assert eta_s(ran, []) == 0.0


def test_stage_dependencies_precede_each_stage_and_eta_schedules_them_in_parallel(monkeypatch):
    from glan_ray import pipeline
    from glan_ray.pipeline import DEPENDS, eta_s

    assert set(DEPENDS) == set(ALL_STAGES)
    for stage, deps in DEPENDS.items():
        assert all(ALL_STAGES.index(d) < ALL_STAGES.index(stage) for d in deps), stage
    assert set(DEPENDS["evaluate"]) == set(STAGES) - {"evaluate"}
    assert "train_dt" in DEPENDS["evaluate_gen1"]  # generation 0's GLAN plays in it
    assert DEPENDS["train_dt_naive"] == ("label_hrm",)  # label_hrm rewrites its trajectories
    cost = dict.fromkeys(STAGES, 0.0) | {"simulate": 1, "train_hrm": 10, "label_hrm": 1,
                                         "train_cql": 4, "train_dt": 20, "train_dt_naive": 20,
                                         "evaluate": 5}  # fmt: skip
    monkeypatch.setattr(pipeline, "STAGE_COST", cost)
    ran = {"simulate": 2.0}  # twice the listed cost: everything else is expected at 2x
    rest = ["train_hrm", "label_hrm", "train_cql", "train_dt", "train_dt_naive", "evaluate"]
    # two slots, in 2x seconds: A hrm 0-20, label 20-22, dt 22-62, evaluate 62-72;
    # B cql 0-8, dt_naive 22-62 (waits for label)
    assert eta_s(ran, rest, width=2) == pytest.approx(72.0)
    assert eta_s(ran, rest, width=1) == pytest.approx(2 * (10 + 1 + 4 + 20 + 20 + 5))


def test_pipeline_config_names_bad_values():
    with pytest.raises(ValueError, match="preset"):
        PipelineConfig(preset="huge")
    with pytest.raises(ValueError, match="stage"):
        PipelineConfig(first_stage="train_everything")
    with pytest.raises(ValueError, match="parallel"):
        PipelineConfig(parallel=0)
