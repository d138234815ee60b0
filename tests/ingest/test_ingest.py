"""``ingest`` end to end on a few users (Ray Data): the plpm spec and a 4-page spec, the refusal
of bad events with its report, the quarantine round trip, and the CLI's exit codes."""

from __future__ import annotations

import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest

from glan_ray import schema
from glan_ray.apps import AppSpec, plpm_spec
from glan_ray.cli import BAD_EVENTS_EXIT, main
from glan_ray.data.parts import dataset_parts, matching_parts
from glan_ray.data.read import read_dataset
from glan_ray.ingest import BadEventsError, ingest

DAY = 86_400.0
D0 = 20_000


def _events(pages: tuple[str, ...], users: int = 6, days: int = 3, seed: int = 0) -> pa.Table:
    """Visits of ``users`` users over ``days`` days: 1-3 sessions a day of 1-3 visits each."""
    rng = np.random.default_rng(seed)
    rows: dict[str, list] = {k: [] for k in ("user_id", "ts", "page", "dwell_s", "views",
                                             "landing", "propensity", "live_count")}  # fmt: skip
    for u in range(users):
        for d in range(days):
            t = (D0 + d) * DAY + 3600.0 * rng.uniform(1, 5)
            for _ in range(rng.integers(1, 4)):
                for v in range(rng.integers(1, 4)):
                    dwell = float(rng.choice([10.0, 60.0, 300.0]))
                    for k, x in zip(rows, (100 + u, t, pages[rng.integers(len(pages))], dwell,
                                           int(rng.integers(0, 4)), v == 0, 0.5,
                                           int(rng.integers(0, 3))), strict=True):  # fmt: skip
                        rows[k].append(x)
                    t += dwell + 5.0
                t += 2 * 3600.0
    return pa.table(rows)


def _profile(ids: list[int]) -> dict[str, list]:
    return {"activity": [i % 4 for i in ids], "age": [i % 6 for i in ids],
            "region": [i % 8 for i in ids],
            "social_degree": [float(i % 5) for i in ids]}  # fmt: skip


def _with_profile(events: pa.Table) -> pa.Table:
    for k, v in _profile(events.column("user_id").to_pylist()).items():
        events = events.append_column(k, pa.array(v))
    return events


def _read(out: str, name: str, spec: AppSpec | None = None) -> pa.Table:
    """Every part of dataset ``name``, each conformed to ``spec``'s schema (no Ray)."""
    parts = dataset_parts(out, name)
    return pa.concat_tables(schema.conform(pq.read_table(f), name, f, spec=spec)
                            for _, f in sorted(parts.items()))  # fmt: skip


def _manifest(out: str) -> dict:
    with open(os.path.join(out, "manifest.json")) as f:
        return json.load(f)


def test_plpm_events_become_datasets_that_conform(ray_session, tmp_path):
    events = _with_profile(_events(plpm_spec().pages))
    pq.write_table(events, tmp_path / "events.parquet")
    out = str(tmp_path / "out")
    res = ingest(plpm_spec(), str(tmp_path / "events.parquet"), out)
    assert res.events == res.ingested == events.num_rows and res.bad == []
    assert set(res.rows) == {"daily", "sessions", "trajectories", "transitions"}
    assert res.rows["daily"] == 6 * 3  # every user on every day of the input
    for name in res.rows:
        table = _read(out, name)  # the simulator's own schema
        assert table.schema.equals(schema.SCHEMAS[name]) and table.num_rows == res.rows[name]
    # the layout read_dataset reads, validated with it
    assert read_dataset(out, "trajectories").count() == res.rows["trajectories"]
    for _, sess, traj in matching_parts(out, "sessions", "trajectories"):
        s, t = pq.read_table(sess), pq.read_table(traj)
        n = t.column("n_steps").to_numpy()
        assert np.repeat(t.column("user_id").to_numpy(), n).tolist() == s.column(
            "user_id").to_pylist()  # fmt: skip
    sessions = _read(out, "sessions")
    assert float(np.sum(sessions.column("usage_time").to_numpy())) == pytest.approx(
        float(np.sum(events.column("dwell_s").to_numpy())), rel=1e-6)  # fmt: skip
    # the landing flags in the events agree with the sessions found
    assert sessions.num_rows == sum(events.column("landing").to_pylist())
    manifest = _manifest(out)
    assert manifest["source"] == "ingest"
    assert manifest["spec_fingerprint"] == plpm_spec().fingerprint()
    assert manifest["summary"]["landing_mismatch"] == 0


