"""The map of where each method wins (``glan-ray sweep-worlds``): phase diagram, rank
correlations, JSON and Markdown.

``WorldMap.build`` reads the cells of a sweep (``sweep.cell.CellResult``) and computes, for
each premise measure (``PREMISE_MEASURES``), Spearman's rank correlation across cells with the gap
(usage of the best GLAN variant vs KLAN, %), and with GLAN as published's gap. A strong positive
correlation means the diagnostic, measured on a log alone, tells a team which family to deploy;
the issue's bar is ≥ 0.7. Where critic-guided GLAN's tuned λ is the grid's largest, it is its
critic (KLAN's CQL) alone, so the published GLAN's gap is the one that speaks for the DT.
``write_map`` writes ``world_map.json``, ``world_map.md`` and ``world_map.png`` (both gaps per
cell with their 95% CI and the winning arm, strength up, stochasticity across).
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from glan_ray import storage
from glan_ray.sweep.cell import PREMISE_MEASURES, CellResult, WorldSweepConfig, cell_name

RANK_TARGET = 0.7
"""Rank correlation a premise measure needs with the gap to predict the winner (issue 29)."""


def spearman(x: list[float], y: list[float]) -> float | None:
    """Spearman's rank correlation of ``x`` and ``y`` (average ranks for ties); None with fewer
    than 3 finite pairs or a constant side (undefined)."""
    from scipy import stats

    pairs = [(a, b) for a, b in zip(x, y, strict=True) if math.isfinite(a) and math.isfinite(b)]
    if len(pairs) < 3:
        return None
    xs, ys = np.array(pairs).T  # (2, n)
    if np.ptp(xs) == 0 or np.ptp(ys) == 0:
        return None
    return float(stats.spearmanr(xs, ys).statistic)


@dataclass(frozen=True)
class WorldMap:
    """The sweep's cells and what they say together."""

    config: dict[str, Any]
    """The ``WorldSweepConfig`` as a dict."""
    cells: list[CellResult]
    rank_correlation: dict[str, float | None]
    """Premise measure -> Spearman's ρ with the gap across cells (None: undefined)."""
    rank_correlation_published: dict[str, float | None]
    """Premise measure -> Spearman's ρ with GLAN as published's gap vs KLAN."""
    failed: dict[str, str] = field(default_factory=dict)
    """Cell -> why it is not in ``cells``: its error, or "not run"."""

    @classmethod
    def build(cls, cfg: WorldSweepConfig, cells: list[CellResult],
              failed: dict[str, str] | None = None) -> WorldMap:  # fmt: skip
        gaps = [c.gap for c in cells]
        published = [c.vs_klan["glan"]["usage"] for c in cells]
        rho = {m: spearman([c.premise[m] for c in cells], gaps) for m in PREMISE_MEASURES}
        rho_pub = {m: spearman([c.premise[m] for c in cells], published)
                   for m in PREMISE_MEASURES}  # fmt: skip
        return cls(asdict(cfg), list(cells), rho, rho_pub, dict(failed or {}))

    def predictive(self) -> list[str]:
        """The premise measures whose ρ with the gap reaches ``RANK_TARGET``."""
        return [m for m, r in self.rank_correlation.items() if r is not None and r >= RANK_TARGET]

    def to_dict(self) -> dict[str, Any]:
        return {"config": self.config, "cells": [c.to_dict() for c in self.cells],
                "rank_correlation": self.rank_correlation,
                "rank_correlation_published": self.rank_correlation_published,
                "rank_target": RANK_TARGET,
                "predictive": self.predictive(), "failed": self.failed}  # fmt: skip

    def markdown(self) -> str:
        """The report: the grid, each cell's figures, the correlations."""
        cfg = self.config
        lines = [
            "# Where each method wins: the world sweep",
            "",
            f"World `{cfg['world']}`'s mechanisms at strengths {list(cfg['strengths'])} × user "
            f"stochasticities {list(cfg['stochasticities'])}; preset `{cfg['preset']}` (training "
            "budget and A/B size of every cell), seed "
            f"{cfg['seed']}. Gap = usage of the best GLAN variant vs KLAN (paired, 95% CI); "
            "winner = the learned arm of highest usage; λ of `glan_cg` chosen per cell on "
            "validation users.",
            "",
            "| strength | stochasticity | gap (best GLAN − KLAN) | GLAN − KLAN | best GLAN | "
            "winner | λ | KLAN vs logging | GLAN vs logging | glan_cg vs logging | "
            "PDR glan_cg vs KLAN | glan_act vs logging | "
            + " | ".join(PREMISE_MEASURES) + " | wall s |",
            "|" + "---|" * (13 + len(PREMISE_MEASURES)),
        ]
        for c in sorted(self.cells, key=lambda c: (c.strength, c.stochasticity)):
            v, g = c.vs_logging, c.vs_klan["glan"]
            lines.append(
                f"| {c.strength:g} | {c.stochasticity:g} | {c.gap:+.2f}% [{c.gap_low:+.2f}, "
                f"{c.gap_high:+.2f}] | {g['usage']:+.2f}% [{g['usage_low']:+.2f}, "
                f"{g['usage_high']:+.2f}] | {c.best_glan} | {c.winner} | {c.critic_lambda:g}"
                f"{' (DT adds nothing)' if c.dt_adds_nothing else ''} | "
                f"{v['klan']['usage']:+.2f}% | {v['glan']['usage']:+.2f}% | "
                f"{v['glan_cg']['usage']:+.2f}% | {c.vs_klan['glan_cg']['pdr']:+.1f}% | "
                # a cell swept before ACT joined has no glan_act
                + (f"{v['glan_act']['usage']:+.2f}% | " if "glan_act" in v else "— | ")
                + " | ".join(f"{c.premise[m]:.4g}" for m in PREMISE_MEASURES)
                + f" | {c.wall_s:.0f} |"
            )
        lines += ["", "## Does the diagnostic predict the winner?", "",
                  f"Spearman's rank correlation across {len(self.cells)} cells between each "
                  f"premise measure and the gap (target ≥ {RANK_TARGET}):", "",
                  "| premise measure | ρ with the gap (best GLAN) | ρ with GLAN − KLAN |",
                  "|---|---|---|"]  # fmt: skip

        def fmt(r: float | None) -> str:
            return "undefined" if r is None else f"{r:+.2f}"

        for m, r in self.rank_correlation.items():
            lines.append(f"| {m} | {fmt(r)} | {fmt(self.rank_correlation_published[m])} |")
        pred = self.predictive()
        lines += ["", ("Predictive: " + ", ".join(pred)) if pred
                  else f"No premise measure reaches ρ ≥ {RANK_TARGET}."]  # fmt: skip
        if self.failed:
            lines += ["", "## Cells not in the map", ""]
            lines += [f"- `{k}`: {v}" for k, v in self.failed.items()]
        return "\n".join(lines) + "\n"


