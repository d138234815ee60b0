"""``glan-ray diagnose``: the premise diagnostics of a world or of any log, as JSON, PNGs and a
Markdown report (``diagnosis.json``, ``diagnosis.md``, ``history_by_index.png``, ``delay.png``).

``diagnose_world`` simulates the world's logging policy (with the hidden state recorded) and
measures everything, including the calibration targets; ``diagnose_data`` reads a ``sessions``
dataset (simulated, a deployment's ``logs-to-datasets`` output, a team's logs) and measures what
logs allow: history information without the latent, return consistency, and the delay profile
read from logs (the page's explained variance of the usage some sessions later).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from glan_ray.diagnose import consistency, history_gain
from glan_ray.diagnose.delay import DELAYED_FROM, crn_profile
from glan_ray.diagnose.frame import SessionFrame, from_dataset, from_day_logs
from glan_ray.diagnose.targets import PREMISE_TARGETS, met

logger = logging.getLogger(__name__)

LOG_LAGS = (0, 1, 2, 3, 4, 5)
"""Lags of the log-based delay profile."""
LOG_MIN_GAIN = 0.02
"""The log-based delay share is reported only when the page's R² gains over the lags add up to
this much: one fit's gain is noise of about ±0.005."""


@dataclass
class Diagnosis:
    """Everything one diagnosis measured (``diagnosis.json``)."""

    source: str  # "world <name> (seed S)" or the dataset path
    sessions: int
    user_days: int
    sessions_per_day: float
    history: dict[str, Any]
    consistency: dict[str, Any]
    delay: dict[str, Any]
    calibration: dict[str, Any] | None = None
    targets: list[dict[str, Any]] = field(default_factory=list)

    def value(self, name: str) -> float | None:
        """The measured value of a premise target, None where not measured."""
        values = {
            "history_gap_closed": self.history.get("gap_closed"),
            "delayed_share": self.delay.get("delayed_share"),
            "return_consistency_ipw": self.consistency.get(
                "ipw_paired_gain_low",
                self.consistency.get("ipw_gain_low", self.consistency["ipw_gain"]),
            ),
        }
        return values[name]


def _history(f: SessionFrame, seed: int, epochs: int | None = None) -> dict[str, Any]:
    fit = history_gain.FitConfig(seed=seed)
    if epochs is not None:
        fit = history_gain.FitConfig(seed=seed, epochs=epochs)
    return asdict(history_gain.measure(f, fit))


_CONSISTENCY_KEYS: dict[str, tuple[str, str]] = {
    # report key: (part, R2Gain attribute)
    "r2_state": ("plain", "r2_state"),
    "plain_gain": ("plain", "gain"),
    "ipw_r2_state": ("ipw", "r2_state"),
    "ipw_gain": ("ipw", "gain"),
    "ipw_gain_se": ("ipw", "gain_se"),
    "ipw_share": ("ipw", "share"),
    "ipw_paired_gain": ("ipw", "paired_gain"),
    "ipw_paired_gain_se": ("ipw", "paired_gain_se"),
    "hist_plain_gain": ("hist_plain", "gain"),
    "hist_ipw_gain": ("hist_ipw", "gain"),
    "hist_ipw_paired_gain": ("hist_ipw", "paired_gain"),
}


def _consistency(
    f: SessionFrame, seeds: int, parts: tuple[str, ...] = consistency.PARTS
) -> dict[str, Any]:
    """Mean and sd over ``seeds`` splits of the R² gains of ``parts`` (one split's figure is
    noisy)."""
    runs = [consistency.measure(f, seed=s, parts=parts) for s in range(seeds)]
    out: dict[str, Any] = {"splits": seeds, "sessions": {p: len(f) for p in parts}}
    for key, (part, attr) in _CONSISTENCY_KEYS.items():
        if part not in parts:
            continue
        x = np.array([getattr(getattr(r, part), attr) for r in runs], dtype=float)
        out[key], out[key + "_sd"] = float(x.mean()), float(x.std(ddof=1)) if len(x) > 1 else 0.0
    if "ipw" in parts:
        # the lower 95% bounds: the splits' mean less 1.96 bootstrap standard errors (their
        # mean: the splits share training users, so no 1/sqrt(splits) is taken). The target
        # reads the paired one: one model's prediction for the logged page against its mean
        # over the pages (consistency.R2Gain.paired_gain), free of two fits' noise.
        out["ipw_gain_low"] = out["ipw_gain"] - 1.96 * out["ipw_gain_se"]
        out["ipw_paired_gain_low"] = out["ipw_paired_gain"] - 1.96 * out["ipw_paired_gain_se"]
    return out


