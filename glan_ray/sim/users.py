"""User profiles (SPEC §1, property 1): static features plus hidden per-user parameters."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from glan_ray.sim.config import SimConfig
from glan_ray.sim.rng import blocks_of, draw


@dataclass
class Users:
    """Profiles of a contiguous range of users; every array has the user axis first (N,)."""

    user_id: np.ndarray  # (N,) int64
    age: np.ndarray  # (N,) int8, observed
    region: np.ndarray  # (N,) int8, observed
    activity: np.ndarray  # (N,) int8, observed activity level
    social_degree: np.ndarray  # (N,) float32, observed: followed creators who go live
    affinity: np.ndarray  # (N, 3) hidden log-affinity per page
    rate: np.ndarray  # (N,) hidden planned entries per day
    dur_scale: np.ndarray  # (N,) hidden multiplier of all durations
    fatigue_sens: np.ndarray  # (N,) hidden Featured-fatigue sensitivity
    live_sens: np.ndarray  # (N,) hidden reaction of intent to live creators
    active_logit: np.ndarray  # (N,) hidden base logit of being active

    def __len__(self) -> int:
        return len(self.user_id)


def make_users(cfg: SimConfig, first_user: int, n_users: int) -> Users:
    """Draw the profiles of users [first_user, first_user + n_users), block by block."""
    probs = np.asarray(cfg.activity_probs)

    def one_block(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
        activity = rng.choice(len(probs), size=n, p=probs)
        age = rng.integers(0, cfg.n_ages, size=n)
        region = rng.integers(0, cfg.n_regions, size=n)
        social = rng.lognormal(mean=1.0, sigma=0.9, size=n)
        # Relative tastes: centred per user, so they move the choice of page, not the total.
        z = rng.normal(size=(n, 3))
        z -= z.mean(1, keepdims=True)
        aff = np.asarray(cfg.page_affinity_mean) + cfg.page_affinity_std * np.sqrt(1.5) * z
        # Young users lean to Explore, socially connected users to Following.
        aff[:, 1] += 0.08 * (cfg.n_ages / 2 - age)
        aff[:, 2] += 0.25 * (np.log1p(social) - 1.0)
        return {
            "activity": activity,
            "age": age,
            "region": region,
            "social": social,
            "affinity": aff,
            "rate_noise": rng.lognormal(0.0, cfg.rate_std, size=n),
            "dur_scale": rng.lognormal(0.0, cfg.duration_scale_std, size=n),
            "fatigue_sens": rng.lognormal(0.0, cfg.fatigue_sens_sigma, size=n),
            "live_sens": rng.gamma(2.0, 0.5, size=n),
            "active_noise": rng.normal(0.0, 0.5, size=n),
        }

    blocks = blocks_of(first_user, n_users, cfg.block_size)
    d = draw(blocks, cfg.seed, -1, "users", cfg.block_size, one_block)
    activity = d["activity"]
    return Users(
        user_id=np.arange(first_user, first_user + n_users, dtype=np.int64),
        age=d["age"].astype(np.int8),
        region=d["region"].astype(np.int8),
        activity=activity.astype(np.int8),
        social_degree=d["social"].astype(np.float32),
        affinity=d["affinity"],
        rate=np.asarray(cfg.base_rate)[activity] * d["rate_noise"],
        dur_scale=d["dur_scale"],
        fatigue_sens=d["fatigue_sens"],
        live_sens=d["live_sens"],
        active_logit=np.asarray(cfg.active_logit)[activity] + d["active_noise"],
    )
