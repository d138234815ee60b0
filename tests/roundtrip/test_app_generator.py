"""The synthetic app (sim.app_generator): seeded, any spec, the logging policy's propensities
as recorded, randomised user-days, sessions spaced by the spec's gap, and a landing page that
moves dwell and return (what a policy can learn)."""

from __future__ import annotations

from importlib import resources

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from glan_ray.apps import load_spec, plpm_spec
from glan_ray.sim.app_generator import AppWorld, generate_events, make_population, write_events

FOURPAGE = load_spec(str(resources.files("glan_ray.apps").joinpath("fourpage.yaml")))


def _events(spec=FOURPAGE, **world) -> pa.Table:
    return pa.concat_tables([e for e, _ in generate_events(spec, AppWorld(**world))])


@pytest.fixture(scope="module")
def four():
    """2,000 users x 4 days of the 4-page app."""
    return _events(users=2000, days=4, seed=5, rct_share=0.3)


def _sessions(t: pa.Table) -> dict[str, np.ndarray]:
    """Per event: its session number (over all users) and the session's end."""
    landing = t["landing"].to_numpy()
    sid = np.cumsum(landing) - 1
    end = t["ts"].to_numpy() + t["dwell_s"].to_numpy()
    return {"sid": sid, "end": end, "landing": landing}


def test_the_same_seed_gives_the_same_events_and_more_days_leave_the_first_alone(four):
    again = _events(users=2000, days=4, seed=5, rct_share=0.3)
    assert again.equals(four)
    shorter = _events(users=2000, days=2, seed=5, rct_share=0.3)
    assert four.slice(0, shorter.num_rows).equals(shorter)
    assert not _events(users=2000, days=2, seed=6, rct_share=0.3).equals(shorter)


def test_events_follow_the_spec_and_its_gap(four):
    assert four.column_names == ["user_id", "ts", "page", "dwell_s", "views", "landing",
                                 "propensity", "cart_items", "treatment"]  # fmt: skip
    assert set(four["page"].to_pylist()) == set(FOURPAGE.pages)
    assert four["ts"].to_numpy().min() // 86_400 == AppWorld().epoch_day
    # per user in time order: a visit starts where the previous one ended (same session) or
    # at least session_gap_s later (a new session), never earlier
    t = four.sort_by([("user_id", "ascending"), ("ts", "ascending")])
    s = _sessions(t)
    uid = t["user_id"].to_numpy()
    same_user = uid[1:] == uid[:-1]
    gap = t["ts"].to_numpy()[1:] - s["end"][:-1]
    new = s["landing"][1:]
    assert np.all(gap[same_user & ~new] == 0.0)
    assert np.all(gap[same_user & new] >= FOURPAGE.session_gap_s)
    # a 3-page spec without inputs works as well
    plpm = _events(plpm_spec(), users=50, days=2)
    assert set(plpm["page"].to_pylist()) <= set(plpm_spec().pages)


def test_propensities_are_the_logging_policys_and_treatments_force_the_page(four):
    t = four.sort_by([("user_id", "ascending"), ("ts", "ascending")])
    s = _sessions(t)
    land = np.flatnonzero(s["landing"])
    page = np.array([FOURPAGE.pages.index(p) for p in t["page"].to_pylist()])
    uid = t["user_id"].to_numpy()
    # the heuristic: the page of the user's previous session's last visit (featured at first)
    last_visit = np.append(land[1:] - 1, len(t) - 1)  # each session's last row
    prev_exit = np.zeros(len(land), dtype=int)
    first = np.append(True, uid[land][1:] != uid[land][:-1])
    prev_exit[~first] = page[last_visit[:-1]][~first[1:]]
    treat = t["treatment"].to_numpy(zero_copy_only=False)[land]
    prop = t["propensity"].to_numpy()[land]
    forced = treat > 0
    assert np.all(page[land][forced] == treat[forced] - 1) and np.all(prop[forced] == 1.0)
    e, k = AppWorld().explore, FOURPAGE.n_pages
    logged = ~forced
    expect = np.where(page[land] == prev_exit, 1 - e + e / k, e / k)
    assert np.allclose(prop[logged], expect[logged])
    # every visit of a session carries its landing propensity
    assert np.allclose(t["propensity"].to_numpy(), prop[s["sid"]])
    # about rct_share of the user-days are randomised, a quarter of them in control
    day = (t["ts"].to_numpy() // 86_400).astype(int)
    ud = np.unique(uid * 10_000 + day)
    randomised = ~np.isnan(t["treatment"].to_numpy(False).astype(float))
    treated = np.unique((uid * 10_000 + day)[randomised])
    assert 0.25 < len(treated) / len(ud) < 0.35
    assert 0.15 < np.mean(treat[~np.isnan(treat.astype(float))] == 0) < 0.35


def test_the_landing_page_moves_dwell_and_return():
    world = AppWorld(users=3000, days=2, seed=1)
    t = _events(users=3000, days=2, seed=1).sort_by([("user_id", "ascending"), ("ts", "ascending")])
    pop = make_population(FOURPAGE, world)
    s = _sessions(t)
    land = np.flatnonzero(s["landing"])
    page = np.array([FOURPAGE.pages.index(p) for p in t["page"].to_pylist()])[land]
    uid = t["user_id"].to_numpy()[land]
    aff = pop.affinity[uid, page]
    dwell = np.log(t["dwell_s"].to_numpy()[land])
    slope = np.polyfit(aff, dwell, 1)[0]
    assert 0.8 < slope < 1.2  # log-dwell moves one for one with the landing page's affinity
    # a held landing (dwell >= the drop-off threshold) brings the user back more often
    held = np.exp(dwell) >= FOURPAGE.dropoff_s
    day = (t["ts"].to_numpy()[land] // 86_400).astype(int)
    back = np.append((uid[1:] == uid[:-1]) & (day[1:] == day[:-1]), False)
    assert back[held].mean() > back[~held].mean() + 0.1


def test_write_events_writes_days_users_and_refuses_to_overwrite(tmp_path):
    world = AppWorld(users=30, days=3, seed=2)
    s = write_events(FOURPAGE, world, str(tmp_path))
    events = pq.read_table(tmp_path / "events")
    assert events.num_rows == s.visits and len(list((tmp_path / "events").iterdir())) == 3
    users = pq.read_table(tmp_path / "users.parquet")
    assert users.column_names == ["user_id", "city_tier", "gender", "tenure_days", "followers"]
    assert users["city_tier"].to_numpy().max() < 5 and users["gender"].to_numpy().max() < 3
    with pytest.raises(FileExistsError, match="--overwrite"):
        write_events(FOURPAGE, world, str(tmp_path))
    with pytest.raises(ValueError, match=r"AppWorld\.explore"):
        AppWorld(explore=1.5)