def _log_delay(f: SessionFrame, seed: int) -> dict[str, Any]:
    """The page's IPW R² gain on the usage ``lag`` sessions later, per lag."""
    gains = [max(consistency.r2_gain(f, f.usage_at_lag(k), ipw=True, seed=seed).gain, 0.0)
             for k in LOG_LAGS]  # fmt: skip
    total = sum(gains)
    share = sum(g for k, g in zip(LOG_LAGS, gains, strict=True) if k >= DELAYED_FROM)
    return {
        "kind": "logs: the page's IPW R² gain on usage by lag",
        "lags": [str(k) for k in LOG_LAGS],
        "r2_gain": gains,
        # a share of gains that are all noise means nothing: none below LOG_MIN_GAIN in all
        "delayed_share_logs": share / total if total >= LOG_MIN_GAIN else None,
    }


def _check(d: Diagnosis) -> None:
    d.targets = []
    for t in PREMISE_TARGETS:
        v = d.value(t.name)
        d.targets.append({"name": t.name, "description": t.description, "required": t.required,
                          "value": v, "met": None if v is None else met(t, v)})  # fmt: skip


HISTORY_USERS = 8000
"""Users of the simulated log the history information reads. The sequence predictor learns
inference from the day's sessions and is data-limited at 3,000 users: on the premise world's
tuning seeds 303 and 606 it closed 0.45 and 0.49 of the latent gap at 3,000 users and 0.575 and
0.578 at 8,000 (the default world: 0.06 at 8,000)."""

CONSISTENCY_USERS = 20_000
"""Users of the simulated log the return consistency reads: at 3,000 users the paired gain's
standard error (~0.002) exceeds the premise world's gain (~0.002); at 20,000 it is ~0.001."""


def diagnose_world(
    world: str,
    seed: int = 0,
    users: int = HISTORY_USERS,
    days: int = 10,
    burn_in: int = 3,
    consistency_splits: int = 3,
    calibration_users: int = 2000,
    calibration_days: int = 14,
    epochs: int | None = None,
    consistency_users: int = CONSISTENCY_USERS,
) -> Diagnosis:
    """Diagnose simulated world ``world``: its logging policy's log over ``days`` days (the
    first ``burn_in`` dropped), the CRN delay profile and the calibration targets
    (``calibration_users`` x ``calibration_days``). The return consistency reads a larger log
    of ``consistency_users`` users (the page's share of a day's return is small: its standard
    error shrinks with the log). ``epochs`` caps the predictors' training (None:
    ``FitConfig``'s), for smoke runs."""
    from glan_ray.sim.baselines import make_policy
    from glan_ray.sim.calibration import measure as calibrate
    from glan_ray.sim.engine import simulate
    from glan_ray.sim.worlds import world_config

    cfg = world_config(world, seed=seed)
    logger.info("diagnose: simulating world %s (seed %d), %d users x %d days", world, seed,
                users, days)  # fmt: skip
    logs = list(simulate(cfg, 0, users, days, make_policy("logging", cfg), keep_latent=True))
    f = from_day_logs(logs[burn_in:])
    logger.info("diagnose: history information (4 predictors)")
    hist = _history(f, seed, epochs)
    del logs
    if consistency_users != users:
        # the target's measure (IPW, s = obs) on its own larger log; the others on this one
        logger.info("diagnose: return consistency (%d splits, %d sessions)", consistency_splits,
                    len(f))  # fmt: skip
        cons = _consistency(f, consistency_splits, ("plain", "hist_plain", "hist_ipw"))
        logger.info("diagnose: simulating %d users for the IPW return consistency",
                    consistency_users)  # fmt: skip
        fc = from_day_logs(
            list(simulate(cfg, 0, consistency_users, days, make_policy("logging", cfg)))[burn_in:]
        )
        logger.info("diagnose: IPW return consistency (%d splits, %d sessions)",
                    consistency_splits, len(fc))  # fmt: skip
        ipw = _consistency(fc, consistency_splits, ("ipw",))
        cons = {**cons, **ipw, "sessions": {**cons["sessions"], **ipw["sessions"]}}
        del fc
    else:
        logger.info("diagnose: return consistency (%d splits)", consistency_splits)
        cons = _consistency(f, consistency_splits)
    logger.info("diagnose: delay profile (CRN flips)")
    prof = crn_profile(cfg, users=min(users, 2000), days=3, burn_in=burn_in, seed=seed)
    logger.info("diagnose: calibration targets")
    cal = calibrate(cfg, users=calibration_users, days=calibration_days)
    d = Diagnosis(
        source=f"world {world} (seed {seed})",
        sessions=len(f),
        user_days=f.n_days,
        sessions_per_day=len(f) / max(f.n_days, 1),
        history=hist,
        consistency=cons,
        delay={"kind": "simulator: CRN page flips", **asdict(prof)},
        calibration={
            "all_met": cal.all_met,
            "values": cal.values,
            "failures": cal.failures(),
            "usage_vs_logging_pct": cal.usage_vs_logging_pct,
        },
    )
    _check(d)
    return d


