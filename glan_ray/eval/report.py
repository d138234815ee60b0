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
    page_assign.png (page shares per arm), growth.png (DAU and LT growth vs control per day, the
    A/A phase shaded; only with ``growth_pct``). Returns the file names."""
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
        ax.set_xlabel("day of the experiment (A/A days first)")
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
    if summary.get("growth_pct"):
        files.append(plot_growth(summary, out))
    return files


GROWTH_ARMS = ("glan", "glan_no_lrtg", "glan_no_hrm", "klan", "klan_isp", "klan_iit",
               "cql_static", "last_exit", "oracle")  # fmt: skip
"""Arms drawn in growth.png when present (every arm would be unreadable)."""


def plot_growth(summary: dict[str, Any], out: str) -> str:
    """growth.png: DAU and LT of each arm of ``GROWTH_ARMS`` relative to the control per day
    over the whole experiment, the A/A phase shaded (GLAN Fig. 5, KLAN Fig. 5)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    control = summary["config"]["control"]
    aa_days = summary["protocol"]["aa_days"]
    arms = [a for a in GROWTH_ARMS if a in summary["growth_pct"] and a != control]
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5))
    for ax, k, title in zip(axes, ("dau", "lt"), ("DAU", "LT (GLAN eq. 31)"), strict=True):
        for a in arms:
            g = summary["growth_pct"][a][k]
            ax.plot(np.arange(1, len(g) + 1), g, label=a, marker=".")
        if aa_days:
            ax.axvspan(0.5, aa_days + 0.5, color="0.85", label="A/A phase")
        ax.axhline(0, color="k", lw=0.8)
        ax.set_title(f"{title} growth rate vs {control} (%)")
        ax.set_xlabel("day of the experiment")
    axes[1].legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "growth.png"), dpi=90)
    plt.close(fig)
    return "growth.png"


PAPER_TABLE_1 = ("dau", "lt", "usage_time", "watch_time", "video_views", "pdr",
                 "effective_entries", "latency")  # fmt: skip
"""GLAN Table 1's rows (KLAN Table 1 lists the effective entries per page instead of overall)."""
KLAN_TABLE_1 = ("dau", "lt", "usage_time", "watch_time", "video_views", "pdr",
                *(f"effective_entries_{p}" for p in PAGES), "latency")  # fmt: skip
ABLATION_METRICS = ("usage_time", "watch_time", "video_views")
"""The columns of GLAN Table 2 and KLAN Table 2."""
LABELS = {"dau": "Daily Active Users", "lt": "Lifetime (LT)", "usage_time": "APP usage time",
          "watch_time": "Watch Time", "video_views": "Video View", "pdr": "Page Drop-off Ratio",
          "effective_entries": "Overall Page Effective Entry Frequency", "latency": "Latency",
          **{f"effective_entries_{p}": f"{p.title()} Page Effective Entry Frequency"
             for p in PAGES},
          **{f"assign_ratio_{p}": f"{p.title()} Page Assign Ratio" for p in PAGES}}  # fmt: skip


def _cell(c: dict[str, float] | None, bold: bool | None = None) -> str:
    """``+x.xx% [lo, hi]``, bold when significant at 5% (or when ``bold`` says so)."""
    if c is None:
        return "–"
    text = f"{c['rel_pct']:+.3f}% [{c['ci_low_pct']:+.2f}, {c['ci_high_pct']:+.2f}]"
    return f"**{text}**" if (c["p_value"] < 0.05 if bold is None else bold) else text


def _rel_latency(rel: float) -> str:
    """A latency change: ``+x.x%``, or ``×N`` past +1000% (a model against a heuristic's
    near-zero time per decision)."""
    return f"×{1 + rel / 100:.0f}" if rel >= 1000 else f"{rel:+.1f}%"


def _table_rows(summary: dict[str, Any], ref: str, arm: str, rows: tuple[str, ...]) -> list[str]:
    vs = summary["vs"][ref]
    out = []
    for m in rows:
        if m == "latency":
            rel = summary.get("latency_rel_pct", {}).get(ref, {}).get(arm, float("nan"))
            ms = summary["latency_ms"].get(arm, float("nan"))
            out.append(f"| {LABELS[m]} | {_rel_latency(rel)} ({ms:.3f} ms vs "
                       f"{summary['latency_ms'].get(ref, float('nan')):.3f} ms) |")  # fmt: skip
        else:
            out.append(f"| {LABELS[m]} | {_cell(vs[arm][m])} |")
    return out