def plot_map(wmap: WorldMap, path: str) -> None:
    """The phase diagram: per cell, the best GLAN variant's gap vs KLAN (left) and GLAN as
    published's (right), colour and text with the 95% CI, and the cell's winner."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cfg = wmap.config
    ss, zs = sorted(cfg["strengths"]), sorted(cfg["stochasticities"])
    by = {(c.strength, c.stochasticity): c for c in wmap.cells}
    panels = (("best GLAN variant − KLAN", lambda c: (c.gap, c.gap_low, c.gap_high), True),
              ("GLAN as published − KLAN", lambda c: tuple(c.vs_klan["glan"][k] for k in (
                  "usage", "usage_low", "usage_high")), False))  # fmt: skip
    fig, axes = plt.subplots(1, 2, figsize=(2 * (1.9 * len(zs) + 2.2), 1.5 * len(ss) + 1.8))
    for ax, (title, value, winner) in zip(axes, panels, strict=True):
        grid = np.full((len(ss), len(zs)), np.nan)  # (strengths, stochasticities)
        for i, s in enumerate(ss):
            for j, z in enumerate(zs):
                if (s, z) in by:
                    grid[i, j] = value(by[(s, z)])[0]
        lim = max(1.0, float(np.nanmax(np.abs(grid))) if np.isfinite(grid).any() else 1.0)
        im = ax.imshow(grid, origin="lower", cmap="RdBu", vmin=-lim, vmax=lim, aspect="auto")
        for i, s in enumerate(ss):
            for j, z in enumerate(zs):
                c = by.get((s, z))
                if c is None:
                    text = f"no result\n{cell_name(s, z)}"
                else:
                    v, lo, hi = value(c)
                    text = f"{v:+.2f}%\n[{lo:+.2f}, {hi:+.2f}]"
                    text += f"\n{c.winner}" if winner else ""
                ax.text(j, i, text, ha="center", va="center", fontsize=8)
        ax.set_xticks(range(len(zs)), [f"{z:g}" for z in zs])
        ax.set_yticks(range(len(ss)), [f"{s:g}" for s in ss])
        ax.set_xlabel("user stochasticity (× page-duration noise)")
        ax.set_ylabel(f"premise strength ({cfg['world']} mechanisms)")
        ax.set_title(f"usage: {title} (%)" + (", winner" if winner else ""), fontsize=9)
        fig.colorbar(im, ax=ax, label="gap (%)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_map(wmap: WorldMap, out: str) -> None:
    """``world_map.json``, ``world_map.md`` and ``world_map.png`` under ``out``."""
    with storage.staged_dir(out) as local:
        storage.write_json(os.path.join(local, "world_map.json"), wmap.to_dict(), indent=1)
        storage.write_text(os.path.join(local, "world_map.md"), wmap.markdown())
        plot_map(wmap, os.path.join(local, "world_map.png"))


__all__ = ["RANK_TARGET", "WorldMap", "plot_map", "spearman", "write_map"]
