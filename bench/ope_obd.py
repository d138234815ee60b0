"""OPE on real data: the Open Bandit Dataset sample (ZOZOTOWN, campaign "all").

The standard OBD experiment (Saito et al., 2021): estimate the click-through rate of the Bernoulli
Thompson Sampling (BTS) policy from the logs of the uniform random policy, with our estimators
(``glan_ray.eval.ope``: IPS, SNIPS, DR), and compare with BTS's on-policy CTR (its mean click in
its own logs of the same campaign).

- Data: the 10,000-row-per-policy OBD sample shipped in obp's source distribution. obp does not
  install on Python 3.11, so its sdist is fetched with ``pip download --no-binary :all:`` into a
  cache directory (``~/.cache/glan_ray/obp`` unless ``--cache``) and the CSVs are read there;
  nothing of obp is imported or copied into the repo.
- Rows are impressions (one item at one of 3 positions), as in obp's ``OpenBanditDataset``:
  action = ``item_id``, position = dense rank of ``position`` (0..2), reward = ``click``,
  propensity = ``propensity_score``; all positions pooled.
- BTS's action distribution is obp's ``BernoulliTS(n_actions, len_list=3, is_zozotown_prior=True,
  campaign=...).compute_batch_action_dist(n_sim)``, re-implemented in numpy: each simulation
  draws θ_a ~ Beta(α_a, β_a) from the ZOZOTOWN prior (``obp/policy/conf/prior_bts.yaml`` of the
  sdist; no counts, so the prior is the posterior), ranks items by θ and puts the top 3 at
  positions 0..2; π(a | position k) is the frequency of item a at position k. It is context-free:
  row i gets π(· | position_i).
- DR's q̂(a, k): per (item, position) click rate with additive smoothing toward the position's
  click rate (``--smoothing`` pseudo-impressions), cross-fitted over 2 random folds of the random
  logs (each row's q̂ comes from the model fitted on the other fold).
- Caveat (inherent to this experiment, as run by obp): the evaluation policy is BTS with the
  *initial* ZOZOTOWN prior, whereas the BTS that produced the logs updated its posteriors during
  the logging week, so its on-policy CTR is an approximate ground truth. The JSON's
  ``bts_action_dist_check`` compares π with BTS's logged propensities and item frequencies.
- 95% CIs: percentile bootstrap over the random logs' rows (the estimators re-run on each
  resample; π and the cross-fitted q̂ held fixed); the on-policy CTRs use the binomial normal SE.

Prints a table and writes ``bench/results/ope_obd.json``.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import platform
import subprocess
import sys
import tarfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import yaml

from glan_ray.eval.ope import dr, ips, snips

HERE = os.path.dirname(os.path.abspath(__file__))
LEN_LIST = 3
log = logging.getLogger("ope_obd")


def fetch_obp_sdist(cache: Path, version: str) -> Path:
    """The extracted sdist ``<cache>/obp-<version>``, downloaded with pip unless already there."""
    root = cache / f"obp-{version}"
    if (root / "obp" / "dataset" / "obd").is_dir():
        log.info("using cached obp %s sdist at %s", version, root)
        return root
    dl = cache / "sdist"
    dl.mkdir(parents=True, exist_ok=True)
    log.info("downloading obp==%s sdist from PyPI into %s", version, dl)
    cmd = [sys.executable, "-m", "pip", "download", f"obp=={version}", "--no-deps"]
    # obp declares python<3.11; we only want its files, so the check does not apply
    cmd += ["--no-binary", ":all:", "--ignore-requires-python", "-d", str(dl), "--quiet"]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        err = (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
    except (OSError, subprocess.TimeoutExpired) as e:
        proc, err = None, str(e)
    tarball = dl / f"obp-{version}.tar.gz"
    if proc is None or proc.returncode != 0 or not tarball.is_file():
        sys.exit(f"error: could not download the obp=={version} sdist with pip: {err}")
    with tarfile.open(tarball) as tf:
        if hasattr(tarfile, "data_filter"):
            tf.extractall(cache, filter="data")
        else:  # Python < 3.10.12: no extraction filters; refuse unsafe member names
            if any(m.name.startswith("/") or ".." in Path(m.name).parts for m in tf):
                sys.exit(f"error: unsafe paths in {tarball}")
            tf.extractall(cache)
    if not (root / "obp" / "dataset" / "obd").is_dir():
        sys.exit(f"error: the obp=={version} sdist has no obp/dataset/obd (try another --obp)")
    log.info("extracted to %s", root)
    return root


def load_logs(root: Path, policy: str, campaign: str) -> dict[str, np.ndarray]:
    """One policy's OBD log as obp's ``OpenBanditDataset.load_raw_data`` reads it: sorted by
    timestamp, position → dense rank from 0."""
    path = root / "obp" / "dataset" / "obd" / policy / campaign / f"{campaign}.csv"
    if not path.is_file():
        sys.exit(f"error: {path} not found in the obp sdist")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    order = np.argsort(np.array([r["timestamp"] for r in rows]), kind="stable")
    rows = [rows[i] for i in order]
    pos_raw = np.array([int(r["position"]) for r in rows])
    return {
        "action": np.array([int(r["item_id"]) for r in rows]),
        "position": np.unique(pos_raw, return_inverse=True)[1].astype(int),
        "reward": np.array([float(r["click"]) for r in rows]),
        "pscore": np.array([float(r["propensity_score"]) for r in rows]),
    }


def load_prior(root: Path, campaign: str) -> tuple[np.ndarray, np.ndarray]:
    with open(root / "obp" / "policy" / "conf" / "prior_bts.yaml") as f:
        prior = yaml.safe_load(f)[campaign]
    return np.asarray(prior["alpha"], float), np.asarray(prior["beta"], float)


def bts_action_dist(
    alpha: np.ndarray, beta: np.ndarray, n_sim: int, rng: np.random.Generator, chunk: int = 10_000
) -> np.ndarray:
    """(n_actions, LEN_LIST): frequency of each item at each position when items are ranked by
    θ ~ Beta(α, β), as obp's ``BernoulliTS.compute_batch_action_dist`` (before any update)."""
    n_actions = len(alpha)
    counts = np.zeros((n_actions, LEN_LIST))
    done = 0
    while done < n_sim:
        m = min(chunk, n_sim - done)
        theta = rng.beta(alpha, beta, size=(m, n_actions))
        top = np.argsort(-theta, axis=1)[:, :LEN_LIST]  # (m, LEN_LIST), best first
        for k in range(LEN_LIST):
            counts[:, k] += np.bincount(top[:, k], minlength=n_actions)
        done += m
    return counts / n_sim


