"""Exploration and the decision log in Serve: the state store writes a log row iff it writes
the state (both stores), the flush is at-least-once and the reader de-duplicates, a bad
exploration config is refused naming the field, and over HTTP (slow): the served page is drawn
from the exploration of π with a per-entry uniform, a retried entry answers the same, and its
log becomes valid datasets (the log under a store and ingress kill: ``test_faults``)."""

from __future__ import annotations

import asyncio

import numpy as np
import pyarrow.parquet as pq
import pytest

from glan_ray.data import decision_log as dlog
from glan_ray.policy.explore import Exploration
from glan_ray.schema import PAGES
from glan_ray.serving.ingress import entry_uniform, parse_user_config
from glan_ray.serving.log import flush
from glan_ray.serving.state import RedisStore, SQLiteStore
from tests.serving.conftest import END, FEATURES, app_args, end, entry, start


def _row(i: int) -> tuple[str, int, str, str]:
    rec = dlog.DayStart(i, 1, f"d{i}", dict(FEATURES, weekday=0))
    return (rec.endpoint, rec.day, rec.event_id, dlog.to_json(rec))


def test_log_rows_are_written_iff_the_state_is(redis_url, tmp_path):
    async def check(store) -> None:
        assert await store.put(11, {"n": 1}, 0, _row(11))
        assert not await store.put(11, {"n": 2}, 0, _row(11))  # stale CAS: no state, no row
        done = await asyncio.gather(*(store.put(11, {"n": 3}, 1, _row(11)) for _ in range(5)))
        assert sum(done) == 1  # concurrent writers of one version: one state, one row
        assert await store.put(12, {"n": 1}, 0)  # no row given: none written
        rows = await store.log_read(100)
        assert [(r[2], r[1], r[3], r[4]) for r in rows] == [(11, "day", 1, "d11")] * 2
        assert [r[0] for r in rows] == sorted({r[0] for r in rows})  # increasing sequence
        assert await store.log_delete([rows[0][0]]) == 1
        assert len(await store.log_read(100)) == 1

    async def both() -> None:
        await check(SQLiteStore(str(tmp_path / "s.sqlite3")))
        client = RedisStore(redis_url)
        await client.client.delete("glan_ray:decision_log", "glan_ray:user:11", "glan_ray:user:12")
        await check(client)

    asyncio.run(both())


def test_flush_is_at_least_once_and_the_reader_deduplicates(tmp_path, monkeypatch):
    db, out = str(tmp_path / "s.sqlite3"), str(tmp_path / "log")

    async def fill(first: int, n: int) -> None:
        store = SQLiteStore(db)
        for i in range(first, first + n):
            assert await store.put(i, {"n": 1}, 0, _row(i))

    asyncio.run(fill(0, 30))

    async def crash(self, seqs):  # the file is written, then the flusher dies
        raise KeyboardInterrupt

    monkeypatch.setattr(SQLiteStore, "log_delete", crash)
    with pytest.raises(KeyboardInterrupt):
        flush(f"sqlite://{db}", out, batch=20)
    monkeypatch.undo()
    asyncio.run(fill(30, 5))
    got = flush(f"sqlite://{db}", out, batch=20)
    assert got["rows"] == 35 and len(got["files"]) == 2  # the first 20 again, then 15
    assert flush(f"sqlite://{db}", out)["rows"] == 0  # nothing left in the store
    files = sorted((tmp_path / "log").glob("*.parquet"))
    assert len(files) == 3 and not list((tmp_path / "log").glob("*.tmp"))
    assert sum(pq.read_table(f).num_rows for f in files) == 55
    read = dlog.read_log(out)
    assert (read.rows, read.duplicates, len(read.records)) == (55, 20, 35)
    assert sorted(r.user_id for r in read.records) == list(range(35))


def test_entry_uniform_is_a_function_of_seed_user_day_and_event():
    u = entry_uniform(0, 5, 3, "e1")
    assert u == entry_uniform(0, 5, 3, "e1") and 0.0 <= u < 1.0
    assert len({u, entry_uniform(1, 5, 3, "e1"), entry_uniform(0, 6, 3, "e1"),
                entry_uniform(0, 5, 4, "e1"), entry_uniform(0, 5, 3, "e2")}) == 5  # fmt: skip
    draws = np.array([entry_uniform(0, i, 0, "e") for i in range(4000)])
    assert abs(draws.mean() - 0.5) < 0.02 and abs((draws < 0.1).mean() - 0.1) < 0.02


@pytest.mark.parametrize(
    ("config", "field"),
    [({"exploration": "epsilon=2"}, "exploration"), ({"exploration": "boltzmann"}, "exploration"),
     ({"exploration": 0.1}, "exploration"), ({"seed": "7"}, "seed"),
     ({"decision_log": 1}, "decision_log"), ({"explore": "greedy"}, "explore")],
)  # fmt: skip
def test_bad_exploration_config_is_refused_naming_the_field(config, field, random_models):
    with pytest.raises(ValueError, match=field):
        parse_user_config(config)
    from glan_ray.serving.app import build_app

    arg = {"seed": "explore_seed"}.get(field, field)
    if field != "explore":
        with pytest.raises(ValueError, match=arg):
            build_app({"models": random_models, **{arg: config[field]}})
    assert parse_user_config({"exploration": "softmax=0.5", "seed": 3})[1] == Exploration(
        "softmax", temperature=0.5
    )


