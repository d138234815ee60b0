"""The world sweep end to end: two cells of the tiny preset as Ray Tune trials (each simulates,
diagnoses, trains every model of ``CELL_STAGES``, tunes λ on validation users and plays the A/B),
then the map; a rerun finds the cells done and only rewrites the map."""

from __future__ import annotations

import json
import math
import time

import pytest

from glan_ray.sweep.cell import CELL_ARMS, PREMISE_MEASURES, WorldSweepConfig
from glan_ray.sweep.run import sweep_worlds

pytestmark = pytest.mark.heavy  # ~5 min on 2 cores; the parts are tested in test_world_sweep.py


def test_two_tiny_cells_end_to_end(ray_session, tmp_path):
    cfg = WorldSweepConfig(out=str(tmp_path), strengths=(0.0, 1.0), stochasticities=(1.0,),
                           preset="tiny", lambdas=(0.0, 1.0, 1e6), lambda_users=40,
                           cell_memory_gb=0.5)  # fmt: skip
    wmap = sweep_worlds(cfg)
    assert not wmap.failed and len(wmap.cells) == 2
    for c in wmap.cells:
        assert set(c.vs_logging) == set(CELL_ARMS)
        assert c.critic_lambda in (0.0, 1.0, 1e6)
        assert math.isfinite(c.gap) and c.gap_low <= c.gap <= c.gap_high
        assert set(c.premise) == set(PREMISE_MEASURES)
        assert (tmp_path / "cells" / f"s{c.strength:g}_z1" / "ab.json").exists()
    by = {c.strength: c for c in wmap.cells}
    assert by[0.0].world == "premise:strength=0,stochasticity=1" and by[1.0].world == "premise"
    # the premise world's days are longer: its diagnosis read more sessions per day
    saved = json.loads((tmp_path / "world_map.json").read_text())
    assert len(saved["cells"]) == 2 and (tmp_path / "world_map.png").stat().st_size > 10_000
    t0 = time.perf_counter()
    again = sweep_worlds(cfg)
    assert again.cells == wmap.cells and time.perf_counter() - t0 < 60
    # a cell swept before a variant joined (its cell.json lacks glan_target): the rerun trains
    # nothing it has (its stages are done) and plays the A/B again, with the variant
    path = tmp_path / "cells" / "s0_z1" / "cell.json"
    old = json.loads(path.read_text())
    for part in ("vs_logging", "vs_klan"):
        del old[part]["glan_target"]
    path.write_text(json.dumps(old))
    stages = {p.name: p.stat().st_mtime for p in (path.parent / "stages").glob("*.json")}
    redone = {c.strength: c for c in sweep_worlds(cfg).cells}
    assert "glan_target" in redone[0.0].vs_klan and redone[1.0] == by[1.0]
    assert {p.name: p.stat().st_mtime for p in (path.parent / "stages").glob("*.json")} == stages
