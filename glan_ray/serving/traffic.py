"""Simulated users over HTTP: the simulator's users play days against a running Serve app.

``ServePolicy`` is a simulator ``Policy`` whose pages come from the app: at the start of a day
it posts every user's day start (the features a client knows, with the page the user last
exited), at each app entry it first posts the session end of each entering user's previous
session (what the simulator played: per-page durations, views, switches, usage, exit page, page
sequence, watch time) and then the entry, and the page the app answers is the page the
simulator plays, with the app's serving probabilities as its logged propensity. ``end_day``
posts the day's last sessions' ends. Event ids are those of ``decision_log.from_day_log``
(``d<day>``, ``e<day>-<t>``, ``s<day>-<t>``), so a day's decision log from Serve and the log of
the same day played in-process can be compared row by row.

``ServeClient`` is bounded: loopback URLs only (a load generator is not pointed at someone
else's service), at most ``max_rps`` requests a second, at most ``max_seconds`` in all; a 5xx or
a lost connection is retried with the same body and event id (the app de-duplicates), after the
answer's ``Retry-After`` when it has one (the app's 503) and an exponential back-off otherwise
(Serve's plain-text 500 when the ingress replica died with the request in flight carries none);
a 4xx is a bug of the driver and raises naming the request.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

import numpy as np
import requests

from glan_ray.checks import check_fields, ranged
from glan_ray.data.decision_log import DAY_KEYS, page_sequence
from glan_ray.schema import N_PAGES, PAGES
from glan_ray.sim.config import SimConfig
from glan_ray.sim.engine import DayLog, simulate
from glan_ray.sim.interface import IntraDayHistory, Observation, Policy

logger = logging.getLogger(__name__)

LOOPBACK = {"127.0.0.1", "localhost", "::1"}
DAY_FEATURES = tuple(k for k in DAY_KEYS if k != "weekday")
"""``begin_day`` features sent as the day start's ``features`` (with the weekday)."""


class TrafficError(RuntimeError):
    """The app refused a request of the driver (4xx), kept failing, or the run ran out of time."""


@dataclass(frozen=True)
class TrafficConfig:
    """How hard and how long the driver may push the app."""

    url: str = "http://127.0.0.1:8000"
    """Base URL of the app (its route prefix included); loopback hosts only."""
    max_rps: float = ranged(200.0, gt=0.0)
    """Most requests started per second, over all threads."""
    max_seconds: float = ranged(600.0, gt=0.0)
    """Wall-clock budget of the whole run (s); past it the next request raises."""
    concurrency: int = ranged(8, ge=1, le=64)
    """Requests in flight at once (the users entering at one step are posted together)."""
    retries: int = ranged(8, ge=0, le=100)
    """Retries of a request that got a 5xx or no answer (same body and event id)."""
    timeout_s: float = ranged(30.0, gt=0.0)
    """Timeout of one HTTP request (s)."""
    max_wait_s: float = ranged(10.0, gt=0.0)
    """Longest wait before a retry (s), whatever ``Retry-After`` asks."""

    def __post_init__(self) -> None:
        check_fields(self)
        host = urlparse(self.url).hostname
        if urlparse(self.url).scheme not in ("http", "https") or host is None:
            raise ValueError(f"url: expected http://host:port[/prefix], got {self.url!r}")
        if host not in LOOPBACK:
            raise ValueError(
                f"url: the traffic driver only talks to a loopback host {sorted(LOOPBACK)}, "
                f"got {host!r}"
            )


@dataclass
class TrafficStats:
    """What the client sent and saw."""

    requests: int = 0
    """HTTP requests sent, retries included."""
    retried: int = 0
    """Requests that got a 5xx or no answer and were sent again."""
    retry_after: int = 0
    """Of those, answers that carried ``Retry-After`` (the app's 503)."""
    serve_500: int = 0
    """Of those, Serve's own plain-text 500 (the ingress replica died mid-request)."""
    by_endpoint: dict[str, int] = field(default_factory=dict)
    """Events acknowledged per endpoint (``day``, ``entry``, ``session_end``)."""
    latency_s: list[float] = field(default_factory=list)
    """Latency of every acknowledged request (s)."""

    def summary(self) -> dict[str, Any]:
        lat = np.asarray(self.latency_s) if self.latency_s else np.zeros(1)
        return {"requests": self.requests, "retried": self.retried,
                "retried_after_retry_after": self.retry_after, "retried_serve_500": self.serve_500,
                "events": dict(self.by_endpoint),
                "latency_p50_ms": float(np.percentile(lat, 50) * 1e3),
                "latency_p99_ms": float(np.percentile(lat, 99) * 1e3)}  # fmt: skip


