"""The policy interface: a batch of observations + per-user intra-day history in, actions out.

Any policy (heuristic, KLAN, GLAN, oracle) drives the simulator through this interface. At each
app-entry step the simulator calls ``act`` once for the B users entering the app at that step;
``rows`` index those users within the shard, and the ``IntraDayHistory`` holds every user's
completed sessions of today. ``begin_day`` is called once per day before any entry, with the
daily features of every user (what L-RTG consumes).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from glan_ray.schema import N_PAGES
from glan_ray.sim.dynamics import Latent


@dataclass
class IntraDayHistory:
    """Completed sessions of today for all N users of a shard; S = slots per day."""

    length: np.ndarray  # (N,) sessions completed today
    obs: np.ndarray  # (N, S, OBS_DIM) observation at each past entry
    action: np.ndarray  # (N, S) int8 landing page, -1 where no session
    hour: np.ndarray  # (N, S) entry hour
    dur: np.ndarray  # (N, S, 3) consumption per page (s)
    video_views: np.ndarray  # (N, S, 3)
    n_switches: np.ndarray  # (N, S)
    y_sw: np.ndarray  # (N, S) drop-off flag
    usage: np.ndarray  # (N, S) session usage time (s): the naive reward
    exit_page: np.ndarray  # (N, S) int8 page the session exited from, -1 where no session
    watch: np.ndarray  # (N, S) video watch time of the session (s)

    @classmethod
    def empty(cls, n: int, s: int, obs_dim: int) -> IntraDayHistory:
        return cls(
            length=np.zeros(n, dtype=np.int64),
            obs=np.zeros((n, s, obs_dim), dtype=np.float32),
            action=np.full((n, s), -1, dtype=np.int8),
            hour=np.zeros((n, s), dtype=np.float32),
            dur=np.zeros((n, s, 3), dtype=np.float32),
            video_views=np.zeros((n, s, 3), dtype=np.int16),
            n_switches=np.zeros((n, s), dtype=np.int8),
            y_sw=np.zeros((n, s), dtype=np.int8),
            usage=np.zeros((n, s), dtype=np.float32),
            exit_page=np.full((n, s), -1, dtype=np.int8),
            watch=np.zeros((n, s), dtype=np.float32),
        )


@dataclass
class Observation:
    """One decision step for B users."""

    rows: np.ndarray  # (B,) index of each user within the shard (into IntraDayHistory)
    user_id: np.ndarray  # (B,) int64
    obs: np.ndarray  # (B, OBS_DIM) float32, see schema.OBS_FEATURES
    hour: np.ndarray  # (B,)
    weekday: int
    entries_today: np.ndarray  # (B,) sessions already completed today
    last_exit: np.ndarray  # (B,) page the user last exited
    most_visited: np.ndarray  # (B,) page landed on most over 14 days
    latent: Latent | None = None  # filled only for policies with ``privileged = True``
    live_count: np.ndarray | None = None  # (B,) followed creators live now (the raw count)


class Policy:
    """Base class of landing-page policies. Subclasses implement ``probs``."""

    name: str = "policy"
    privileged: bool = False
    """True for policies that see the simulator's hidden state (the oracle)."""

    def begin_day(self, day: int, features: dict[str, np.ndarray]) -> None:
        """Called once per day with the daily features of N users: ``user_id``, the schema
        ``daily`` profile and statistics columns, ``seq_sessions``/``seq_usage``, and the
        day's ``weekday`` and each user's ``last_exit`` page (N,), what a client knows."""

    def probs(self, obs: Observation, history: IntraDayHistory) -> np.ndarray:
        """Action probabilities (B, 3); a deterministic policy returns one-hot rows."""
        raise NotImplementedError

    def act(self, obs: Observation, history: IntraDayHistory, u: np.ndarray):
        """Sample actions (B,) by inverse CDF of ``probs`` with the given uniforms (CRN).

        Returns (actions int8 (B,), probabilities (B, 3)).
        """
        p = np.asarray(self.probs(obs, history), dtype=np.float64)
        if p.shape != (len(obs.rows), N_PAGES):
            raise ValueError(
                f"{self.name}: probs must have shape {(len(obs.rows), N_PAGES)}, got {p.shape}"
            )
        return sample_pages(p, u).astype(np.int8), p


def sample_pages(probs: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Pages (B,) int64 drawn from ``probs`` (B, P) by inverse CDF of uniforms ``u`` (B,) in
    [0, 1): the simulator's common-random-number draw (P = 3), and Serve's (``policy.explore``;
    P: its app's pages)."""
    cdf = np.cumsum(np.asarray(probs, dtype=np.float64), axis=1)
    u = np.asarray(u, dtype=np.float64)
    return (u[:, None] > cdf / cdf[:, -1:]).sum(1).clip(0, cdf.shape[1] - 1).astype(np.int64)