def diagnose_data(
    path: str, max_user_days: int | None = 20_000, seed: int = 0, consistency_splits: int = 3
) -> Diagnosis:
    """Diagnose the ``sessions`` dataset at ``path`` (no latent, no counterfactuals)."""
    f = from_dataset(path, max_user_days=max_user_days, seed=seed)
    if len(f) < 200:
        raise ValueError(f"{path}: {len(f)} sessions; the diagnostics need at least 200")
    d = Diagnosis(
        source=path,
        sessions=len(f),
        user_days=f.n_days,
        sessions_per_day=len(f) / max(f.n_days, 1),
        history=_history(f, seed),
        consistency=_consistency(f, consistency_splits),
        delay=_log_delay(f, seed),
    )
    _check(d)
    return d


def _fmt(v: Any, digits: int = 3) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}"


def markdown(d: Diagnosis, figures: list[str]) -> str:
    """The report's Markdown."""
    h, c, dl = d.history, d.consistency, d.delay
    hv = h.get("history_variant", "sequence")
    lines = [
        f"# Premise diagnostics: {d.source}",
        "",
        f"{d.sessions:,} sessions of {d.user_days:,} user-days ({d.sessions_per_day:.1f} "
        "sessions a day). Held-out users throughout.",
        "",
        "| premise | measure | value | target | met |",
        "|---|---|---|---|---|",
    ]
    for t in d.targets:
        ok = {True: "yes", False: "**no**", None: "n/a"}[t["met"]]
        lines.append(f"| {t['name']} | {t['description']} | {_fmt(t['value'], 4)} | "
                     f"{t['required']} | {ok} |")  # fmt: skip
    lines += [
        "",
        "## History information",
        "",
        "Held-out loss of the next session's outcomes (nats per session; lower is better):",
        "",
        "| predictor | " + " | ".join(h["outcomes"]) + " | total |",
        "|---|" + "---|" * (len(h["outcomes"]) + 1),
    ]
    for v, losses in h["loss"].items():
        lines.append(f"| {v} | " + " | ".join(_fmt(losses[o]) for o in h["outcomes"])
                     + f" | {_fmt(h['total'][v])} |")  # fmt: skip
    lines += [
        "",
        f"- History gain ({hv} vs obs, relative loss reduction): {_fmt(h['history_gain'])};"
        f" hand-made summaries alone: {_fmt(h['features_gain'])}.",
        f"- Share of the obs -> latent gap the history closes: {_fmt(h['gap_closed'])} "
        f"(summaries alone: {_fmt(h['features_gap_closed'])}). The history predictor is "
        f"`{hv}`, the lower validation loss of the sequence encoder and the summaries.",
        "- Gain by session index: "
        + ", ".join(f"{k}: {v:+.3f}" for k, v in h["gain_by_index"].items()),
        "",
        "## Delay profile",
        "",
        f"{dl['kind']}.",
        "",
    ]
    if "effect_s" in dl:
        lines += [
            "| lag | " + " | ".join(dl["lags"]) + " |",
            "|---|" + "---|" * len(dl["lags"]),
            "| mean abs. usage change (s) | "
            + " | ".join(f"{x:.1f}" for x in dl["effect_s"]) + " |",
            "",
            f"Delayed share (lag >= {DELAYED_FROM}): {_fmt(dl['delayed_share'])}; the next "
            f"day's effect is {_fmt(dl['next_day_ratio'])} of the day's ({dl['flips']:,} flips).",
        ]
    else:
        lines += [
            "| lag | " + " | ".join(dl["lags"]) + " |",
            "|---|" + "---|" * len(dl["lags"]),
            "| IPW R² gain of the page | " + " | ".join(f"{x:.4f}" for x in dl["r2_gain"]) + " |",
            "",
            f"Share at lag >= {DELAYED_FROM}: {_fmt(dl['delayed_share_logs'])} (n/a: the "
            f"gains add up to less than {LOG_MIN_GAIN}, noise).",
        ]
    lines += [
        "",
        "## Return consistency",
        "",
        f"R² of the return-to-go (mean over {c['splits']} splits, ± sd):",
        "",
        "| state | R²(s) | gain of the page, plain | gain, IPW |",
        "|---|---|---|---|",
        f"| obs | {_fmt(c['r2_state'])} | {c['plain_gain']:+.4f} ± {c['plain_gain_sd']:.4f} | "
        f"{c['ipw_gain']:+.4f} ± {c['ipw_gain_sd']:.4f} (bootstrap se "
        f"{c.get('ipw_gain_se', 0.0):.4f}) |",
        f"| obs + history summaries | | {c['hist_plain_gain']:+.4f} ± "
        f"{c['hist_plain_gain_sd']:.4f} | {c['hist_ipw_gain']:+.4f} ± "
        f"{c['hist_ipw_gain_sd']:.4f} |",
    ]
    sizes = c.get("sessions", {})
    if len(set(sizes.values())) > 1:
        lines += ["", f"The IPW figures with s = obs read a larger log ({sizes['ipw']:,} sessions) "
                  f"than the others ({sizes['plain']:,}): they hold the target."]  # fmt: skip
    if c.get("ipw_paired_gain") is not None:
        lines += [
            "",
            "Paired IPW gain (one (s, a) model: its prediction for the logged page against its "
            f"mean over the pages): obs {c['ipw_paired_gain']:+.4f} ± "
            f"{c['ipw_paired_gain_sd']:.4f} (bootstrap se {c['ipw_paired_gain_se']:.4f}; lower "
            f"95% bound {c['ipw_paired_gain_low']:+.4f}), obs + history summaries "
            f"{c['hist_ipw_paired_gain']:+.4f} ± {c['hist_ipw_paired_gain_sd']:.4f}.",
        ]
    if d.calibration is not None:
        cal = d.calibration
        verdict = "All met." if cal["all_met"] else "Not met: " + "; ".join(cal["failures"])
        lines += ["", "## Calibration targets", "", verdict]
    lines += ["", *[f"![{os.path.basename(p)}]({os.path.basename(p)})" for p in figures], ""]
    return "\n".join(lines)


