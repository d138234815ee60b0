"""Retraining noise of GLAN's DT variants: each variant's DT is trained ``--draws`` times (seeds
0, 1, ...) on the same data with the same budget, every draw is played as its own GLAN arm in one
A/B (the same users in every arm), and each draw is compared with the reference arms. The
spread across draws is the noise of one training run, which an A/B's user-level CI leaves out;
two variants differ only if the difference of their draws' means stands out of that spread.

    python bench/retrain_noise.py --run runs/retrain --data runs/after/data \
        --models runs/after/models --variant published= --variant advantage=advantage_tokens=true

Critic-guided GLAN (issue 29) over the same draws: ``--critic-guided glan_cg --critic-lambda 1``
with ``--klan-draws`` pairs DT draw i with KLAN draw i's CQL as its critic (a directory
``cg_i`` of links: L-RTG and HRM of the run, ``dt`` of the first DT variant's draw i, ``dt_naive``
of ``--cg-naive``'s draw i when given, ``cql`` of the first KLAN variant's draw i) and plays each
critic-guided arm on it, with ``klan_iit`` on the same CQL beside (group ``iit``): draw i of an
arm and of ``iit`` share their critic, so their difference is what the DT adds.

    python bench/retrain_noise.py --run runs/cg --data runs/demo/data --models runs/demo/models \
        --variant published= --variant naive=reward_column=reward --klan-draws 3 \
        --klan-iterations 32 --klan-variant klan=patience=2 --critic-guided glan_cg \
        glan_cg_no_lrtg glan_cg_no_hrm --cg-naive naive --critic-lambda 1

ACT (advantage-conditioned tokens, issue 29) over the same critics: ``--variant
act=act_critic={klan_cql}`` trains DT draw i with KLAN draw i's CQL as its critic (``{klan_cql}``
is replaced by that export's path; KLAN's draws train first), and ``vs_same_critic`` pairs draw i
of ``act`` with ``iit`` draw i (needs ``--critic-guided``, which plays ``iit``).

Prints the figures and writes them to ``--results``. Reruns skip the draws already trained;
``--train-only`` stops before the A/B (to tune λ on a draw's models first).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np

from glan_ray.eval.ab import METRICS
from glan_ray.eval.stats import compare

GLAN_MODELS = ("lrtg", "hrm")
"""Exports the GLAN arm reads besides its DT, copied from ``--models`` into each draw's."""
KLAN_CQL = "{klan_cql}"
"""In a --variant's fields: the path of the same draw's KLAN CQL export (ACT's critic)."""
KLAN_MODELS = ("isp", "am")
"""Exports the KLAN arm reads besides its CQL, copied from ``--models`` into each KLAN draw's
(``--klan-draws``: KLAN's retraining noise is its CQL's; ISP and AM stay the run's)."""


def _glan_ray(*args: str) -> None:
    cmd = [sys.executable, "-m", "glan_ray.cli", *args]
    print("$ glan-ray " + " ".join(args), flush=True)
    subprocess.run(cmd, check=True)


