"""Every parameter of the PLPM simulator, in one documented, frozen dataclass (SPEC §1).

Durations are in seconds, hours in [0, 24). Page index 0 = Featured, 1 = Explore, 2 = Following.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from glan_ray.checks import check_fields, ranged

# Tidal hourly intensity (relative app entries per hour, 0h..23h): valley 3–6h, a lunch peak
# 12–14h and the main evening peak 19–22h (KLAN Fig. 1, GLAN §1).
TIDAL_HOURLY: tuple[float, ...] = (
    0.55,
    0.35,
    0.20,
    0.10,
    0.08,
    0.08,
    0.10,
    0.30,
    0.55,
    0.60,
    0.65,
    0.75,
    1.35,
    1.45,
    1.25,
    0.75,
    0.70,
    0.75,
    0.95,
    1.60,
    1.85,
    1.90,
    1.70,
    1.00,
)

# Weekday multipliers of the session rate, Monday..Sunday: weekends are busier.
WEEKLY: tuple[float, ...] = (0.96, 0.94, 0.95, 0.97, 1.04, 1.22, 1.28)


@dataclass(frozen=True)
class SimConfig:
    """Parameters of the PLPM simulator. Every field has a sane default.

    **Calibration targets** (SPEC §1, issue 13), fixed before the defaults were tuned and checked
    on two seeds by ``tests/sim/test_calibration.py`` (3,000 users x 14 days, common random
    numbers; ``glan_ray.sim.calibration.TARGETS``, figures in ``bench/sim_calibration.py``):

    - under uniform landing Featured has the highest mean session usage and landing duration;
    - no constant page beats the logging policy by more than +1% on usage time, and
      always-Featured is within -3% of it (the production heuristic is a sound baseline);
    - the oracle beats logging by >= +8% usage and the best constant page by >= +6%, with a PDR
      >= 25% below logging's;
    - out of sample (each user's best constant page chosen on the first half of the days, scored
      on the second), per-user static preference and within-day dynamics each carry >= 30% of
      the oracle's gain over the best constant page, and >= 30% of users have a best page other
      than the population's;
    - greedy on the immediate session is >= 4% below the oracle (delayed reward).

    The value lies in user heterogeneity, not in a global page penalty: Featured fatigue is a
    hidden per-user sensitivity with a wide log-normal spread (``fatigue_sens_sigma``): the
    median user barely tires of Featured while one in ten tires 3.6 times as fast; the
    within-day intent is strong enough (``intent_std``, ``live_intent_gain``) to change the best
    page during the day; a drop-off
    costs returns today and tomorrow (``sat_drop``).
    """

    seed: int = 0
    """Root seed. Every random draw is keyed by (seed, user block, day, stream): common random
    numbers, so a user-day replays identically under any policy."""
    block_size: int = ranged(500, ge=1)
    """Users per RNG block. Shards are made of whole blocks, so results do not depend on how
    many Ray tasks generate the data."""
    start_weekday: int = ranged(0, ge=0, le=6)
    """Weekday of day 0 (0 = Monday)."""

    # ---- users (property 1) ----
    activity_probs: tuple[float, ...] = (0.25, 0.35, 0.25, 0.15)
    """Share of users per activity level (low .. very high)."""
    n_ages: int = ranged(6, ge=1)
    """Number of age buckets."""
    n_regions: int = ranged(8, ge=1)
    """Number of regions."""
    base_rate: tuple[float, ...] = (1.3, 3.5, 7.0, 13.0)
    """Mean planned app entries per day, per activity level."""
    rate_std: float = ranged(0.4, ge=0)
    """Log-normal spread of a user's entry rate around their activity level's mean."""
    active_logit: tuple[float, ...] = (0.6, 1.6, 2.6, 3.4)
    """Logit of being active on a day, per activity level, before weekly and retention terms."""
    page_affinity_mean: tuple[float, ...] = (0.0, -0.15, -0.45)
    """Population mean of the log-affinity for each page."""
    page_affinity_std: float = ranged(0.5, ge=0)
    """Spread of per-user log-affinities around the page means (personalisation headroom);
    centred per user, so it changes which page suits a user, not how much they consume."""
    duration_scale_std: float = ranged(0.12, ge=0)
    """Log-normal spread of a user's overall consumption scale."""
    fatigue_sens_sigma: float = ranged(1.0, ge=0)
    """Log-normal spread of a user's hidden Featured-fatigue sensitivity (median 1)."""

    # ---- arrivals (property 2) ----
    tidal_hourly: tuple[float, ...] = TIDAL_HOURLY
    """Relative entry intensity of each hour of the day."""
    max_planned: int = ranged(18, ge=1)
    """Cap on planned entries per user-day (array width)."""
    n_bonus_slots: int = ranged(2, ge=0)
    """Extra evening entries that a good morning on Following can unlock (property 6)."""
    bonus_hours: tuple[float, float] = (19.0, 23.0)
    """Hour window of the bonus evening entries."""

    # ---- sessions and pages (properties 3, 4) ----
    base_duration: tuple[float, ...] = (210.0, 150.0, 115.0)
    """Median landing-page consumption (s) per page for an average user: Featured is longest."""
    duration_sigma: float = ranged(0.5, ge=0)
    """Log-normal noise of page durations."""
    session_decay: float = ranged(0.12, ge=0)
    """Duration of the t-th session of the day scales as 1 / (1 + session_decay * t)."""
    max_page_duration: float = ranged(2400.0, gt=0)
    """Cap (s) on the consumption of one page in one session."""
    tau: float = ranged(40.0, gt=0)
    """Drop-off threshold τ (s): landing consumption below it is a drop-off (y_sw = 1)."""
    nav_logit: float = -1.2
    """Base logit of navigating from the landing page to another page."""
    nav_dropoff_boost: float = 1.9
    """Extra navigation logit after a drop-off: the user compensates on another page."""
    nav_pref_slope: float = 1.4
    """Navigation logit per unit of preference gap between target and landing page."""
    nav_fraction: float = ranged(0.7, ge=0, le=1)
    """Navigated-to pages get this fraction of their landing-mode duration."""
    video_length: tuple[float, ...] = (25.0, 20.0, 38.0)
    """Mean video length (s) per page, for video-view counts."""
    watch_fraction: tuple[float, ...] = (0.92, 0.78, 0.74)
    """Share of page time spent watching (the rest is browsing)."""
    browse_overhead: float = ranged(4.0, ge=0)
    """Seconds of app time per page visited on top of consumption."""

    # ---- latent intent (property 5) ----
    intent_std: float = ranged(0.6, ge=0)
    """Stationary std of the hidden per-page intent."""
    intent_persistence: float = ranged(0.85, ge=0, le=1)
    """Per-hour autocorrelation of the intent (it drifts within the day)."""
    live_rate: float = ranged(0.07, ge=0, le=1)
    """Followed creators live per hour per unit of social degree."""
    live_intent_gain: float = 0.5
    """Intent boost of Following per unit of log(1 + live creators), scaled by a hidden
    per-user sensitivity."""

    # ---- delayed reward (property 6) ----
    fatigue_rate: float = ranged(0.7, ge=0)
    """Fatigue gained per 10 minutes of Featured consumption (scaled per user)."""
    fatigue_on_featured: float = ranged(0.1, ge=0)
    """Log-duration penalty on Featured per unit of fatigue."""
    return_logit: float = 2.2
    """Base logit that a later planned entry is realised."""
    return_sat: float = 0.8
    """Return logit per unit of in-day satisfaction."""
    return_fatigue: float = 0.4
    """Return logit lost per unit of fatigue."""
    sat_good: float = 0.25
    """Satisfaction gained by a session without drop-off."""
    sat_drop: float = -1.2
    """Satisfaction change of a drop-off session."""
    bonus_logit: float = -3.5
    """Base logit of a bonus evening entry."""
    bonus_per_following: float = 2.2
    """Bonus-entry logit per satisfied morning Following session (morning = before noon)."""

    # ---- inter-day dynamics (property 7) ----
    weekly: tuple[float, ...] = WEEKLY
    """Session-rate multiplier per weekday."""
    weekly_active_logit: float = 1.5
    """Active-logit gain per unit of (weekly multiplier - 1)."""
    retention_sat: float = 0.6
    """Next-day active logit per unit of carried satisfaction."""
    retention_fatigue: float = 0.5
    """Next-day active logit lost per unit of carried fatigue."""
    sat_carry: float = ranged(0.6, ge=0, le=1)
    """Share of satisfaction carried to the next day."""
    fatigue_carry: float = ranged(0.4, ge=0, le=1)
    """Share of fatigue carried to the next day."""

    # ---- premise mechanisms (issue 27): every one off by default ----
    regime_gain: float = ranged(0.0, ge=0)
    """Hidden in-day regime: each user-day is a *resume* day (probability
    ``regime_resume_share``) or a *switch* day. Landing on the page the user last exited from
    (the previous session's exit; yesterday's last before the first session) scales that page's
    median duration by exp(+gain) on a resume day and exp(-gain) on a switch day, and every
    other page's the other way. ``obs`` shows the last exit page but not the regime, and the
    day's totals barely do (the logging policy resumes about half the time); the sequence
    (how resumed and switched landings held) does. 0: off."""
    regime_resume_share: float = ranged(0.5, ge=0, le=1)
    """Share of user-days in the resume regime (used when ``regime_gain`` > 0)."""
    lag_sessions: int = ranged(0, ge=0)
    """Lagged costs: a drop-off (and a Featured binge) adds a debt that matures this many
    sessions later and then lowers durations and returns for the rest of the day. 0: off."""
    lag_dur_cost: float = ranged(0.0, ge=0)
    """Log-duration penalty on every page per unit of matured debt."""
    lag_return_cost: float = ranged(0.0, ge=0)
    """Return logit lost per unit of matured debt."""
    lag_binge_s: float = ranged(600.0, gt=0)
    """A Featured landing longer than this (s) is a binge."""
    lag_binge_debt: float = ranged(0.0, ge=0)
    """Debt of a Featured binge (a drop-off's is 1)."""
    setpoint_return: float = ranged(0.0, ge=0)
    """Early-day set-point: the day's first session sets the return logit of the rest of the
    day, +this if it held (no drop-off), -this if it dropped. 0: off."""
    setpoint_dur: float = ranged(0.0, ge=0)
    """The set-point's log-duration shift on every page for the rest of the day (+/-)."""

    # ---- logging policy (property 8) ----
    log_resume_last: float = ranged(0.25, ge=0, le=1)
    """Logging policy: probability of resuming the last exited page."""
    log_most_visited: float = ranged(0.20, ge=0, le=1)
    """Logging policy: probability of the most visited page (14 days)."""
    log_epsilon: float = ranged(0.08, ge=0, le=1)
    """Logging policy: uniform randomisation; the rest of the mass goes to Featured."""
    rct_control_share: float = ranged(0.25, ge=0, lt=1)
    """RCT mode: share of user-days in the control arm (the rest split evenly over pages)."""

    def __post_init__(self) -> None:
        check_fields(self)
        checks = {
            "tidal_hourly": len(self.tidal_hourly) == 24,
            "weekly": len(self.weekly) == 7,
            "base_duration": len(self.base_duration) == 3,
            "activity_probs": abs(sum(self.activity_probs) - 1.0) < 1e-6,
            "base_rate": len(self.base_rate) == len(self.activity_probs),
            "active_logit": len(self.active_logit) == len(self.activity_probs),
            "log_epsilon": 0
            <= self.log_resume_last + self.log_most_visited + self.log_epsilon
            <= 1,
        }
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise ValueError(
                f"invalid SimConfig field(s): {', '.join(bad)} (lengths: 24 hourly, "
                "7 weekly, 3 pages, one per activity level; probabilities summing "
                "to 1)"
            )

    @property
    def n_slots(self) -> int:
        """Width of the per-day slot arrays: planned entries plus bonus entries."""
        return self.max_planned + self.n_bonus_slots

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SimConfig:
        """Build from a dict; unknown keys raise, naming them."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown SimConfig key(s): {', '.join(unknown)}")
        conv: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
        return cls(**conv)
