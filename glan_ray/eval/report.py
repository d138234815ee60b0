"""The A/B report: ``report.md`` + ``ab_metrics.csv`` + PNG plots from ``ab/ab.json``."""

from __future__ import annotations

import csv
import json
import os
from typing import Any

import numpy as np

from glan_ray.eval.ab import DIRECTION, METRICS
from glan_ray.schema import PAGES

HEADLINE = ("usage_time", "dau", "lt", "watch_time", "video_views", "pdr")
"""Metrics shown in the main table and the bar plot."""


def _fmt_p(p: float) -> str:
    return "<1e-4" if p < 1e-4 else f"{p:.3g}"


def _uplift(summary: dict[str, Any], kind: str, metric: str, arm: str) -> float:
    """An arm's ``kind`` (``uplift_captured`` | ``personalization_uplift_captured``) on ``metric``
    from the summary; NaN where it was not computed (or an older ``ab.json`` lacks it)."""
    return summary.get(f"{kind}_{metric}", {}).get(arm, float("nan"))


def write_csv(summary: dict[str, Any], path: str) -> None:
    """One row per arm × metric: the comparison with control, the run's best constant arm and
    value on the metric, uplift captured and personalization uplift captured (blank where the
    metric has none)."""
    best = summary.get("best_constant", {})
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["arm", "metric", "value", "control", "rel_pct", "ci_low_pct", "ci_high_pct",
                    "p_value", "units", "best_constant_arm", "best_constant", "uplift_captured",
                    "personalization_uplift_captured"])  # fmt: skip
        for arm, metrics in summary["vs_control"].items():
            for m, c in metrics.items():
                b = best.get(m, {})
                ups = [_uplift(summary, k, m, arm) if f"{k}_{m}" in summary else ""
                       for k in ("uplift_captured", "personalization_uplift_captured")]  # fmt: skip
                w.writerow([arm, m, c["arm"], c["control"], c["rel_pct"], c["ci_low_pct"],
                            c["ci_high_pct"], c["p_value"], c["n"], b.get("arm", ""),
                            b.get("value", ""), *ups])  # fmt: skip


