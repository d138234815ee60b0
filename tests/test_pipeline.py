"""The whole pipeline end to end on the ``tiny`` preset: every stage runs on the shared Ray, the
report has every arm, a rerun skips finished stages, ``--from`` reruns from a stage."""

from __future__ import annotations

import json
import os

import pytest

from glan_ray.pipeline import STAGES, PipelineConfig, run_pipeline, stage_marker
from glan_ray.policy.registry import ARMS

pytestmark = pytest.mark.slow


def test_tiny_pipeline_runs_resumes_and_reports_every_arm(ray_session, tmp_path):
    cfg = PipelineConfig(run=str(tmp_path / "run"), preset="tiny")
    records = run_pipeline(cfg)
    assert [r["stage"] for r in records] == list(STAGES)
    assert all(r["status"] == "ran" and r["wall_s"] >= 0 for r in records)
    with open(cfg.path("report.md")) as f:
        report = f.read()
    for arm in ARMS:
        assert f"| {arm} |" in report
    for name in ("lrtg", "hrm", "isp", "am", "cql", "dt", "dt_naive"):
        assert os.path.exists(cfg.path("models", name, "model.pt"))
    with open(cfg.path("ab", "ab.json")) as f:
        assert set(json.load(f)["metrics"]) == set(ARMS)

    # a rerun does nothing; a lost marker (a killed stage) reruns that stage only
    os.remove(stage_marker(cfg, "evaluate"))
    again = run_pipeline(cfg)
    assert [r["status"] for r in again[:-1]] == ["skipped (done)"] * (len(STAGES) - 1)
    assert again[-1]["status"] == "ran"
    redo = run_pipeline(PipelineConfig(run=cfg.run, preset="tiny", first_stage="train_dt_naive"))
    assert [r["status"] for r in redo[-2:]] == ["ran", "ran"]


def test_pipeline_config_names_bad_values():
    with pytest.raises(ValueError, match="preset"):
        PipelineConfig(preset="huge")
    with pytest.raises(ValueError, match="stage"):
        PipelineConfig(first_stage="train_everything")