def _user_day(base: str, uid: int, n: int, day: int = 3) -> list[dict]:
    assert start(base, uid, day=day, event_id=f"d{day}").status_code == 200
    out = []
    for t in range(n):
        r = entry(base, uid, f"e{t}", day=day, hour=8.0 + t)
        assert r.status_code == 200, r.text
        out.append(r.json())
        assert end(base, uid, f"s{t}", day=day).status_code == 200
    return out


# heavy: ~40 s; the entry uniform and the exploration configs are unit-tested in CI in this file
@pytest.mark.heavy
@pytest.mark.slow
def test_exploration_over_http_draws_from_the_serving_distribution(serve_http, random_models,
                                                                   tmp_path):  # fmt: skip
    """softmax (eq. 29): probs = Exploration.probs(π), the page is the inverse-CDF draw of the
    entry's uniform, propensity = probs[page]; a retried entry answers the same; the decision
    log has one record per event with the propensity, π, the uniform and model versions."""
    from ray import serve

    from glan_ray.policy.explore import sample_pages
    from glan_ray.serving.app import build_app

    args = app_args(random_models, tmp_path, exploration="softmax", explore_seed=5)
    serve.run(build_app(args), name="glan_explore", route_prefix="/explore")
    base = f"{serve_http}/explore"
    answers = []
    for uid in range(40):
        answers += [(uid, t, a) for t, a in enumerate(_user_day(base, uid, 2))]
    pages = set()
    for uid, t, a in answers:
        probs = Exploration("softmax").probs(np.array([a["policy_probs"]]))[0]
        np.testing.assert_allclose(a["probs"], probs, rtol=1e-9)
        u = entry_uniform(5, uid, 3, f"e{t}")
        assert a["page_index"] == sample_pages(probs[None], np.array([u]))[0]
        assert a["propensity"] == pytest.approx(a["probs"][a["page_index"]])
        assert a["page"] == PAGES[a["page_index"]] and a["exploration"] == "softmax=1"
        pages.add(a["page_index"])
    assert len(pages) > 1, "softmax over a random DT never explored"
    again = entry(base, 0, "e1", hour=9.0)  # a retry of an old entry: its first answer
    assert again.status_code == 200 and again.json() == answers[1][2]
    got = flush(args["state_store"], str(tmp_path / "log"))
    assert got["rows"] == 40 * 5  # day start, 2 x (entry, end); the retry wrote nothing
    read = dlog.read_log(str(tmp_path / "log"))
    assert read.duplicates == 0
    entries = [r for r in read.records if isinstance(r, dlog.EntryRecord)]
    by_key = {(r.user_id, r.session_idx): r for r in entries}
    for uid, t, a in answers:
        r = by_key[(uid, t)]
        assert (r.page, r.propensity, r.probs, r.exploration) == (
            a["page_index"], a["propensity"], a["probs"], "softmax=1")
        assert r.pi == a["policy_probs"] and r.u == entry_uniform(5, uid, 3, f"e{t}")
        assert {"dt", "hrm", "lrtg"} <= set(r.models) and all("#" in v for v in r.models.values())
    ends = [r for r in read.records if isinstance(r, dlog.SessionEndRecord)]
    assert all(r.reward is not None and r.page_durations_s == END["page_durations_s"]
               for r in ends)  # fmt: skip
    conv = dlog.to_datasets(read.records)
    assert conv.tables["sessions"].num_rows == 80 and conv.tables["daily"].num_rows == 40
    props = conv.tables["sessions"].column("propensity").to_numpy()
    np.testing.assert_allclose(props, [a["propensity"] for _, _, a in answers], rtol=1e-6)
    serve.delete("glan_explore")


def test_a_page_sequence_that_does_not_fit_its_session_is_a_conflict(server):
    """page_seq is checked against n_switches, exit_page and the served landing page: 409 naming
    the field, nothing stored; the sequence that fits is taken."""
    assert start(server, 901, event_id="d901").status_code == 200
    landing = entry(server, 901, "e0").json()["page"]
    other = next(p for p in PAGES if p not in (landing, END["exit_page"]))
    for seq, why in (([landing], "n_switches"), ([landing, other], "exit_page"),
                     ([other, END["exit_page"]], "landing page")):  # fmt: skip
        r = end(server, 901, f"bad-{why.replace(' ', '-')}", page_seq=seq)
        assert r.status_code == 409 and why in r.json()["detail"], r.text
    fits = [landing, END["exit_page"]] if landing != END["exit_page"] else None
    r = end(server, 901, "s0", page_seq=fits)
    assert r.status_code == 200 and r.json()["sessions"] == 1, r.text