class ServeClient:
    """Posts events to the app within ``TrafficConfig``'s bounds."""

    def __init__(self, cfg: TrafficConfig) -> None:
        self.cfg = cfg
        self.base = cfg.url.rstrip("/")
        self.stats = TrafficStats()
        self.http = requests.Session()
        self.pool = ThreadPoolExecutor(cfg.concurrency, thread_name_prefix="traffic")
        self.lock = threading.Lock()
        self.start = time.monotonic()
        self.next_slot = self.start

    def _wait_turn(self) -> None:
        with self.lock:
            now = time.monotonic()
            if now - self.start > self.cfg.max_seconds:
                raise TrafficError(f"the run went past max_seconds={self.cfg.max_seconds:g}")
            at = max(now, self.next_slot)
            self.next_slot = at + 1.0 / self.cfg.max_rps
            self.stats.requests += 1
        if at > now:
            time.sleep(at - now)

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        for attempt in range(self.cfg.retries + 1):
            self._wait_turn()
            t0 = time.monotonic()
            wait = min(2.0, 0.1 * 2**attempt)
            try:
                r = self.http.post(f"{self.base}{path}", json=body, timeout=self.cfg.timeout_s)
            except requests.RequestException as e:
                why = f"no answer ({type(e).__name__})"
            else:
                if r.status_code < 300:
                    with self.lock:
                        self.stats.latency_s.append(time.monotonic() - t0)
                        kind = path.rsplit("/", 1)[-1]
                        self.stats.by_endpoint[kind] = self.stats.by_endpoint.get(kind, 0) + 1
                    return r.json()
                if r.status_code < 500:
                    raise TrafficError(
                        f"POST {path} (event {body.get('event_id')!r}): {r.status_code} "
                        f"{r.text[:300]}"
                    )
                why, wait = self._retry_wait(r, wait)
            if attempt < self.cfg.retries:
                with self.lock:
                    self.stats.retried += 1
                logger.info("POST %s: %s; retrying the same event in %.1f s (%d/%d)", path, why,
                            wait, attempt + 1, self.cfg.retries)  # fmt: skip
                time.sleep(wait)
        raise TrafficError(f"POST {path} (event {body.get('event_id')!r}) kept failing: {why}")

    def _retry_wait(self, r: requests.Response, backoff: float) -> tuple[str, float]:
        """Why a 5xx is retried and how long to wait: its ``Retry-After`` (s) when it has one,
        else the back-off; at most ``max_wait_s``."""
        after = r.headers.get("Retry-After", "")
        plain = not r.headers.get("content-type", "").startswith("application/json")
        with self.lock:
            self.stats.retry_after += bool(after)
            self.stats.serve_500 += r.status_code == 500 and plain
        why = f"{r.status_code} {r.text[:120]}"
        if r.status_code == 500 and plain:
            why += " (Serve's proxy: the ingress replica died with the request in flight)"
        wait = float(after) if after.isdigit() else backoff
        return why, min(wait, self.cfg.max_wait_s)

    def post_many(self, calls: Sequence[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
        """Post concurrently (``concurrency`` at once); answers in the order of ``calls``."""
        return list(self.pool.map(lambda c: self.post(*c), calls))

    def close(self) -> None:
        self.pool.shutdown(wait=True)
        self.http.close()


def day_start_body(day: int, features: dict[str, np.ndarray], row: int) -> dict[str, Any]:
    """The ``POST /users/{id}/day`` body of user ``row`` from ``begin_day``'s features."""
    feats = {k: np.asarray(features[k][row]).tolist() for k in DAY_FEATURES}
    feats["weekday"] = int(features["weekday"][row])
    return {"event_id": f"d{day}", "day": day, "features": feats,
            "last_exit_page": PAGES[int(features["last_exit"][row])]}  # fmt: skip


def session_end_body(day: int, hist: IntraDayHistory, row: int, t: int) -> dict[str, Any]:
    """The ``POST /users/{id}/session_end`` body of session ``t`` of user ``row`` as the
    simulator played it (``IntraDayHistory``)."""
    landing, n_sw, exit_page = (int(hist.action[row, t]), int(hist.n_switches[row, t]),
                                int(hist.exit_page[row, t]))  # fmt: skip
    seq = page_sequence(landing, n_sw, exit_page)
    return {
        "event_id": f"s{day}-{t}",
        "day": day,
        "page_durations_s": [float(x) for x in hist.dur[row, t]],
        "video_views": [int(x) for x in hist.video_views[row, t]],
        "n_switches": n_sw,
        "usage_time": float(hist.usage[row, t]),
        "exit_page": PAGES[exit_page],
        "page_seq": None if seq is None else [PAGES[p] for p in seq],
        "watch_time_s": float(hist.watch[row, t]),
    }


class ServePolicy(Policy):
    """The app's pages for the simulator's users (see the module docstring)."""

    name = "serve"

    def __init__(self, client: ServeClient) -> None:
        self.client = client
        self.day = -1
        self.user_id = np.zeros(0, dtype=np.int64)
        self.ended = np.zeros(0, dtype=np.int64)  # (N,) session ends posted today
        self.hist: IntraDayHistory | None = None
        self.rewards: dict[tuple[int, int, int], float] = {}
        """(user id, day, session) -> the app's reward r̂ of that session (s)."""

    def begin_day(self, day: int, features: dict[str, np.ndarray]) -> None:
        self.day, self.hist = day, None
        self.user_id = np.asarray(features["user_id"], dtype=np.int64)
        self.ended = np.zeros(len(self.user_id), dtype=np.int64)
        calls = [(f"/users/{int(u)}/day", day_start_body(day, features, i))
                 for i, u in enumerate(self.user_id)]  # fmt: skip
        self.client.post_many(calls)

    def _post_ends(self, rows: np.ndarray) -> None:
        hist = self.hist
        if hist is None:
            return
        calls, keys = [], []
        for row in rows:
            for t in range(int(self.ended[row]), int(hist.length[row])):
                uid = int(self.user_id[row])
                calls.append((f"/users/{uid}/session_end", session_end_body(self.day, hist, row,
                                                                            t)))  # fmt: skip
                keys.append((uid, self.day, t))
        # one session end per user at a time: a user's ends are in order, users in parallel
        for key, got in zip(keys, self.client.post_many(calls), strict=True):
            self.rewards[key] = float(got["reward_s"])
        self.ended[rows] = hist.length[rows]

    def probs(self, obs: Observation, history: IntraDayHistory) -> np.ndarray:
        raise NotImplementedError("ServePolicy decides in act (the app draws the page)")

    def act(
        self, obs: Observation, history: IntraDayHistory, u: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        if obs.live_count is None:
            raise ValueError("ServePolicy: the observation has no live_count (the app needs it)")
        self.hist = history
        self._post_ends(obs.rows)
        calls = [(f"/users/{int(uid)}/entry",
                  {"event_id": f"e{self.day}-{int(t)}", "day": self.day, "hour": float(h),
                   "live_count": int(lc)})
                 for uid, t, h, lc in zip(obs.user_id, obs.entries_today, obs.hour,
                                          obs.live_count, strict=True)]  # fmt: skip
        got = self.client.post_many(calls)
        pages = np.array([g["page_index"] for g in got], dtype=np.int8)
        probs = np.array([g["probs"] for g in got], dtype=np.float64).reshape(-1, N_PAGES)
        return pages, probs

    def end_day(self) -> None:
        """Post the session ends not posted yet (each user's last sessions of the day)."""
        if self.hist is not None:
            self._post_ends(np.arange(len(self.user_id)))


def play(
    cfg: SimConfig,
    policy: Policy,
    first_user: int,
    n_users: int,
    days: int,
    burn_in_days: int = 0,
    burn_in_policy: Policy | None = None,
) -> Iterator[DayLog]:
    """Play users [first_user, first_user + n_users) for ``burn_in_days`` days in-process under
    ``burn_in_policy`` (default: the logging heuristic), then ``days`` days under ``policy``
    (a ``ServePolicy``: through the app; any other: in-process, the same days); yields those
    days' logs as the simulator recorded them."""
    from glan_ray.sim.baselines import LoggingPolicy

    state = None
    if burn_in_days:
        for log in simulate(cfg, first_user, n_users, burn_in_days,
                            burn_in_policy or LoggingPolicy(cfg)):  # fmt: skip
            state = log.next_state
    for log in simulate(cfg, first_user, n_users, days, policy, first_day=burn_in_days,
                        start=state):  # fmt: skip
        if isinstance(policy, ServePolicy):
            policy.end_day()
            logger.info("traffic: day %d played through %s (%d sessions)", log.day,
                        policy.client.base, len(log.sessions.get("row", ())))  # fmt: skip
        yield log


__all__ = ["ServeClient", "ServePolicy", "TrafficConfig", "TrafficError", "play"]