def papers_tables(summary: dict[str, Any]) -> list[str]:
    """GLAN Tables 1–3 (vs KLAN) and KLAN Tables 1–2 (vs logging) in the papers' layout, from
    the paired comparisons of this run (bold: p < 0.05); a table is left out when its arms did
    not run."""
    vs, arms = summary.get("vs", {}), set(summary["config"]["arms"])
    p = summary.get("protocol", {})
    lines = ["", "## The papers' tables", "",
             f"Relative change [95% CI] over the last {p.get('headline_days', '?')} A/B days; "
             "**bold**: p < 0.05. Users burned in under "
             f"**{p.get('burn_in_arm', '?')}** for {p.get('burn_in_days', '?')} days, then "
             f"{p.get('aa_days', '?')} A/A days"
             + (" (the GLAN paper's users had lived with KLAN: run with `--control klan` for "
                "its exact protocol)." if p.get("burn_in_arm") != "klan" else ".")]  # fmt: skip
    if "klan" in vs and "glan" in arms:
        lines += ["", "### GLAN Table 1: GLAN vs KLAN", "", "| Metrics | GLAN |", "|---|---|",
                  *_table_rows(summary, "klan", "glan", PAPER_TABLE_1)]  # fmt: skip
        variants = [a for a in ("glan", "glan_no_lrtg", "glan_no_hrm") if a in arms]
        lines += ["", "### GLAN Table 2: ablations vs KLAN", "",
                  "Bold for a variant: significantly different from GLAN (p < 0.05); for GLAN: "
                  "from KLAN.", "",
                  "| Variant | " + " | ".join(LABELS[m] for m in ABLATION_METRICS) + " |",
                  "|---|" + "---|" * len(ABLATION_METRICS)]  # fmt: skip
        for a in variants:
            cells = []
            for m in ABLATION_METRICS:
                sig = None if a == "glan" else vs["glan"][a][m]["p_value"] < 0.05
                cells.append(_cell(vs["klan"][a][m], sig))
            name = {"glan": "GLAN", "glan_no_lrtg": "w/o L-RTG", "glan_no_hrm": "w/o HRM"}[a]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines += ["", "### GLAN Table 3: page-specific results, GLAN vs KLAN", "",
                  "| Metrics | GLAN |", "|---|---|",
                  *_table_rows(summary, "klan", "glan",
                               (*(f"assign_ratio_{q}" for q in PAGES),
                                *(f"effective_entries_{q}" for q in PAGES)))]  # fmt: skip
    if "logging" in vs and "klan" in arms:
        lines += ["", "### KLAN Table 1: KLAN vs the heuristic (logging)", "",
                  "| Metrics | KLAN |", "|---|---|",
                  *_table_rows(summary, "logging", "klan", KLAN_TABLE_1)]  # fmt: skip
    variants = [a for a in ("klan_iit", "klan_isp", "klan") if a in arms]
    if "logging" in vs and "klan" in arms and len(variants) > 1:
        lines += ["", "### KLAN Table 2: ablations vs the heuristic (logging)", "",
                  "| Metrics | " + " | ".join(a.upper().replace("_", "-") for a in variants)
                  + " |", "|---|" + "---|" * len(variants)]  # fmt: skip
        for m in ABLATION_METRICS:
            cells = [_cell(vs["logging"][a][m]) for a in variants]
            lines.append(f"| {LABELS[m]} | " + " | ".join(cells) + " |")
    return lines if len(lines) > 4 else []


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


def _aa_lines(summary: dict[str, Any]) -> list[str]:
    """The A/A phase per arm (the same statistics as the A/B) and the split-half A/A."""
    control = summary["config"]["control"]
    split = summary.get("aa_split", summary.get("aa", {}))
    phase = summary.get("aa") if "aa_split" in summary else None
    lines = ["", "## A/A check"]
    if phase:
        rows = [a for a in phase if a != control]
        worst = {a: min(phase[a][m]["p_value"] for m in HEADLINE) for a in rows}
        sig = [a for a in rows if worst[a] < 0.05]
        paired = summary.get("protocol", {}).get("paired", True)
        lines += [
            "",
            f"A/A phase ({summary['protocol']['aa_days']} days, every bucket under "
            f"{control}), each bucket vs {control}'s"
            + (
                " (shared buckets: the same users and numbers, so an exact tie by "
                "construction: the phase checks that arms differ only by their policy)"
                if paired
                else ""
            )
            + ": "
            + (
                f"significant at 5% for {', '.join(sig)}."
                if sig
                else "no bucket differs significantly on any headline metric."
            ),
        ]
        if all(c["diff"] == 0.0 for a in rows for c in phase[a].values()):
            lines += ["", f"Every one of the {len(rows)} buckets ties the control exactly "
                      "(difference 0 on every metric)."]  # fmt: skip
            rows = []
        else:
            lines += ["", "| bucket | " + " | ".join(HEADLINE) + " |",
                      "|---|" + "---|" * len(HEADLINE)]  # fmt: skip
        for a in rows:
            cells = [f"{phase[a][m]['rel_pct']:+.2f}% p={_fmt_p(phase[a][m]['p_value'])}"
                     for m in HEADLINE]  # fmt: skip
            lines.append(f"| {a} | " + " | ".join(cells) + " |")
    sig = [m for m, c in split.items() if c["p_value"] < 0.05]
    where = "over the A/A phase" if phase else "over the headline window"
    lines += ["", f"Split-half A/A: {control}'s units {where} split into two disjoint halves, "
              "compared unpaired (Welch): "
              + (f"significant at 5% on {', '.join(sig)}." if sig else
                 "no metric is significant at 5%.")
              + " p-values: " + ", ".join(f"{m} {_fmt_p(split[m]['p_value'])}" for m in HEADLINE)
              + "."]  # fmt: skip
    return lines


