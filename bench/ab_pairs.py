"""Paired comparisons of any arms of a finished A/B against any reference arm of it (the A/B
report compares with its control and reference arms only), from ``RUN/ab/ab_units.npz`` with
the A/B's own ``stats.compare``. Gives the "vs its fixed self" and "vs the published GLAN"
figures of ``bench/results/ab_refresh*.json`` and ``ab_q_labels*.json``.

    python bench/ab_pairs.py --run runs/refresh --reference klan_fixed --arms klan
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from glan_ray.eval.ab import METRICS
from glan_ray.eval.stats import compare


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", required=True, help="run directory of the A/B (RUN/ab/)")
    ap.add_argument("--reference", required=True, help="the arm compared against")
    ap.add_argument("--arms", nargs="+", required=True, help="arms compared with it")
    ap.add_argument("--metrics", nargs="+", default=["usage_time", "dau", "lt", "pdr"])
    args = ap.parse_args()
    units = np.load(f"{args.run}/ab/ab_units.npz")

    def col(arm: str, key: str | None) -> np.ndarray | None:
        if key is None:
            return None
        name = f"{arm}/{key}"
        if name not in units:
            raise SystemExit(f"{args.run}: no units {name!r} (is {arm!r} an arm of that A/B?)")
        return units[name]

    out: dict[str, dict[str, dict[str, float]]] = {}
    for arm in args.arms:
        out[arm] = {}
        for m in args.metrics:
            y, x = METRICS[m]
            c = compare(col(arm, y), col(args.reference, y), col(arm, x),
                        col(args.reference, x), paired=True).to_dict()  # fmt: skip
            out[arm][m] = {k: c[k] for k in ("rel_pct", "ci_low_pct", "ci_high_pct", "p_value")}
    print(json.dumps({"reference": args.reference, "vs": out}, indent=2))


if __name__ == "__main__":
    main()
