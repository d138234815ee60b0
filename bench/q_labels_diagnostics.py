"""Value-based labels (``DTConfig.q_labels``) against the observed returns on a run's
trajectories: the range of CQL's Q(s, a) in seconds, the gap between the best and the second
page, and how often the GLAN loop's asked R̂₁ (``--gain`` × the observed R̂₁, the scale the
loop asks for with ``target_gain`` 2) lies above every page's Q. Prints the figures and writes
them to ``--results``.

    python bench/q_labels_diagnostics.py --run runs/after
"""

from __future__ import annotations

import argparse
import glob
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from glan_ray.data.windows import cut_windows
from glan_ray.models.critic_labels import QLabeller


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", default="runs/after", help="run directory (data/ and models/)")
    ap.add_argument("--files", type=int, default=6, help="trajectory files read")
    ap.add_argument("--gain", type=float, default=2.0, help="the DT's target_gain")
    ap.add_argument("--results", default="bench/results/q_labels_diagnostics.json")
    args = ap.parse_args()

    q = QLabeller(f"{args.run}/models/cql")
    pattern = f"{args.run}/data/trajectories/**/*.parquet"
    files = sorted(glob.glob(pattern, recursive=True))[: args.files]
    table = pa.concat_tables([pq.read_table(f) for f in files])
    w = cut_windows(table, 20, reward_column="reward_hrm", rtg_scale=1.0)  # seconds
    m = w["mask"] > 0
    n_win, k, _ = w["obs"].shape
    q_all = np.stack([q(w["obs"], np.full((n_win, k), a)) for a in range(3)], -1)  # (W, K, 3)
    q_logged = q(w["obs"], w["actions"])  # (W, K)
    first = m & (w["timesteps"] == 0)
    q_max = q_all.max(-1)
    gap = q_max - np.sort(q_all, -1)[..., 1]
    r1 = w["rtg"][first]
    res = {
        "run": args.run,
        "sessions": int(m.sum()),
        "user_days": int(first.sum()),
        "observed_rtg_s": {"mean": float(w["rtg"][m].mean()),
                           "p10_p90": np.percentile(w["rtg"][m], [10, 90]).tolist()},
        "q_logged_s": {"mean": float(q_logged[m].mean()),
                       "p10_p90": np.percentile(q_logged[m], [10, 90]).tolist()},
        "corr_observed_q": float(np.corrcoef(w["rtg"][m], q_logged[m])[0, 1]),
        "max_q_first_session_mean_s": float(q_max[first].mean()),
        "q_gap_best_minus_second_s": {"mean": float(gap[m].mean()),
                                      "median": float(np.median(gap[m]))},
        "asked_r1_above_every_q_share": float((args.gain * r1 > q_max[first]).mean()),
    }  # fmt: skip
    print(json.dumps(res, indent=2))
    with open(args.results, "w") as f:
        json.dump(res, f, indent=2)


if __name__ == "__main__":
    main()