def crossfit_q_hat(
    d: dict[str, np.ndarray], n_actions: int, smoothing: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """(n, n_actions) q̂ for each row from the other fold's smoothed (item, position) click rate;
    also the folds' (2, n_actions, LEN_LIST) tables."""
    n = len(d["reward"])
    fold = np.zeros(n, dtype=int)
    fold[rng.permutation(n)[: n // 2]] = 1
    tables = np.zeros((2, n_actions, LEN_LIST))
    for f in (0, 1):
        tr = fold != f  # fit on the other fold
        a, k, r = d["action"][tr], d["position"][tr], d["reward"][tr]
        imps = np.zeros((n_actions, LEN_LIST))
        clicks = np.zeros((n_actions, LEN_LIST))
        np.add.at(imps, (a, k), 1.0)
        np.add.at(clicks, (a, k), r)
        pos_ctr = clicks.sum(0) / np.maximum(imps.sum(0), 1.0)  # (LEN_LIST,)
        tables[f] = (clicks + smoothing * pos_ctr) / (imps + smoothing)
    q_hat = tables[fold, :, d["position"]]  # (n, n_actions)
    return q_hat, tables


def bootstrap(
    d: dict[str, np.ndarray],
    pi: np.ndarray,
    q_hat: np.ndarray,
    n_boot: int,
    rng: np.random.Generator,
) -> dict[str, np.ndarray]:
    n = len(d["reward"])
    out = {k: np.empty(n_boot) for k in ("ips", "snips", "dr")}
    for b in range(n_boot):
        i = rng.integers(0, n, n)
        r, a, p, pi_b = d["reward"][i], d["action"][i], d["pscore"][i], pi[i]
        out["ips"][b] = ips(r, a, p, pi_b)
        out["snips"][b] = snips(r, a, p, pi_b)
        out["dr"][b] = dr(r, a, p, pi_b, q_hat[i])
    return out


def binomial(r: np.ndarray) -> dict:
    m, se = float(r.mean()), float(r.std(ddof=1) / np.sqrt(len(r)))
    return {
        "ctr": m,
        "se": se,
        "ci95": [m - 1.96 * se, m + 1.96 * se],
        "clicks": int(r.sum()),
        "rows": len(r),
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--cache",
        type=Path,
        default=Path.home() / ".cache" / "glan_ray" / "obp",
        help="where the obp sdist is downloaded and extracted (default: %(default)s)",
    )
    ap.add_argument("--obp", default="0.5.7", help="obp version whose sdist holds the OBD sample")
    ap.add_argument("--campaign", default="all", choices=["all", "men", "women"])
    ap.add_argument("--n-sim", type=int, default=100_000, help="Monte Carlo draws for BTS's π")
    ap.add_argument("--n-boot", type=int, default=2000, help="bootstrap resamples for the CIs")
    ap.add_argument(
        "--smoothing", type=float, default=10.0, help="DR q̂: pseudo-impressions per cell"
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--results", default=os.path.join(HERE, "results", "ope_obd.json"))
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    t0 = time.perf_counter()
    timings: dict[str, float] = {}

    root = fetch_obp_sdist(args.cache.expanduser(), args.obp)
    rnd = load_logs(root, "random", args.campaign)
    bts = load_logs(root, "bts", args.campaign)
    n_actions = int(rnd["action"].max() + 1)  # as obp's OpenBanditDataset.n_actions
    alpha, beta = load_prior(root, args.campaign)
    if len(alpha) != n_actions:
        sys.exit(f"error: prior has {len(alpha)} items, the random logs {n_actions}")
    timings["fetch_and_load_s"] = time.perf_counter() - t0
    log.info(
        "random logs: %d rows, %d clicks; bts logs: %d rows, %d clicks; %d items",
        len(rnd["reward"]),
        rnd["reward"].sum(),
        len(bts["reward"]),
        bts["reward"].sum(),
        n_actions,
    )

    t = time.perf_counter()
    seeds = np.random.SeedSequence(args.seed).spawn(3)
    dist = bts_action_dist(alpha, beta, args.n_sim, np.random.default_rng(seeds[0]))
    timings["bts_action_dist_s"] = time.perf_counter() - t
    log.info(
        "BTS action distribution from %d draws in %.2fs", args.n_sim, timings["bts_action_dist_s"]
    )
    # check: BTS's logged propensities vs our π at the logged (item, position)
    pi_logged = dist[bts["action"], bts["position"]]
    freq = np.zeros((n_actions, LEN_LIST))  # how often BTS showed each item at each position
    np.add.at(freq, (bts["action"], bts["position"]), 1.0)
    freq /= freq.sum(0)
    check = {
        "corr_pi_vs_bts_logged_pscore": float(np.corrcoef(pi_logged, bts["pscore"])[0, 1]),
        "mean_abs_diff": float(np.mean(np.abs(pi_logged - bts["pscore"]))),
        "mean_pi_at_bts_logged": float(pi_logged.mean()),
        "mean_bts_logged_pscore": float(bts["pscore"].mean()),
        "corr_pi_vs_bts_item_freq": float(np.corrcoef(dist.ravel(), freq.ravel())[0, 1]),
        "tv_pi_vs_bts_item_freq_per_position": (0.5 * np.abs(dist - freq).sum(0)).tolist(),
        "top5_items_position0": [[int(a), float(dist[a, 0])] for a in np.argsort(-dist[:, 0])[:5]],
    }

    t = time.perf_counter()
    pi = dist[:, rnd["position"]].T  # (n, n_actions): π(· | position of the row)
    q_hat, _ = crossfit_q_hat(rnd, n_actions, args.smoothing, np.random.default_rng(seeds[1]))
    args_ = (rnd["reward"], rnd["action"], rnd["pscore"], pi)
    point = {"ips": ips(*args_), "snips": snips(*args_), "dr": dr(*args_, q_hat)}
    w = pi[np.arange(len(rnd["action"])), rnd["action"]] / rnd["pscore"]
    timings["estimate_s"] = time.perf_counter() - t
    t = time.perf_counter()
    boot = bootstrap(rnd, pi, q_hat, args.n_boot, np.random.default_rng(seeds[2]))
    timings["bootstrap_s"] = time.perf_counter() - t

    on = binomial(bts["reward"])
    random_ctr = binomial(rnd["reward"])
    estimates = {}
    for k, v in point.items():
        se = float(boot[k].std(ddof=1))
        z = (v - on["ctr"]) / float(np.hypot(se, on["se"]))
        lo, hi = np.percentile(boot[k], [2.5, 97.5])
        estimates[k] = {
            "estimate": v,
            "bootstrap_se": se,
            "ci95": [float(lo), float(hi)],
            "relative_error": abs(v - on["ctr"]) / on["ctr"],
            "signed_error": v - on["ctr"],
            "z_vs_on_policy": z,
            "on_policy_in_ci95": bool(lo <= on["ctr"] <= hi),
        }
    timings["total_s"] = time.perf_counter() - t0

    results = {
        "experiment": "OPE of Bernoulli TS (ZOZOTOWN prior) from uniform-random logs, OBD sample",
        "obp_version": args.obp,
        "obp_sdist": str(root),
        "campaign": args.campaign,
        "rows_random": len(rnd["reward"]),
        "rows_bts": len(bts["reward"]),
        "n_actions": n_actions,
        "len_list": LEN_LIST,
        "positions": "pooled; π evaluated per row at its logged position",
        "on_policy_bts": on,
        "random_policy": random_ctr,
        "estimates": estimates,
        "importance_weights": {
            "mean": float(w.mean()),
            "max": float(w.max()),
            "ess": float(w.sum() ** 2 / np.sum(w**2)),
            "rows_with_w_gt_0.01": int(np.sum(w > 0.01)),
            "clicks_with_w_gt_0.01": int(np.sum(rnd["reward"][w > 0.01])),
        },
        "bts_action_dist_check": check,
        "method": {
            "bts_action_dist": "numpy re-implementation of obp BernoulliTS."
            "compute_batch_action_dist: θ~Beta(α,β) from prior_bts.yaml, top-3 by θ",
            "q_hat": "per (item, position) click rate, additive smoothing toward the position CTR,"
            " 2-fold cross-fit on the random logs",
            "ci": "percentile bootstrap over random-log rows (π, q̂ fixed); on-policy: normal SE",
        },
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "runtime": timings,
        "machine": {
            "python": sys.version.split()[0],
            "numpy": np.__version__,
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
        },
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.results)), exist_ok=True)
    with open(args.results, "w") as f:
        json.dump(results, f, indent=2)
    log.info("wrote %s", args.results)

    print(
        f"OBD sample (obp {args.obp}, campaign {args.campaign}): value of BTS from random logs, "
        f"{len(rnd['reward'])} rows, {n_actions} items, {timings['total_s']:.1f}s"
    )
    print(f"{'':16}{'CTR':>9}  {'95% CI':>20}  {'rel.err':>8}  {'z vs on':>8}")
    for name, r in (("BTS on-policy", on), ("random on-policy", random_ctr)):
        ci = f"[{r['ci95'][0]:.5f}, {r['ci95'][1]:.5f}]"
        print(f"{name:16}{r['ctr']:9.5f}  {ci:>20}  {'':>8}  {'':>8}")
    for k, e in estimates.items():
        ci = f"[{e['ci95'][0]:.5f}, {e['ci95'][1]:.5f}]"
        name = f"{k.upper()} (BTS)"
        rel, z = e["relative_error"], e["z_vs_on_policy"]
        print(f"{name:16}{e['estimate']:9.5f}  {ci:>20}  {rel:8.3f}  {z:8.2f}")


if __name__ == "__main__":
    main()