def plot(d: Diagnosis, out: str) -> list[str]:
    """PNGs: held-out loss by session index per predictor; the delay profile."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for v, by in d.history["by_index"].items():
        ax.plot(list(by), list(by.values()), marker="o", label=v)
    ax.set_xlabel("session index in the day")
    ax.set_ylabel("held-out loss (nats / session)")
    ax.set_title("Next-session prediction by what the predictor sees")
    ax.legend()
    fig.tight_layout()
    paths.append(os.path.join(out, "history_by_index.png"))
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    dl = d.delay
    y = dl["effect_s"] if "effect_s" in dl else dl["r2_gain"]  # the CRN profile, or the logs'
    ax.bar(dl["lags"], y, color="#4477aa")
    ax.set_xlabel("lag (sessions after the page)")
    ax.set_ylabel("mean |usage change| (s)" if "effect_s" in dl else "IPW R² gain")
    ax.set_title("When a page's effect arrives")
    fig.tight_layout()
    paths.append(os.path.join(out, "delay.png"))
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)
    return paths


def write(d: Diagnosis, out: str) -> str:
    """Write ``diagnosis.json``, the PNGs and ``diagnosis.md`` under ``out``; the report path."""
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "diagnosis.json"), "w") as fh:
        json.dump(asdict(d), fh, indent=2, default=float)
    figures = plot(d, out)
    path = os.path.join(out, "diagnosis.md")
    with open(path, "w") as fh:
        fh.write(markdown(d, figures))
    return path


def load(path: str) -> Diagnosis:
    """A ``diagnosis.json`` (or the folder holding it) back as a ``Diagnosis``."""
    if os.path.isdir(path):
        path = os.path.join(path, "diagnosis.json")
    with open(path) as fh:
        return Diagnosis(**json.load(fh))


__all__ = ["Diagnosis", "diagnose_data", "diagnose_world", "load", "markdown", "write"]
