"""The world sweep's parts, by hand: the grid and its checks, one cell's summary from an A/B,
the premise measures read from a diagnosis, Spearman's rank correlation, the map's report and
phase diagram. (The end-to-end sweep runs under ``-m heavy``.)"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import pytest

from glan_ray.eval.critic_lambda import LambdaPlay, tune_critic_lambda
from glan_ray.pipeline import PipelineConfig
from glan_ray.sweep.cell import (
    CELL_ARMS,
    CellResult,
    WorldSweepConfig,
    cell_name,
    premise_measures,
    summarize_cell,
)
from glan_ray.sweep.world_map import WorldMap, spearman, write_map


def test_grid_cells_specs_and_checks():
    cfg = WorldSweepConfig(out="/tmp/s", strengths=(0, 1), stochasticities=(0.5, 2))
    assert cfg.cells == [(0.0, 0.5), (0.0, 2.0), (1.0, 0.5), (1.0, 2.0)]
    assert cfg.spec(1.0, 2.0) == "premise:strength=1,stochasticity=2"
    assert cfg.spec(1.0, 1.0) == "premise"
    assert cfg.cell_dir(0.5, 2.0) == "/tmp/s/cells/s0.5_z2" and cell_name(0, 1) == "s0_z1"
    with pytest.raises(ValueError, match="stochasticity must be finite and > 0"):
        WorldSweepConfig(stochasticities=(0,))
    with pytest.raises(ValueError, match="preset: unknown 'huge'"):
        WorldSweepConfig(preset="huge")
    with pytest.raises(ValueError, match="concurrent must be >= 1"):
        WorldSweepConfig(concurrent=0)
    with pytest.raises(ValueError, match="lambdas: need at least two finite values >= 0"):
        WorldSweepConfig(lambdas=(0.0, float("inf")))


def test_pipeline_only_runs_a_closed_subset():
    cfg = PipelineConfig(run="/tmp/r", preset="tiny", only=("simulate", "train_cql"))
    assert cfg.stages == ("simulate", "train_cql")
    with pytest.raises(ValueError, match=r"read \['label_hrm'\]; add them"):
        PipelineConfig(run="/tmp/r", preset="tiny", only=("simulate", "train_dt"))
    with pytest.raises(ValueError, match=r"unknown stage\(s\) \['nope'\]"):
        PipelineConfig(run="/tmp/r", preset="tiny", only=("nope",))
    # a variant stage (ACT's DT) exists only where named, after the stages it reads
    assert "train_dt_act" not in PipelineConfig(run="/tmp/r", preset="tiny").stages
    act = PipelineConfig(run="/tmp/r", preset="tiny",
                         only=("train_dt_act", "simulate", "train_hrm", "label_hrm", "train_cql"))
    assert act.stages == ("simulate", "train_hrm", "label_hrm", "train_cql", "train_dt_act")
    with pytest.raises(ValueError, match=r"read \['train_cql'\]; add them"):
        PipelineConfig(run="/tmp/r", preset="tiny",
                       only=("simulate", "train_hrm", "label_hrm", "train_dt_act"))


def test_premise_measures_from_a_diagnosis():
    d = {"history": {"history_gain": 0.1, "gap_closed": 0.5}, "delay": {"delayed_share": 0.3},
         "consistency": {"ipw_paired_gain": 0.004, "ipw_gain": 9.0}}  # fmt: skip
    assert premise_measures(d) == {"history_gain": 0.1, "gap_closed": 0.5, "delayed_share": 0.3,
                                   "return_consistency": 0.004}  # fmt: skip


def test_spearman_by_hand():
    # ranks x: 1 2 3 4, y: 1 3 2 4 -> d² = 0+1+1+0 = 2 -> 1 - 6*2/(4*15) = 0.8
    assert spearman([1, 2, 3, 4], [10, 30, 20, 40]) == pytest.approx(0.8)
    assert spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 2], [1, 2]) is None  # fewer than 3 pairs
    assert spearman([1, 1, 1], [1, 2, 3]) is None  # a constant side
    assert spearman([1, 2, 3, float("nan")], [1, 2, 3, 4]) == pytest.approx(1.0)


@dataclass
class _FakeAB:
    """What ``summarize_cell`` reads of an ``ABResult``: arm -> usage % vs each reference."""

    usage: dict[str, float]

    @property
    def config(self):
        return type("C", (), {"arms": CELL_ARMS})()

    def comparisons(self, ref):
        def c(v):
            return {"rel_pct": v, "ci_low_pct": v - 1, "ci_high_pct": v + 1, "p_value": 0.01}

        return {a: {"usage_time": c(self.usage[a] - self.usage[ref]), "dau": c(0.5),
                    "pdr": c(-10.0 if a != ref else 0.0)} for a in CELL_ARMS}  # fmt: skip

    def personalization_uplift_captured(self, metric):
        return {a: self.usage[a] / 10 for a in CELL_ARMS}


def _cell(s, z, gap_usage, premise, act=0.0):
    usage = dict.fromkeys(CELL_ARMS, 0.0)
    usage.update({"klan": 5.0, "klan_iit": 6.0, "glan": 5.0 + gap_usage - 1,
                  "glan_cg": 5.0 + gap_usage, "glan_act": act})  # fmt: skip
    return summarize_cell(s, z, f"premise:strength={s:g},stochasticity={z:g}", premise, 1.0,
                          False, _FakeAB(usage), 12.3)  # fmt: skip


def test_summarize_cell_picks_the_best_glan_and_the_winner():
    c = _cell(1.0, 1.0, 2.0, dict.fromkeys(("history_gain", "gap_closed", "delayed_share",
                                            "return_consistency"), 0.1))  # fmt: skip
    assert c.best_glan == "glan_cg" and c.gap == pytest.approx(2.0)
    assert (c.gap_low, c.gap_high) == pytest.approx((1.0, 3.0))
    assert c.winner == "glan_cg"  # 7% beats klan_iit's 6%
    assert c.vs_logging["klan"]["usage"] == pytest.approx(5.0)
    assert c.vs_klan["klan_iit"]["usage"] == pytest.approx(1.0)
    assert c.vs_logging["glan_cg"]["pers_uplift"] == pytest.approx(0.7)
    assert _cell(0.0, 1.0, -3.0, c.premise).winner == "klan_iit"
    act = _cell(1.0, 1.0, 2.0, c.premise, act=9.0)  # ACT's 9% beats glan_cg's 7%
    assert act.best_glan == act.winner == "glan_act" and act.gap == pytest.approx(4.0)
    assert CellResult.from_dict(json.loads(json.dumps(c.to_dict()))) == c


def test_map_correlations_report_and_png(tmp_path):
    cfg = WorldSweepConfig(out=str(tmp_path), strengths=(0, 0.5, 1), stochasticities=(1,))
    cells = [_cell(s, 1.0, gap, {"history_gain": h, "gap_closed": h, "delayed_share": 1 - h,
                                 "return_consistency": 0.0})
             for s, gap, h in ((0.0, -3.0, 0.01), (0.5, -1.0, 0.05), (1.0, 2.0, 0.1))]  # fmt: skip
    # the first cell was swept before ACT joined: no glan_act figures
    old = cells[0].to_dict()
    for part in ("vs_logging", "vs_klan"):
        del old[part]["glan_act"]
    cells[0] = CellResult.from_dict(old)
    wmap = WorldMap.build(cfg, cells, {"s2_z1": "RuntimeError: boom"})
    assert wmap.rank_correlation["history_gain"] == pytest.approx(1.0)
    assert wmap.rank_correlation["delayed_share"] == pytest.approx(-1.0)
    assert wmap.rank_correlation["return_consistency"] is None
    assert wmap.predictive() == ["history_gain", "gap_closed"]
    # GLAN as published trails glan_cg by one point in every cell: the same ranks
    assert wmap.rank_correlation_published["history_gain"] == pytest.approx(1.0)
    write_map(wmap, str(tmp_path))
    md = (tmp_path / "world_map.md").read_text()
    assert "| 1 | 1 | +2.00% [+1.00, +3.00] | +1.00% [+0.00, +2.00] | glan_cg | glan_cg | 1 |" in md
    assert "| +7.00% | -10.0% | +0.00% | 0.1 |" in md  # s = 1: glan_cg, its PDR, glan_act
    assert "| +2.00% | -10.0% | — | 0.01 |" in md  # s = 0: no glan_act
    assert "| return_consistency | undefined | undefined |" in md
    assert "`s2_z1`: RuntimeError: boom" in md
    assert json.loads((tmp_path / "world_map.json").read_text())["predictive"] == [
        "history_gain", "gap_closed"]  # fmt: skip
    assert os.path.getsize(tmp_path / "world_map.png") > 10_000


def test_lambda_grid_is_checked_before_any_play():
    play = LambdaPlay(models="/nope")
    for bad in ([1.0], [-1.0, 1.0], [0.0, float("inf")]):
        with pytest.raises(ValueError, match="lambdas: need at least two finite values >= 0"):
            tune_critic_lambda(play, bad)


def test_map_of_a_partial_sweep_lists_the_missing_cells(tmp_path, capsys):
    from glan_ray import storage
    from glan_ray.cli import main
    from glan_ray.sweep.run import _short, map_cells

    cfg = WorldSweepConfig(out=str(tmp_path), strengths=(0, 0.5, 1), stochasticities=(1,))
    premise = dict.fromkeys(("history_gain", "gap_closed", "delayed_share",
                             "return_consistency"), 0.0)  # fmt: skip
    for s in (0.0, 1.0):
        c = _cell(s, 1.0, s, {**premise, "history_gain": s})
        storage.write_json(os.path.join(cfg.cell_dir(s, 1.0), "cell.json"), c.to_dict())
    wmap = map_cells(cfg, {"s0.5_z1": "RuntimeError: boom"})
    assert [c.strength for c in wmap.cells] == [0.0, 1.0]
    assert wmap.failed == {"s0.5_z1": "RuntimeError: boom"}
    assert map_cells(cfg).failed == {"s0.5_z1": "not run"}
    argv = ["sweep-worlds", "--out", str(tmp_path), "--strengths", "0,0.5,1",
            "--stochasticities", "1", "--map-only"]  # fmt: skip
    assert main(argv) == 1  # a cell is missing
    assert "`s0.5_z1`: not run" in capsys.readouterr().out
    assert (tmp_path / "world_map.png").exists()
    with pytest.raises(RuntimeError, match="no cell done under"):
        map_cells(WorldSweepConfig(out=str(tmp_path / "empty")))
    err = RuntimeError("Traceback ...\n  File x\n\x1b[36mValueError: bad cell\x1b[39m\n")
    assert _short(err) == "RuntimeError: ValueError: bad cell"
