"""Typed export records: validated at export, read back typed, refused when wrong."""

from __future__ import annotations

import json
import os

import pytest
import torch

from glan_ray.models.checkpoint import save_checkpoint
from glan_ray.models.cql import QNetConfig, QNetwork
from glan_ray.models.exports import CQLRecord, DTRecord, ExportRecord, LRTGRecord, make_record
from glan_ray.policy.runner import ModelRunner


def test_records_check_their_fields_and_refuse_unknown_keys():
    assert make_record("dt", {}) == DTRecord(rtg_scale=3600.0, target_gain=1.0)
    assert make_record("lrtg", {"rel_a": 0.4, "rel_b": -0.2, "epoch": 2}).rel_a == 0.4
    assert type(make_record("hrm", {"epoch": 1, "metrics": {"auc": 0.7}})) is ExportRecord
    with pytest.raises(ValueError, match=r"DTRecord\.target_gain must be > 0; got -1"):
        make_record("dt", {"target_gain": -1})
    with pytest.raises(ValueError, match=r"CQLRecord: unknown field\(s\) temprature"):
        make_record("cql", {"temprature": 1.0})
    with pytest.raises(ValueError, match=r"LRTGRecord\.rel_a must be a finite number"):
        make_record("lrtg", {"rel_a": float("inf")})
    with pytest.raises(TypeError, match="a 'dt' export needs a DTRecord; got CQLRecord"):
        make_record("dt", CQLRecord())
    with pytest.raises(ValueError, match="unknown model 'gpt'"):
        make_record("gpt", {})


def _qnet() -> tuple[QNetwork, dict]:
    cfg = {"obs_dim": 28, "n_actions": 3, "hidden": [8]}
    return QNetwork(QNetConfig(obs_dim=28, n_actions=3, hidden=(8,))), cfg


def test_record_round_trips_through_an_export(tmp_path):
    net, cfg = _qnet()
    path = str(tmp_path / "cql")
    save_checkpoint(path, "cql", net, cfg, {}, None, CQLRecord(temperature=0.5))
    with open(os.path.join(path, "config.json")) as f:
        assert json.load(f)["extra"]["temperature"] == 0.5
    runner = ModelRunner(path, "cql")
    assert runner.record == CQLRecord(temperature=0.5)
    x = torch.zeros(2, 28)
    torch.testing.assert_close(runner.model(x), net.eval()(x))


def test_export_refuses_a_bad_record_before_writing(tmp_path):
    net, cfg = _qnet()
    with pytest.raises(ValueError, match=r"CQLRecord\.temperature must be > 0; got 0"):
        save_checkpoint(str(tmp_path / "bad"), "cql", net, cfg, {}, None, {"temperature": 0})
    assert not os.path.exists(tmp_path / "bad")
    with pytest.raises(TypeError, match="needs a CQLRecord; got DTRecord"):
        save_checkpoint(str(tmp_path / "bad"), "cql", net, cfg, {}, None, DTRecord())


def test_loading_an_export_with_a_wrong_record_names_the_path(tmp_path):
    net, cfg = _qnet()
    path = str(tmp_path / "cql")
    save_checkpoint(path, "cql", net, cfg, {}, None, {"temperature": 1.0})
    blob = torch.load(os.path.join(path, "model.pt"), weights_only=True)
    meta = json.loads(blob["meta"])
    meta["extra"]["temperature"] = -2.0  # an export edited by hand
    blob["meta"] = json.dumps(meta)
    torch.save(blob, os.path.join(path, "model.pt"))
    with pytest.raises(ValueError, match=r"cql: CQLRecord.temperature must be > 0; got -2"):
        ModelRunner(path, "cql")


def test_lrtg_record_defaults_are_unset():
    r = LRTGRecord()
    assert r.rel_a is None and r.rel_b is None and r.epoch is None