def _variants(items: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for item in items:
        name, sep, sets = item.partition("=")
        if not sep or not name.isidentifier():
            raise SystemExit(f"--variant: expected NAME=[KEY=VALUE,...]; got {item!r}")
        out[name] = [s for s in sets.split(",") if s]
    return out


def _train_into(args: argparse.Namespace, out: str, model: str, copies: tuple[str, ...],
                flags: list[str]) -> float:
    """Train ``model`` into ``out`` beside copies of the run's exports ``copies``; its wall
    seconds, 0 when it exists already."""
    if os.path.exists(os.path.join(out, model, "model.pt")):
        return 0.0
    os.makedirs(out, exist_ok=True)
    for name in copies:
        dst = os.path.join(out, name)
        if not os.path.isdir(dst):
            shutil.copytree(os.path.join(args.models, name), dst)
    t0 = time.perf_counter()
    _glan_ray("train", model, "--data", args.data, "--out", out, *flags)
    return time.perf_counter() - t0


def _train_draw(args: argparse.Namespace, sets: list[str], seed: int, out: str) -> float:
    """Train one draw's DT into ``out`` (with the base run's L-RTG and HRM)."""
    budget = ["--iterations", str(args.iterations), "--updates-per-iteration", str(args.updates)]
    flags = [*budget, f"--set=seed={seed}", *(f"--set={s}" for s in sets)]
    return _train_into(args, out, "dt", GLAN_MODELS, flags)


def _train_klan_draw(args: argparse.Namespace, seed: int, out: str,
                     sets: list[str] = ()) -> float:  # fmt: skip
    """Train one KLAN draw's CQL (IIT) into ``out`` with the run's ISP and AM; ``sets``: the
    variant's ``--set`` fields (``--klan-variant``), which override the budget flags'."""
    flags = ["--iterations", str(args.klan_iterations), "--updates-per-iteration",
             str(args.klan_updates), f"--set=seed={seed}",
             *(f"--set={s}" for s in sets)]  # fmt: skip
    return _train_into(args, out, "cql", KLAN_MODELS, flags)


def _link_cg_draw(args: argparse.Namespace, d: int, dt_draw: str, naive_draw: str | None,
                  klan_draw: str) -> str:
    """Directory ``cg_d`` of links a critic-guided arm reads for draw ``d`` (module docstring)."""
    out = os.path.join(args.run, f"cg_{d}")
    os.makedirs(out, exist_ok=True)
    links = {name: os.path.join(args.models, name) for name in GLAN_MODELS}
    links["dt"] = os.path.join(args.run, dt_draw, "dt")
    links["dt_naive"] = (os.path.join(args.run, naive_draw, "dt") if naive_draw
                         else os.path.join(args.models, "dt_naive"))  # fmt: skip
    links["cql"] = os.path.join(args.run, klan_draw, "cql")
    for name, src in links.items():
        dst = os.path.join(out, name)
        # a base run without dt_naive links none; lexists: a rerun finds its own links
        if os.path.exists(src) and not os.path.lexists(dst):
            os.symlink(os.path.abspath(src), dst)
    return out


def _stop(draw: str) -> dict[str, float] | None:
    """Iterations a draw's RL export ran (its progress.csv) and its best held-out criterion."""
    import csv

    for model in ("cql", "dt"):
        path = os.path.join(draw, model, "progress.csv")
        if os.path.exists(path):
            with open(path) as f:
                rows = list(csv.DictReader(f))
            seconds = sum(float(r["seconds"]) for r in rows)
            return {"iterations": len(rows), "train_s": round(seconds, 1)}
    return None


def _compare(units: np.lib.npyio.NpzFile, arm: str, ref: str, metric: str) -> dict[str, float]:
    y, x = METRICS[metric]
    c = compare(units[f"{arm}/{y}"], units[f"{ref}/{y}"],
                units[f"{arm}/{x}"] if x else None, units[f"{ref}/{x}"] if x else None,
                paired=True).to_dict()  # fmt: skip
    return {k: round(float(c[k]), 4) for k in ("rel_pct", "ci_low_pct", "ci_high_pct", "p_value")}


def _welch(a: list[float], b: list[float]) -> dict[str, float]:
    """Difference of the means of two variants' per-draw figures, with Welch's t-test."""
    from scipy import stats

    t = stats.ttest_ind(a, b, equal_var=False)
    return {"diff": round(float(np.mean(a) - np.mean(b)), 4), "p_value": round(float(t.pvalue), 4)}


def _one_sample(xs: list[float]) -> dict[str, float | None]:
    """Mean of per-draw paired differences and its one-sample t-test against 0 (draws as units)."""
    from scipy import stats

    p = float(stats.ttest_1samp(xs, 0.0).pvalue) if len(xs) > 1 else None
    return {"mean": round(float(np.mean(xs)), 4), "p_value": None if p is None else round(p, 4)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", required=True, help="directory of the draws' models and the A/B")
    ap.add_argument("--data", required=True, help="datasets the DTs train on (HRM-labelled)")
    ap.add_argument("--models", required=True, help="the run's models (L-RTG, HRM, KLAN...)")
    ap.add_argument("--variant", action="append", default=[], metavar="NAME=[K=V,...]",
                    help="a DT variant: its --set fields, comma-separated (none: published)")
    ap.add_argument("--draws", type=int, default=3, help="trainings of each variant")
    ap.add_argument("--iterations", type=int, default=1, help="the demo preset's DT budget")
    ap.add_argument("--updates", type=int, default=300, help="updates per iteration")
    ap.add_argument("--arms", nargs="+", help="the A/B's other arms (default: logging, klan, "
                    "the constant pages and the oracle, for the personalization uplift)",
                    default=["logging", "klan", "always_featured", "always_explore",
                             "always_following", "oracle"])  # fmt: skip
    ap.add_argument("--references", nargs="+", default=["klan", "logging"])
    ap.add_argument("--users", type=int, default=2000)
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1], help="seeds of A/B users")
    ap.add_argument("--metrics", nargs="+", default=["usage_time", "dau", "pdr"])
    ap.add_argument("--results", default="bench/results/retrain_noise.json")
    ap.add_argument("--world", default="default", help="simulated world of the A/B")
    ap.add_argument("--klan-draws", type=int, default=0,
                    help="also retrain KLAN's CQL this many times (seeds 0, 1, ...); the draws "
                    "play as arms klan_0, klan_1, ... and form the group 'klan'")  # fmt: skip
    ap.add_argument("--klan-iterations", type=int, default=8, help="the demo's CQL budget")
    ap.add_argument("--klan-updates", type=int, default=300, help="updates per iteration")
    ap.add_argument("--klan-variant", action="append", default=[], metavar="NAME=[K=V,...]",
                    help="with --klan-draws: a KLAN variant, its CQL's --set fields (e.g. "
                    "early=patience=2 or long=iterations=32); its draws play as NAME_0, ... "
                    "(default: one variant, 'klan', the budget flags alone)")  # fmt: skip
    ap.add_argument("--critic-guided", nargs="+", default=[], metavar="ARM",
                    help="critic-guided arms (glan_cg, glan_cg_no_lrtg, glan_cg_no_hrm) played on "
                    "each draw's DT with KLAN draw i's CQL as critic, klan_iit beside (group "
                    "'iit'); needs --variant and --klan-draws equal to --draws")  # fmt: skip
    ap.add_argument("--critic-lambda", type=float, default=None,
                    help="λ of the critic-guided arms (tuned on validation users: "
                    "bench/critic_lambda.py); default: the arm's")  # fmt: skip
    ap.add_argument("--cg-naive", default=None, metavar="VARIANT",
                    help="the DT variant trained on the naive reward (--set "
                    "reward_column=reward) whose draws glan_cg_no_hrm reads as dt_naive")
    ap.add_argument("--train-only", action="store_true", help="train the draws, no A/B")
    args = ap.parse_args()
    variants = _variants(args.variant)
    klan_variants = _variants(args.klan_variant) if args.klan_variant else {"klan": []}
    if not variants and not args.klan_draws:
        raise SystemExit("nothing to compare: give --variant (DT) and/or --klan-draws")
    if args.critic_guided and not (variants and args.klan_draws == args.draws):
        raise SystemExit("--critic-guided needs a DT --variant and --klan-draws equal to --draws")
    if args.cg_naive is not None and args.cg_naive not in variants:
        raise SystemExit(f"--cg-naive {args.cg_naive!r}: not a --variant name {sorted(variants)}")

    same_critic_variants = [v for v, sets in variants.items() if any(KLAN_CQL in x for x in sets)]
    if same_critic_variants and not (args.critic_guided and args.klan_draws == args.draws):
        raise SystemExit(f"--variant {same_critic_variants[0]}: {KLAN_CQL} needs --critic-guided "
                         "and --klan-draws equal to --draws")  # fmt: skip
    train_s: dict[str, float] = {}
    draws: dict[str, list[str]] = {}
    base: dict[str, str] = {}
    for name, sets in klan_variants.items() if args.klan_draws else ():
        if name in variants:
            raise SystemExit(f"KLAN variant {name!r}: the name is taken by a DT variant")
        draws[name] = []
        for d in range(args.klan_draws):
            arm = f"{name}_{d}"
            out = os.path.join(args.run, arm)
            train_s[arm] = round(_train_klan_draw(args, d, out, sets), 1)
            draws[name].append(arm)
            base[arm] = "klan"
    klan_name = next(iter(klan_variants))
    for name, sets in variants.items():
        draws[name] = []
        for d in range(args.draws):
            arm = f"{name}_{d}"
            critic = os.path.abspath(os.path.join(args.run, f"{klan_name}_{d}", "cql"))
            sets_d = [x.replace(KLAN_CQL, critic) for x in sets]
            train_s[arm] = round(_train_draw(args, sets_d, d, os.path.join(args.run, arm)), 1)
            draws[name].append(arm)
            base[arm] = "glan"
    options: list[str] = []
    dirs = {a: os.path.join(args.run, a) for a in base}  # each arm's models directory
    if args.critic_guided:
        dt_name = next(iter(variants))
        for cg in [*args.critic_guided, "iit"]:
            if cg in draws:
                raise SystemExit(f"critic-guided arm {cg!r}: the name is taken by a variant")
            draws[cg] = []
        for d in range(args.draws):
            naive = f"{args.cg_naive}_{d}" if args.cg_naive else None
            cg_dir = _link_cg_draw(args, d, f"{dt_name}_{d}", naive, f"{klan_name}_{d}")
            for cg in args.critic_guided:
                arm = f"{cg}_{d}"
                base[arm], dirs[arm] = cg, cg_dir
                draws[cg].append(arm)
                if args.critic_lambda is not None:
                    options.append(f"--arm-option={arm}.critic_lambda={args.critic_lambda}")
            base[f"iit_{d}"], dirs[f"iit_{d}"] = "klan_iit", cg_dir
            draws["iit"].append(f"iit_{d}")
    if args.train_only:
        print(json.dumps({"train_s": train_s, "draws": draws}, indent=1))
        return
    if not os.path.exists(os.path.join(args.run, "ab", "ab_units.npz")):
        flags = [f"--variant={a}={b}@{dirs[a]}" for a, b in base.items()]
        _glan_ray("evaluate", "--run", args.run, "--models", args.models, "--arms", *args.arms,
                  *flags, *options, "--users", str(args.users), "--seeds", *map(str, args.seeds),
                  "--world", args.world)  # fmt: skip
    units = np.load(os.path.join(args.run, "ab", "ab_units.npz"))
    with open(os.path.join(args.run, "ab", "ab.json")) as f:
        ab = json.load(f)
    pers = ab.get("personalization_uplift_captured_usage_time", {})
    pages = ("featured", "explore", "following")
    shares = {a: [round(ab["metrics"][a][f"assign_ratio_{p}"], 3) for p in pages]
              for a in ab["metrics"]}  # fmt: skip

    per_draw = {a: {r: {m: _compare(units, a, r, m) for m in args.metrics}
                    for r in args.references} for v in draws.values() for a in v}  # fmt: skip
    summary: dict[str, dict] = {}
    for name, arms in draws.items():
        summary[name] = {"pers_uplift": [round(pers[a], 3) for a in arms if a in pers],
                         "shares": [shares[a] for a in arms]}  # fmt: skip
        for r in args.references:
            for m in args.metrics:
                xs = [per_draw[a][r][m]["rel_pct"] for a in arms]
                summary[name][f"{m}_vs_{r}"] = {
                    "draws": xs, "mean": round(float(np.mean(xs)), 4),
                    "sd": round(float(np.std(xs, ddof=1)), 4) if len(xs) > 1 else None,
                }  # fmt: skip
    between: dict[str, dict] = {}
    names = list(draws)
    if max(args.draws, args.klan_draws) > 1:
        for i, a in enumerate(names):
            for b in names[i + 1:]:
                between[f"{a}_vs_{b}"] = {
                    f"{m}_vs_{r}": _welch(summary[a][f"{m}_vs_{r}"]["draws"],
                                          summary[b][f"{m}_vs_{r}"]["draws"])
                    for r in args.references[:1] for m in args.metrics
                }  # fmt: skip
    same_critic: dict[str, dict] = {}
    for cg in [*args.critic_guided, *same_critic_variants]:
        same_critic[cg] = {}
        for m in args.metrics:
            pairs = [_compare(units, a, b, m) for a, b in zip(draws[cg], draws["iit"], strict=True)]
            xs = [c["rel_pct"] for c in pairs]
            same_critic[cg][m] = {"per_draw": pairs, **_one_sample(xs)}
    result = {
        "command": " ".join(sys.argv),
        "variants": variants,
        "klan_variants": klan_variants if args.klan_draws else {},
        "critic_guided": {"arms": args.critic_guided, "critic_lambda": args.critic_lambda,
                          "naive": args.cg_naive} if args.critic_guided else {},
        "train_stop": {a: _stop(os.path.join(args.run, a)) for v in draws.values() for a in v},
        "draws": args.draws,
        "klan_draws": args.klan_draws,
        "world": args.world,
        "budget": {"iterations": args.iterations, "updates_per_iteration": args.updates},
        "ab": {"users": args.users, "seeds": args.seeds, "arms": ab["config"]["arms"]},
        "train_s": train_s,
        "per_draw": per_draw,
        "summary": summary,
        "between_variants": between,
        "vs_same_critic": same_critic,
        "reference_pers_uplift": {a: round(pers[a], 3) for a in args.arms if a in pers},
    }
    print(json.dumps({"summary": summary, "between_variants": between,
                      "vs_same_critic": same_critic}, indent=1))
    os.makedirs(os.path.dirname(args.results) or ".", exist_ok=True)
    with open(args.results, "w") as f:
        json.dump(result, f, indent=1)
    print(f"wrote {args.results}")


if __name__ == "__main__":
    main()