def plot(summary: dict[str, Any], out: str) -> list[str]:
    """metric_bars.png (relative % with 95% CI), daily.png (DAU and usage per day),
    page_assign.png (page shares per arm). Returns the file names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arms = list(summary["vs_control"])
    control = summary["config"]["control"]
    others = [a for a in arms if a != control]
    files = []
    fig, axes = plt.subplots(2, 3, figsize=(15, 8))
    for ax, m in zip(axes.ravel(), HEADLINE, strict=True):
        c = [summary["vs_control"][a][m] for a in others]
        rel = np.array([x["rel_pct"] for x in c])
        err = np.array(
            [[x["rel_pct"] - x["ci_low_pct"], x["ci_high_pct"] - x["rel_pct"]] for x in c]
        ).T
        ax.barh(others, rel, xerr=err, color=["C2" if r > 0 else "C3" for r in rel], capsize=3)
        ax.axvline(0, color="k", lw=0.8)
        ax.set_title(f"{m} vs {control} (%)")
    fig.tight_layout()
    fig.savefig(os.path.join(out, "metric_bars.png"), dpi=90)
    plt.close(fig)
    files.append("metric_bars.png")

    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5))
    for a in arms:
        d = summary["daily"][a]
        days = np.arange(1, len(d["dau"]) + 1)
        axes[0].plot(days, d["dau"], label=a)
        axes[1].plot(days, np.asarray(d["usage"]) / np.maximum(d["dau"], 1) / 60, label=a)
    axes[0].set_title("DAU per day")
    axes[1].set_title("usage minutes per active user per day")
    axes[1].legend(fontsize=7, ncol=2)
    for ax in axes:
        ax.set_xlabel("day of test")
    fig.tight_layout()
    fig.savefig(os.path.join(out, "daily.png"), dpi=90)
    plt.close(fig)
    files.append("daily.png")

    fig, ax = plt.subplots(figsize=(9, 4.5))
    left = np.zeros(len(arms))
    for p in PAGES:
        share = np.array([summary["metrics"][a][f"assign_ratio_{p}"] for a in arms])
        ax.barh(arms, share, left=left, label=p)
        left += share
    ax.set_title("page assign ratios")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "page_assign.png"), dpi=90)
    plt.close(fig)
    files.append("page_assign.png")
    return files


def _best_constant_lines(summary: dict[str, Any]) -> list[str]:
    """The best constant-page arm of the run per headline metric (none: no lines)."""
    best = summary.get("best_constant", {})
    rows = [m for m in HEADLINE if m in best]
    if not rows:
        return []
    lines = ["", "## Best constant page (per metric, among the constant-page arms of this run)", "",
             "Personalization uplift captured = (arm − best constant) / (oracle − best constant) "
             "on usage time.", "", "| metric | better | best constant arm | value |",
             "|---|---|---|---|"]  # fmt: skip
    for m in rows:
        better = "lower" if DIRECTION[m] == "min" else "higher"
        lines.append(f"| {m} | {better} | {best[m]['arm']} | {best[m]['value']:.4g} |")
    return lines


def markdown(summary: dict[str, Any], figures: list[str]) -> str:
    cfg = summary["config"]
    control = cfg["control"]
    units = next(iter(summary["vs_control"][control].values()))["n"]
    lines = [
        "# Simulated A/B test",
        "",
        f"{len(cfg['arms'])} arms × {cfg['users']} users × {cfg['days']} days × seeds "
        f"{list(cfg['seeds'])} ({units} units per arm, the same users and random numbers in "
        f"every arm; paired comparisons against **{control}**, 95% CI, two-sided p).",
        "",
        "| arm | " + " | ".join(HEADLINE) + " | uplift captured (usage) | personalization uplift "
        "captured (usage) | latency ms |",
        "|---|" + "---|" * (len(HEADLINE) + 3),
    ]
    for arm, metrics in summary["vs_control"].items():
        cells = []
        for m in HEADLINE:
            c = metrics[m]
            if arm == control:
                cells.append(f"{c['arm']:.4g}")
            else:
                cells.append(
                    f"{c['rel_pct']:+.2f}% [{c['ci_low_pct']:+.2f}, {c['ci_high_pct']:+.2f}] "
                    f"p={_fmt_p(c['p_value'])}"
                )
        u = _uplift(summary, "uplift_captured", "usage_time", arm)
        pu = _uplift(summary, "personalization_uplift_captured", "usage_time", arm)
        lat = summary["latency_ms"].get(arm, float("nan"))
        lines.append(f"| {arm} | " + " | ".join(cells) + f" | {u:.2f} | {pu:.2f} | {lat:.3f} |")
    lines += _best_constant_lines(summary)
    lines += ["", "## Page assign ratios and effective page entries per user-day", "",
              "| arm | " + " | ".join(f"assign {p}" for p in PAGES) + " | "
              + " | ".join(f"effective {p}" for p in PAGES) + " |",
              "|---|" + "---|" * (2 * len(PAGES))]  # fmt: skip
    for arm, m in summary["metrics"].items():
        a = " | ".join(f"{m[f'assign_ratio_{p}']:.3f}" for p in PAGES)
        e = " | ".join(f"{m[f'effective_entries_{p}']:.3f}" for p in PAGES)
        lines.append(f"| {arm} | {a} | {e} |")
    const = summary.get("best_constant", {}).get("usage_time", {}).get("arm")
    if summary.get("direct"):
        lines += ["", "## Head to head (paired, arm vs arm)", "",
                  "| arm | vs | usage_time | dau |", "|---|---|---|---|"]  # fmt: skip
        for row in summary["direct"]:
            cells = [
                f"{row[m]['rel_pct']:+.2f}% [{row[m]['ci_low_pct']:+.2f}, "
                f"{row[m]['ci_high_pct']:+.2f}] p={_fmt_p(row[m]['p_value'])}"
                for m in ("usage_time", "dau")
            ]
            vs = row["vs"] + (" (best constant)" if row["vs"] == const else "")
            lines.append(f"| {row['arm']} | {vs} | " + " | ".join(cells) + " |")
    aa = summary["aa"]
    sig = [m for m, c in aa.items() if c["p_value"] < 0.05]
    lines += [
        "",
        "## A/A check",
        "",
        f"{control}'s units split into two disjoint halves, compared unpaired (Welch): "
        + (f"significant at 5% on {', '.join(sig)}." if sig else "no metric is significant at 5%.")
        + " p-values: "
        + ", ".join(f"{m} {_fmt_p(aa[m]['p_value'])}" for m in HEADLINE)
        + ".",
        "",
        "## Figures",
        "",
        *[f"![{f}]({f})" for f in figures],
        "",
        "Metric definitions: `glan_ray/eval/ab.py` (" + ", ".join(METRICS) + ").",
    ]
    return "\n".join(lines) + "\n"


def write_report(run: str) -> str:
    """Read ``<run>/ab/ab.json``; write report.md, ab_metrics.csv and PNGs into ``run``."""
    src = os.path.join(run, "ab", "ab.json")
    if not os.path.exists(src):
        raise FileNotFoundError(f"no A/B results at {src}; run the A/B first")
    with open(src) as f:
        summary = json.load(f)
    write_csv(summary, os.path.join(run, "ab_metrics.csv"))
    figures = plot(summary, run)
    path = os.path.join(run, "report.md")
    with open(path, "w") as f:
        f.write(markdown(summary, figures))
    return path
