"""The Serve app over HTTP (in the shared Ray): a user-day through the L-RTG -> DT -> HRM loop
gives the offline GLAN policy's pages, every client mistake is a 4xx naming the problem, repeated
events are no-ops, the KLAN flag serves KLAN, and state survives a DT replica restart."""

from __future__ import annotations

import time

import numpy as np
import pytest
import requests

from glan_ray.policy.glan import GlanPolicy
from glan_ray.schema import PAGES
from glan_ray.sim.config import SimConfig
from glan_ray.sim.engine import simulate
from glan_ray.sim.interface import IntraDayHistory, Observation, Policy
from tests.serving.conftest import app_args, end, entry, start

pytestmark = pytest.mark.slow

DAY_KEYS = (
    "age",
    "region",
    "activity",
    "social_degree",
    "usage_7d",
    "usage_30d",
    "sessions_7d",
    "sessions_30d",
    "page_dur_7d",
    "page_dur_14d",
    "page_entries_7d",
    "page_entries_14d",
    "seq_sessions",
    "seq_usage",
)


class Recorder(Policy):
    """Wraps a policy and records what it saw and chose, per user."""

    def __init__(self, inner: Policy) -> None:
        self.inner, self.name = inner, inner.name
        self.features: dict[str, np.ndarray] = {}
        self.entries: dict[int, list[dict]] = {}

    def begin_day(self, day: int, features: dict[str, np.ndarray]) -> None:
        self.features = features
        self.inner.begin_day(day, features)

    def probs(self, obs: Observation, history: IntraDayHistory) -> np.ndarray:
        p = self.inner.probs(obs, history)
        for i, row in enumerate(obs.rows):
            self.entries.setdefault(int(row), []).append(
                {
                    "obs": obs.obs[i].tolist(),
                    "hour": float(obs.hour[i]),
                    "last_exit": int(obs.last_exit[i]),
                    "weekday": obs.weekday,
                    "action": int(np.argmax(p[i])),
                }
            )
        return p


def _features(rec: Recorder, row: int) -> dict:
    f = {k: np.asarray(rec.features[k][row]).tolist() for k in DAY_KEYS}
    f["weekday"] = rec.entries[row][0]["weekday"]
    for k in ("age", "region", "activity"):
        f[k] = int(f[k])
    return f


def test_a_user_day_over_http_matches_the_offline_glan_policy(server, random_models):
    _user_days_match_the_offline_policy(server, random_models, uid0=1000)


# heavy: ~36 s (a second Serve app); the composed app's answers are in CI
# (test_a_user_day_over_http_matches_the_offline_glan_policy)
@pytest.mark.heavy
def test_colocated_models_serve_the_same_user_days(server, random_models, tmp_path):
    """``colocate_models``: DT and HRM run inside the ingress replica (no deployments of their
    own) and the loop still gives the offline GLAN policy's pages and rewards."""
    from ray import serve

    from glan_ray.serving.app import build_app

    app = build_app(app_args(random_models, tmp_path, colocate_models=True))
    serve.run(app, name="glan_local", route_prefix="/local")
    deployments = serve.status().applications["glan_local"].deployments
    assert "Ingress" in deployments and not {"DTModel", "HRMModel"} & set(deployments)
    _user_days_match_the_offline_policy(f"{server}/local", random_models, uid0=3000)
    # the checkpoints are the ingress's user_config: without HRM, r̂ is the naive usage time
    args = app_args(random_models, tmp_path, colocate_models=True, use_hrm=False)
    serve.run(build_app(args), name="glan_local", route_prefix="/local")
    base = f"{server}/local"
    _start(base, 3999)
    r = entry(base, 3999, "a", live_count=1, hour=8)
    assert r.status_code == 200, r.text
    r = end(base, 3999, "b", page_durations_s=[10.0, 0.0, 0.0], exit_page="featured")
    assert r.status_code == 200 and r.json()["reward_s"] == pytest.approx(77.0), r.text
    serve.delete("glan_local")


