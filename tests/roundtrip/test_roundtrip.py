"""The round trip (issue 30, item 4): a tiny simulated world written as raw events, ingested
with the plpm spec, equals the simulator's own datasets wherever raw events define a value."""

from __future__ import annotations

import dataclasses

import pyarrow.parquet as pq
import pytest

from glan_ray.apps import plpm_spec
from glan_ray.data.parts import write_part
from glan_ray.data.roundtrip import compare_runs, format_report
from glan_ray.data.sim_events import EVENTS, SHIFTS, USERS, export_run
from glan_ray.data.tables import day_tables
from glan_ray.sim.baselines import LoggingPolicy
from glan_ray.sim.config import SimConfig
from glan_ray.sim.engine import simulate
from glan_ray.sim.events import EventExport, epoch_day

USERS_N, DAYS, WARMUP = 16, 32, 30


@pytest.fixture(scope="module")
def roundtrip(ray_session, tmp_path_factory):
    from glan_ray.ingest import ingest

    root = tmp_path_factory.mktemp("roundtrip")
    # raw events carry dwell only: the simulator's 4 s per page of browsing overhead is off
    cfg = SimConfig(seed=11, block_size=USERS_N, browse_overhead=0.0)
    data = root / "data"
    for log in simulate(cfg, 0, USERS_N, DAYS, LoggingPolicy(cfg), rct=True):
        for name, table in day_tables(log, True).items():
            write_part(table, str(data / name / f"part-{log.day:05d}-00000" / f"{name}.parquet"))
    spec = dataclasses.replace(plpm_spec(), session_gap_s=1.0)
    opts = EventExport(pages=spec.pages, epoch_day=epoch_day(cfg.start_weekday), gap_s=1.0)
    export = export_run(str(data), str(root / "events"), opts)
    result = ingest(spec, str(root / "events" / EVENTS), str(root / "ingested"),
                    users=str(root / "events" / USERS))  # fmt: skip
    shifts = pq.read_table(root / "events" / SHIFTS)
    report = compare_runs(str(data), str(root / "ingested"), spec, shifts=shifts,
                          warmup_days=WARMUP)  # fmt: skip
    return export, result, report


def _columns(report, name):
    d = next(d for d in report.datasets if d.name == name)
    return d, {c.column: c for c in d.columns}


def test_every_dataset_equals_the_simulators_on_its_clean_rows(roundtrip):
    export, result, report = roundtrip
    assert not result.bad and result.events == export.visits
    assert export.shifted_to_next_day == 0  # this seed moves no session to another day
    assert report.day_offset == epoch_day(0) and not report.missing
    assert report.equal, format_report(report)
    for name in ("sessions", "transitions", "trajectories"):
        d, _ = _columns(report, name)
        assert d.only_sim == d.only_ingested == 0 and d.matched == d.sim_rows, name


def test_what_raw_events_cannot_give_is_named_not_compared(roundtrip):
    _, _, report = roundtrip
    d, cols = _columns(report, "sessions")
    assert cols["value_true"].note.startswith("not compared")  # only the simulator knows it
    assert cols["watch_time"].note.startswith("not compared")  # raw events carry no watch time
    assert cols["obs[hour]"].compared == d.clean and cols["obs[usage_7d]"].note == "from day 30"
    assert cols["obs[usage_7d]"].compared > 0 and cols["obs[usage_7d]"].max_abs < 1e-4
    rct, rcols = _columns(report, "rct")
    assert rcols["response_cf"].note.startswith("not compared")  # counterfactual responses
    assert rct.only_ingested == 0 and rcols["response"].mismatched == 0
    _, dcols = _columns(report, "daily")
    assert dcols["seq_usage[29]"].compared > 0 and dcols["is_active"].mismatched == 0


@pytest.mark.heavy  # a second ingest; tests/ingest ingests a 4-page spec in CI
def test_the_four_page_app_ingests_into_every_dataset(ray_session, tmp_path):
    from importlib import resources

    from glan_ray.apps import load_spec
    from glan_ray.ingest import ingest
    from glan_ray.sim.app_generator import AppWorld, write_events

    spec = load_spec(str(resources.files("glan_ray.apps").joinpath("fourpage.yaml")))
    gen = write_events(spec, AppWorld(users=40, days=4, seed=3, rct_share=0.3), str(tmp_path))
    res = ingest(spec, str(tmp_path / "events"), str(tmp_path / "ingested"),
                 users=str(tmp_path / "users.parquet"))  # fmt: skip
    assert not res.bad and res.events == gen.visits
    # every generated session is one ingested session: the export spaced them by the spec's gap
    assert res.rows["sessions"] == res.rows["transitions"] == gen.sessions
    assert res.rows["rct"] > 0 and res.rows["trajectories"] > 0