def _world_lines(cfg: dict[str, Any], diagnosis: dict[str, Any] | None) -> list[str]:
    """The world the A/B ran in and, when the run diagnosed it, its premise figures."""
    world = cfg.get("world", "default")
    lines = [f"World: **{world}** (docs/simulator.md)."]
    if diagnosis is not None:
        lines[0] += (f" Its premises, measured by `glan-ray diagnose` ({diagnosis['source']}; "
                     "diagnosis/diagnosis.md):")  # fmt: skip
        lines += ["", "| premise | value | target | met |", "|---|---|---|---|"]
        for t in diagnosis.get("targets", []):
            v = "n/a" if t["value"] is None else f"{t['value']:.4f}"
            ok = {True: "yes", False: "no", None: "n/a"}[t["met"]]
            lines.append(f"| {t['name']} | {v} | {t['required']} | {ok} |")
    return [*lines, ""]


def markdown(
    summary: dict[str, Any], figures: list[str], diagnosis: dict[str, Any] | None = None
) -> str:
    cfg = summary["config"]
    control = cfg["control"]
    units = cfg["users"] * len(cfg["seeds"])
    p = summary.get("protocol", {})
    days = cfg.get("ab_days", cfg.get("days"))
    shared = p.get("paired", True)
    lines = [
        "# Simulated A/B test",
        "",
        *_world_lines(cfg, diagnosis),
        f"{len(cfg['arms'])} arms × {cfg['users']} users × seeds {list(cfg['seeds'])} ({units} "
        f"units per arm). Protocol: {p.get('burn_in_days', 0)} burn-in days under "
        f"**{p.get('burn_in_arm', control)}**, {p.get('aa_days', 0)} A/A days (every bucket "
        f"under the control), {days} A/B days; the figures are over the last "
        f"{p.get('headline_days', days)} A/B days. "
        + (
            "The same users and random numbers in every arm; paired comparisons"
            if shared
            else "Each arm its own users; unpaired (Welch) comparisons"
            + (", CUPED-adjusted by each user's A/A-phase metric" if p.get("cuped") else "")
        )
        + f" against **{control}**, 95% CI, two-sided p.",
        "",
        "| arm | " + " | ".join(HEADLINE) + " | uplift captured (usage) | personalization uplift "
        "captured (usage) | latency ms (vs control) |",
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
        rel = summary.get("latency_rel_pct", {}).get(control, {}).get(arm)
        lat_s = f"{lat:.3f}" + ("" if rel is None or arm == control else f" ({_rel_latency(rel)})")
        lines.append(f"| {arm} | " + " | ".join(cells) + f" | {u:.2f} | {pu:.2f} | {lat_s} |")
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
                  "| arm | vs | usage_time | dau | pdr |", "|---|---|---|---|---|"]  # fmt: skip
        for row in summary["direct"]:
            cells = [
                f"{row[m]['rel_pct']:+.2f}% [{row[m]['ci_low_pct']:+.2f}, "
                f"{row[m]['ci_high_pct']:+.2f}] p={_fmt_p(row[m]['p_value'])}"
                for m in ("usage_time", "dau", "pdr")
                if m in row
            ]
            vs = row["vs"] + (" (best constant)" if row["vs"] == const else "")
            lines.append(f"| {row['arm']} | {vs} | " + " | ".join(cells) + " |")
    lines += papers_tables(summary) if "vs" in summary else []
    lines += _aa_lines(summary)
    lines += [
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
    diag_path = os.path.join(run, "diagnosis", "diagnosis.json")
    diagnosis = None
    if os.path.exists(diag_path):
        with open(diag_path) as f:
            diagnosis = json.load(f)
    path = os.path.join(run, "report.md")
    with open(path, "w") as f:
        f.write(markdown(summary, figures, diagnosis))
    return path