def _user_days_match_the_offline_policy(server: str, random_models: str, uid0: int) -> None:
    cfg = SimConfig(seed=4, block_size=100)
    glan = GlanPolicy(f"{random_models}/dt", f"{random_models}/lrtg", f"{random_models}/hrm")
    rec = Recorder(glan)
    log = next(iter(simulate(cfg, 0, 100, 1, rec)))
    s = log.sessions
    users = [r for r, e in rec.entries.items() if len(e) >= 3][:3]
    assert users, "need users with several sessions"
    for row in users:
        uid = uid0 + row
        r = requests.post(
            f"{server}/users/{uid}/day",
            json={
                "event_id": "d0",
                "day": 0,
                "features": _features(rec, row),
                "last_exit_page": PAGES[rec.entries[row][0]["last_exit"]],
            },
        )
        assert r.status_code == 200, r.text
        assert r.json()["r1_s"] == pytest.approx(glan._r1[row], rel=1e-5)
        mine = np.flatnonzero(s["row"] == row)
        for t, e in enumerate(rec.entries[row]):
            r = entry(server, uid, f"e{t}", day=0, hour=e["hour"],
                      live_count=int(s["live_count"][mine[t]]))
            assert r.status_code == 200, r.text
            assert r.json()["page_index"] == e["action"] == s["action"][mine[t]]
            r = end(
                server, uid, f"s{t}", day=0,
                page_durations_s=s["dur"][mine[t]].tolist(),
                video_views=s["views"][mine[t]].tolist(),
                exit_page=PAGES[s["page_seq"][mine[t], s["seq_len"][mine[t]] - 1]],
                n_switches=int(s["seq_len"][mine[t]] - 1),
                usage_time=float(s["usage"][mine[t]]),
            )  # fmt: skip
            assert r.status_code == 200, r.text
            if not np.isnan(glan._reward[row, t]):  # the day's last session is never scored
                assert r.json()["reward_s"] == pytest.approx(glan._reward[row, t], rel=1e-4)
        st = requests.get(f"{server}/users/{uid}/state").json()
        assert st["sessions"] == len(rec.entries[row]) and not st["open_entry"]


def _kill_replicas_and_wait(base: str, uid: int, app: str = "") -> requests.Response:
    """Kill the DT and ingress replicas (of ``app``); wait until the user's state answers again."""
    import ray

    for actor in ray.util.list_named_actors(all_namespaces=True):
        name = actor["name"]
        if app in name and ("DTModel" in name or "Ingress" in name):
            ray.kill(ray.get_actor(name, namespace=actor["namespace"]), no_restart=True)
    for _ in range(60):
        try:
            r = requests.get(f"{base}/users/{uid}/state", timeout=2)
            if r.status_code == 200:
                return r
        except requests.RequestException:
            pass
        time.sleep(1)
    raise AssertionError("the app did not come back within 60 s")


def _start(server: str, uid: int) -> None:
    r = start(server, uid)
    assert r.status_code == 200, r.text


def test_client_mistakes_are_4xx_naming_the_problem(server):
    r = entry(server, 77, "x", live_count=1, hour=9)
    assert r.status_code == 404 and "unknown user 77" in r.text
    _start(server, 77)
    r = end(server, 77, "y", video_views=[1, 0, 0], page_durations_s=[10.0, 0.0, 0.0],
            exit_page="featured", n_switches=0, usage_time=30.0)
    assert r.status_code == 409 and "without a matching entry" in r.text
    r = entry(server, 77, "x", live_count=-1, hour=9)
    assert r.status_code == 422 and "live_count" in r.text
    r = entry(server, 77, "x", live_count=1, hour=25)
    assert r.status_code == 422 and "hour" in r.text
    r = requests.post(f"{server}/users/77/entry", json={"day": 3, "live_count": 1, "hour": 9})
    assert r.status_code == 422 and "event_id" in r.text
    r = requests.post(
        f"{server}/users/77/entry", data="{not json", headers={"content-type": "application/json"}
    )
    assert r.status_code == 400  # malformed JSON: the documented 400 (issue 31)
    r = requests.post(
        f"{server}/users/abc/entry", json={"event_id": "x", "day": 3, "live_count": 1, "hour": 9}
    )
    assert r.status_code == 422 and "user_id" in r.text
    r = requests.post(
        f"{server}/users/77/entry", data="x" * 70_000, headers={"content-type": "application/json"}
    )
    assert r.status_code == 413
    bad = {"event_id": "d", "day": 1, "features": {"age": 99}}
    r = requests.post(f"{server}/users/78/day", json=bad)
    assert r.status_code == 422 and "age" in r.text
    # a repeated entry event is a no-op; a second entry while a session is open is a conflict
    first = entry(server, 77, "e1", live_count=1, hour=9)
    again = entry(server, 77, "e1", live_count=1, hour=9)
    assert first.status_code == again.status_code == 200 and first.json() == again.json()
    r = entry(server, 77, "e2", live_count=1, hour=9)
    assert r.status_code == 409
    st = requests.get(f"{server}/users/77/state").json()
    assert st["open_entry"] and st["sessions"] == 0
    assert requests.get(f"{server}/healthz").json()["status"] == "ok"
    assert requests.get(f"{server}/docs").status_code == 200


