"""glan-ray gen-events and sim-events: files written, the summary printed, client mistakes
exit 2 with a one-line error."""

from __future__ import annotations

import json

import pyarrow.parquet as pq

from glan_ray.cli import build_parser, main
from glan_ray.data.parts import write_part
from glan_ray.data.tables import day_tables
from glan_ray.sim.baselines import LoggingPolicy
from glan_ray.sim.config import SimConfig
from glan_ray.sim.engine import simulate


def test_gen_events_writes_a_four_page_app_and_refuses_to_overwrite(tmp_path, capsys):
    out = tmp_path / "gen"
    assert main(["gen-events", "--out", str(out), "--users", "20", "--days", "2"]) == 0
    summary = json.loads(capsys.readouterr().out)
    events = pq.read_table(out / "events")
    assert events.num_rows == summary["visits"] > 0
    assert set(events["page"].to_pylist()) <= {"featured", "explore", "following", "mall"}
    manifest = json.loads((out / "generate.json").read_text())
    assert manifest["spec"]["name"] == "fourpage" and manifest["world"]["users"] == 20
    assert main(["gen-events", "--out", str(out), "--users", "20", "--days", "2"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["gen-events", "--out", str(out), "--spec", str(tmp_path / "none.yaml")]) == 2


def test_sim_events_exports_a_simulated_run(tmp_path, capsys):
    cfg = SimConfig(seed=2, block_size=10)
    data = tmp_path / "data"
    for log in simulate(cfg, 0, 10, 2, LoggingPolicy(cfg)):
        for name, table in day_tables(log, False).items():
            write_part(table, str(data / name / f"part-{log.day:05d}-00000" / "x.parquet"))
    out = tmp_path / "events"
    assert main(["sim-events", "--data", str(data), "--out", str(out), "--gap-s", "1"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert pq.read_table(out / "events").num_rows == summary["visits"]
    assert "treatment" not in pq.read_table(out / "events").column_names  # no RCT
    export = json.loads((out / "export.json").read_text())
    assert export["options"]["gap_s"] == 1.0 and export["options"]["epoch_day"] == 20458
    text = build_parser()._subparsers._group_actions[0].choices["sim-events"].format_help()
    for flag in ("--data", "--out", "--spec", "--gap-s", "--epoch-day", "--overwrite"):
        assert flag in text
