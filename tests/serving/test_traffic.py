"""Simulated users over HTTP (``serving.traffic``): the driver's bounds and bodies, and (slow)
the parity of a day played through the app with the same day played in-process: the same
pages, propensities, rewards and observations, and decision-log rows that become the same
datasets as the in-process day's log (``decision_log.from_day_log``)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from glan_ray.data import decision_log as dlog
from glan_ray.schema import PAGES
from glan_ray.serving.bodies import SessionEnd, StartDay
from glan_ray.serving.traffic import (
    ServeClient,
    ServePolicy,
    TrafficConfig,
    TrafficError,
    day_start_body,
    play,
    session_end_body,
)
from glan_ray.sim.baselines import LoggingPolicy
from glan_ray.sim.config import SimConfig
from glan_ray.sim.engine import simulate


@pytest.mark.parametrize(
    ("over", "match"),
    [({"url": "http://10.0.0.1:8000"}, "loopback"), ({"url": "ftp://127.0.0.1"}, "url"),
     ({"max_rps": 0.0}, "max_rps"), ({"concurrency": 0}, "concurrency")],
)  # fmt: skip
def test_the_driver_refuses_other_hosts_and_bad_bounds(over, match):
    with pytest.raises(ValueError, match=match):
        TrafficConfig(**over)


def test_the_driver_stops_at_its_time_budget_and_names_a_refused_request():
    client = ServeClient(TrafficConfig(url="http://127.0.0.1:9", max_seconds=0.01, retries=0))
    client.start -= 1.0
    with pytest.raises(TrafficError, match="max_seconds"):
        client.post("/users/1/day", {"event_id": "d0"})
    client = ServeClient(TrafficConfig(url="http://127.0.0.1:9", retries=1, timeout_s=0.5))
    with pytest.raises(TrafficError, match=r"/users/1/day \(event 'd0'\) kept failing"):
        client.post("/users/1/day", {"event_id": "d0"})
    assert (client.stats.requests, client.stats.retried) == (2, 1)


def test_simulated_days_make_valid_request_bodies():
    """Every day start and session end of a simulated day is a body the app accepts, with what
    the simulator played (its page sequence included)."""
    cfg = SimConfig(seed=2, block_size=50)

    class Keep(LoggingPolicy):  # keeps what a ServePolicy sees
        def begin_day(self, day, features):
            self.features = features

        def act(self, obs, history, u):
            self.hist = history
            return super().act(obs, history, u)

    pol = Keep(cfg)
    for log in simulate(cfg, 0, 50, 2, pol):
        for row in range(50):
            StartDay.model_validate(day_start_body(log.day, pol.features, row))
    s = log.sessions
    assert len(s["row"]) > 20
    for i in range(len(s["row"])):
        body = SessionEnd.model_validate(
            session_end_body(log.day, pol.hist, s["row"][i], s["session_idx"][i])
        )
        n = s["seq_len"][i]
        assert body.page_seq == [PAGES[p] for p in s["page_seq"][i][:n]]
        assert body.n_switches == n - 1 and body.usage_time == pytest.approx(s["usage"][i])
        assert body.watch_time_s == pytest.approx(s["watch"][i], rel=1e-6)


def _flat(values: list) -> np.ndarray:
    out: list[float] = []
    for v in values:
        out.extend(_flat(v) if isinstance(v, list) else [np.nan if v is None else v])
    return np.asarray(out, dtype=float)


def _tables(records) -> dict[str, pa.Table]:
    return dlog.to_datasets(records).tables


# heavy: ~40 s; HTTP == offline policy is in CI
# (test_app.py::test_a_user_day_over_http_matches_the_offline_glan_policy)
@pytest.mark.heavy
@pytest.mark.slow
def test_days_over_http_match_the_same_days_in_process(serve_http, random_models, tmp_path):
    from ray import serve

    from glan_ray.policy.registry import make_arm
    from glan_ray.serving.app import build_app
    from glan_ray.serving.log import flush
    from tests.serving.conftest import app_args

    cfg = SimConfig(seed=5, block_size=30)
    n, burn, days = 30, 3, 2
    inproc = make_arm("glan", random_models, cfg)
    logs_in = list(play(cfg, inproc, 0, n, days, burn_in_days=burn))
    args = app_args(random_models, tmp_path)
    serve.run(build_app(args), name="glan_traffic", route_prefix="/traffic")
    client = ServeClient(TrafficConfig(url=f"{serve_http}/traffic", max_seconds=300))
    over_http = ServePolicy(client)
    logs_http = list(play(cfg, over_http, 0, n, days, burn_in_days=burn))
    client.close()
    print("traffic:", client.stats.summary())
    for a, b in zip(logs_in, logs_http, strict=True):
        sa, sb = a.sessions, b.sessions
        assert len(sa["row"]) > 20 and np.array_equal(sa["row"], sb["row"])
        assert np.array_equal(sa["action"], sb["action"]), "the app served other pages"
        np.testing.assert_allclose(sb["propensity"], sa["propensity"], rtol=1e-6)
        np.testing.assert_allclose(sb["obs"], sa["obs"], rtol=1e-5, atol=1e-6)
        for k in ("usage", "dur", "views", "seq_len", "hour"):
            assert np.array_equal(sa[k], sb[k]), k
    # rewards: the app's r̂ of the last day is the in-process policy's (which scores a session
    # at the user's next entry: a day's last session it never scores)
    last = logs_in[-1]
    s = last.sessions
    compared = 0
    for i in range(len(s["row"])):
        uid, t = int(last.users.user_id[s["row"][i]]), int(s["session_idx"][i])
        assert (uid, last.day, t) in over_http.rewards
        mine = inproc._reward[s["row"][i], t]
        if np.isfinite(mine):
            assert over_http.rewards[(uid, last.day, t)] == pytest.approx(mine, rel=1e-5,
                                                                          abs=1e-4)  # fmt: skip
            compared += 1
    assert compared > 5
    # the app's decision log: every event once, the same datasets as the in-process days' log
    got = flush(args["state_store"], str(tmp_path / "log"))
    read = dlog.read_log(str(tmp_path / "log"))
    n_events = days * n + 2 * sum(len(lg.sessions["row"]) for lg in logs_in)
    assert got["rows"] == len(read.records) == n_events and read.duplicates == 0
    served = _tables(read.records)
    simulated = _tables(r for lg in logs_in for r in dlog.from_day_log(lg))
    for name, table in simulated.items():
        other = served[name]
        assert other.num_rows == table.num_rows > 0, name
        for col in table.column_names:
            x, y = table.column(col).to_pylist(), other.column(col).to_pylist()
            base = table.schema.field(col).type
            while pa.types.is_list(base) or pa.types.is_fixed_size_list(base):
                base = base.value_type
            if col in ("obs", "next_obs"):  # built by the app, as the simulator does
                np.testing.assert_allclose(_flat(y), _flat(x), rtol=1e-5, atol=1e-6)
            elif pa.types.is_floating(base) and col not in ("propensity", "hour"):
                # seconds: the app sums the float32 values it was sent, the simulator float64
                assert [len(v) if isinstance(v, list) else 0 for v in y] == [
                    len(v) if isinstance(v, list) else 0 for v in x
                ], f"{name}.{col}"
                np.testing.assert_allclose(_flat(y), _flat(x), rtol=1e-6, err_msg=f"{name}.{col}")
            else:  # ids, pages, counts, flags, propensities, hours: exactly
                assert x == y, f"{name}.{col}"
    serve.delete("glan_traffic")