@pytest.mark.heavy  # ~28 s; replica kills: tests/serving/test_faults.py (ingress + store)
def test_state_survives_a_dt_replica_restart_and_klan_flag(server, random_models, tmp_path):
    from ray import serve

    _start(server, 90)
    entry(server, 90, "a", live_count=1, hour=8)
    end(server, 90, "b", page_durations_s=[10.0, 0.0, 0.0], exit_page="featured",
        usage_time=120.0)
    before = requests.get(f"{server}/users/90/state").json()
    # kill the DT and ingress replicas; Serve restarts them, the state store keeps the day
    assert _kill_replicas_and_wait(server, 90).json() == before
    r = entry(server, 90, "c", live_count=1, hour=9)
    assert r.status_code == 200 and r.json()["session_idx"] == 1
    # the KLAN flag: the same app, the fused policy decides
    from glan_ray.serving.app import build_app

    serve.run(build_app(app_args(random_models, tmp_path, policy="klan")), name="glan_klan",
              route_prefix="/klan")  # fmt: skip
    _start(f"{server}/klan", 91)
    r = entry(f"{server}/klan", 91, "k", live_count=1, hour=9)
    assert r.status_code == 200 and r.json()["policy"] == "klan"
    assert sum(r.json()["probs"]) == pytest.approx(1.0)
    serve.delete("glan_klan")


@pytest.mark.heavy  # ~34 s; Redis under kills: tests/serving/test_faults.py
def test_with_redis_a_replica_restart_mid_day_loses_nothing(server, random_models, redis_url):
    import redis
    from ray import serve

    from glan_ray.serving.app import build_app

    app = build_app({"models": random_models, "num_cpus": 0.1, "state_store": redis_url})
    serve.run(app, name="glan_redis", route_prefix="/r")
    base = f"{server}/r"
    _start(base, 5)
    for t in range(2):
        r = entry(base, 5, f"e{t}", live_count=1, hour=7)
        assert r.status_code == 200, r.text
        r = end(base, 5, f"s{t}", video_views=[1, 1, 0], page_durations_s=[10.0, 0.0, 0.0],
                exit_page="featured", usage_time=90.0)
        assert r.status_code == 200
    before = requests.get(f"{base}/users/5/state").json()
    assert redis.Redis.from_url(redis_url).exists("glan_ray:user:5")
    assert _kill_replicas_and_wait(base, 5, app="glan_redis").json() == before
    r = entry(base, 5, "e2", live_count=1, hour=9)
    assert r.status_code == 200 and r.json()["session_idx"] == 2
    serve.delete("glan_redis")


def test_two_ingress_replicas_share_one_consistent_user_day(server, random_models, tmp_path):
    """Each ingress replica caches users and writes through with compare-and-set: requests of
    one user alternating between two replicas (stale caches) still give one consistent day."""
    from ray import serve

    from glan_ray.serving.app import build_app

    app = build_app(app_args(random_models, tmp_path, ingress_replicas=2))
    serve.run(app, name="glan_two", route_prefix="/two")
    base = f"{server}/two"
    seen = {requests.get(f"{base}/healthz").json()["replica"] for _ in range(40)}
    assert len(seen) == 2, "the proxy should spread requests over both ingress replicas"
    _start(base, 500)
    body = {"video_views": [1, 0, 0], "page_durations_s": [10.0, 0.0, 0.0],
            "exit_page": "featured", "n_switches": 0, "usage_time": 45.0}  # fmt: skip
    rtg = None
    for t in range(8):
        r = entry(base, 500, f"e{t}", live_count=1, hour=10)
        assert r.status_code == 200 and r.json()["session_idx"] == t, r.text
        assert rtg is None or r.json()["rtg_s"] == pytest.approx(rtg)
        r = end(base, 500, f"s{t}", **body)
        assert r.status_code == 200 and r.json()["sessions"] == t + 1, r.text
        rtg = r.json()["rtg_s"]
        again = end(base, 500, f"s{t}", **body)
        assert again.json() == r.json()  # a repeat on either replica answers the same
    st = requests.get(f"{base}/users/500/state").json()
    assert st["sessions"] == 8 and len(st["rewards_s"]) == 8 and not st["open_entry"]
    serve.delete("glan_two")


def test_state_store_writes_are_compare_and_set(redis_url, tmp_path):
    """A write based on an old version fails and changes nothing (both stores); concurrent
    writes of one version: exactly one wins."""
    import asyncio

    from glan_ray.serving.state import RedisStore, SQLiteStore

    async def check(store) -> None:
        assert await store.get(4242) is None
        assert await store.put(4242, {"n": 1}, 0)
        assert not await store.put(4242, {"n": 99}, 0)  # stale: the stored version is 1
        assert await store.get(4242) == (1, {"n": 1})
        assert await store.put(4242, {"n": 2}, 1)
        assert await store.get(4242) == (2, {"n": 2})
        # concurrent writers of one version (coalesced into one transaction): one wins
        done = await asyncio.gather(*(store.put(4242, {"n": 3 + i}, 2) for i in range(6)))
        assert sum(done) == 1 and (await store.get(4242))[0] == 3
        assert all(await asyncio.gather(*(store.put(5000 + i, {"i": i}, 0) for i in range(40))))

    async def both() -> None:
        await check(SQLiteStore(str(tmp_path / "s.sqlite3")))
        await check(RedisStore(redis_url))

    asyncio.run(both())