def test_the_cli_ingests_a_four_page_app_from_csv_with_users_and_randomised_days(
    ray_session, tmp_path, capsys
):
    d = plpm_spec().to_dict()
    spec = AppSpec.from_dict({**d, "name": "mall4", "pages": [*d["pages"], "mall"]})
    (tmp_path / "app.yaml").write_text(spec.to_yaml())
    events = _events(spec.pages, users=5, days=4, seed=1)
    # user 100 is randomised on day 1 (to the mall: treatment 4), user 101 on day 2 (control)
    uid, day = events.column("user_id").to_numpy(), events.column("ts").to_numpy() // DAY - D0
    treat = np.where((uid == 100) & (day == 1), 4, np.where((uid == 101) & (day == 2), 0, -1))
    events = events.append_column("treatment", pa.array(treat, mask=treat < 0))
    pcsv.write_csv(events, tmp_path / "events.csv")
    ids = sorted(set(uid.tolist()))
    pq.write_table(pa.table({"user_id": ids, **_profile(ids)}), tmp_path / "users.parquet")
    out = str(tmp_path / "out")
    assert main(["ingest", "--spec", str(tmp_path / "app.yaml"), "--events",
                 str(tmp_path / "events.csv"), "--out", out, "--users",
                 str(tmp_path / "users.parquet")]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    assert f"ingested {events.num_rows} of {events.num_rows} events of 5 users" in printed
    rows = _manifest(out)["summary"]["rows"]
    assert rows["daily"] == 5 * 4 and rows["rct"] == 2
    for name in rows:
        t = _read(out, name, spec)
        assert t.schema.equals(schema.schemas_for(spec)[name]), name
    rct = _read(out, "rct", spec).to_pylist()
    assert [(r["user_id"], r["day"], r["treatment"]) for r in rct] == [
        (100, D0 + 1, 4), (101, D0 + 2, 0)]  # fmt: skip
    sess = _read(out, "sessions", spec)
    assert len(sess.column("obs")[0]) == spec.obs_dim
    assert len(sess.column("dur")[0]) == 4


def test_bad_events_refuse_the_input_with_a_report_and_nothing_is_written(ray_session, tmp_path):
    events = _with_profile(_events(plpm_spec().pages, users=3, days=1))
    pages = events.column("page").to_pylist()
    pages[0], pages[1] = "mall", None
    dwell = events.column("dwell_s").to_pylist()
    dwell[2] = -5.0
    events = events.set_column(2, "page", pa.array(pages)).set_column(3, "dwell_s",
                                                                      pa.array(dwell))  # fmt: skip
    pq.write_table(events, tmp_path / "events.parquet")
    out = str(tmp_path / "out")
    with pytest.raises(BadEventsError) as e:
        ingest(plpm_spec(), str(tmp_path / "events.parquet"), out)
    msg = str(e.value)
    assert "column 'page': unknown page (the spec's pages are ['featured', 'explore', " \
           "'following']) (2 rows)" in msg  # fmt: skip
    assert "column 'dwell_s': is negative, NaN or null (1 rows)" in msg
    assert not any(os.path.isdir(os.path.join(out, n)) for n in schema.SCHEMAS)


def _overlapping(events: pa.Table) -> pa.Table:
    """The second visit of the first user starts 1 s after the first (which lasts 10 s or
    more), and ends before the third starts."""
    ts = events.column("ts").to_pylist()
    ts[1] = ts[0] + 1.0
    return events.set_column(1, "ts", pa.array(ts))


def test_quarantine_sets_bad_rows_aside_and_keeps_every_row(ray_session, tmp_path):
    events = _overlapping(_with_profile(_events(plpm_spec().pages, users=3, days=2)))
    pages = events.column("page").to_pylist()
    pages[-1] = "mall"
    events = events.set_column(2, "page", pa.array(pages))
    pq.write_table(events, tmp_path / "events.parquet")
    src, out, q = str(tmp_path / "events.parquet"), str(tmp_path / "out"), str(tmp_path / "q")
    res = ingest(plpm_spec(), src, out, quarantine=q)
    bad = pq.read_table(q)
    assert bad.num_rows == res.quarantined == events.num_rows - res.ingested == 2
    assert sorted(bad.column("reason").to_pylist()) == sorted(
        [
            "page: unknown page (the spec's pages are ['featured', 'explore', 'following'])",
            "ts: visit starts before the user's previous visit ended (timestamps out of order)",
        ]
    )
    assert {(p.column, p.rows) for p in res.bad} == {("page", 1), ("ts", 1)}
    # bad rows + good rows = the input's rows: what was ingested is every other visit's dwell
    good = float(np.sum(_read(out, "sessions").column("usage_time").to_numpy()))
    dwell = events.column("dwell_s").to_numpy()
    assert good == pytest.approx(dwell.sum() - float(np.sum(bad.column("dwell_s").to_numpy())),
                                 rel=1e-6)  # fmt: skip
    assert _manifest(out)["summary"]["quarantined"] == 2


def test_the_cli_refuses_overlapping_visits_a_missing_field_and_a_missing_path(
    ray_session, tmp_path, capsys
):
    spec = tmp_path / "app.yaml"
    spec.write_text(plpm_spec().to_yaml())
    out = str(tmp_path / "out")
    args = ["ingest", "--spec", str(spec), "--out", out]
    assert main([*args, "--events", str(tmp_path / "none.parquet")]) == 2
    assert "no such file or directory: " in capsys.readouterr().err
    events = _events(plpm_spec().pages, users=2, days=1)  # no profile fields
    pq.write_table(events, tmp_path / "e.parquet")
    assert main([*args, "--events", str(tmp_path / "e.parquet")]) == BAD_EVENTS_EXIT
    err = capsys.readouterr().err
    assert f"column 'activity': missing (a profile field of the spec: give it on the events or " \
           f"in --users) ({events.num_rows} rows)" in err  # fmt: skip
    # overlapping visits are found after the grouping: the parts written are removed again
    pq.write_table(_overlapping(_with_profile(events)), tmp_path / "e.parquet")
    assert main([*args, "--events", str(tmp_path / "e.parquet")]) == BAD_EVENTS_EXIT
    err = capsys.readouterr().err
    assert "column 'ts': visit starts before the user's previous visit ended (timestamps out " \
           "of order) (1 rows)" in err  # fmt: skip
    assert not any(os.path.isdir(os.path.join(out, n)) for n in schema.SCHEMAS)
