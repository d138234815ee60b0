"""The simulated A/B at a preset's size, and the pipeline's cost per stage.

Runs (or resumes) ``glan-ray pipeline --preset PRESET --out DIR`` and copies its A/B summary
(every arm vs logging: relative %, 95% CI, p-value; uplift captured; A/A; latency) together with
each stage's wall time and peak memory into ``bench/results/ab.json``.

    python bench/ab.py --preset demo --out runs/demo
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="demo")
    ap.add_argument("--out", default="runs/demo")
    ap.add_argument("--results", default=os.path.join(HERE, "results", "ab.json"))
    args = ap.parse_args()
    cmd = ["glan-ray", "pipeline", "--preset", args.preset, "--out", args.out]
    subprocess.run(cmd, check=True, stdout=sys.stdout, stderr=subprocess.DEVNULL)
    with open(os.path.join(args.out, "ab", "ab.json")) as f:
        ab = json.load(f)
    stages = {}
    for name in sorted(os.listdir(os.path.join(args.out, "stages"))):
        with open(os.path.join(args.out, "stages", name)) as f:
            rec = json.load(f)
        stages[rec["stage"]] = {k: rec[k] for k in ("wall_s", "peak_mib")}
    ab.pop("daily", None)
    out = {"preset": args.preset, "stages": stages, **ab}
    os.makedirs(os.path.dirname(args.results), exist_ok=True)
    with open(args.results, "w") as f:
        json.dump(out, f, indent=1)
    print(f"wrote {args.results}")


if __name__ == "__main__":
    main()
