"""The serving app before and after hardening, back to back: ``bench/serve_load.py`` of the old
commit (default ``fc48370``, the last before the hardening; its bench sends the old request
bodies) and of this tree, alternating old / new / old / new (``--rounds``) with the same
options, on a machine that should be otherwise idle.

The old app runs from a git worktree of that commit (``--old-tree``, created when missing),
the new one from this checkout, each with ``PYTHONPATH`` set to its tree and started in it (Ray
puts the driver's working directory first on its workers' ``sys.path``); each run is its own
``serve_load.py`` process (its own Ray). Written to ``--results``
(``bench/results/serve_load_compare.json``) after every run: each run's per-level p50 / p99 of
the entry endpoint (and of the session end), entries/s (= entry + end pairs/s), errors, the
request-path and whole-server CPU per entry + end, the load average, the in-process model limit;
and a summary per app and level (the median over the rounds, new / old). A table is printed at
the end. Wall-clock figures (latency, entries/s) need an idle machine; the CPU per entry + end
is read per process from ``/proc`` and holds up better on a busy one.

    python bench/serve_compare.py                       # 2 rounds, levels 1,8,32
    python bench/serve_compare.py --requests 50 --big 50 --rounds 1   # smoke test
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

logger = logging.getLogger("serve_compare")

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
OLD_COMMIT = "fc48370"
LEVEL_KEYS = (
    "requests",
    "completed",
    "errors",
    "p50_ms",
    "p99_ms",
    "session_end_p50_ms",
    "session_end_p99_ms",
    "entry_req_per_s",
    "http_req_per_s",
    "request_path_cpu_ms_per_entry_and_end",
    "server_cpu_ms_per_entry_and_end",
    "client_cpu_share",
    "loadavg_1m",
)
SUMMARY_KEYS = ("p50_ms", "p99_ms", "entry_req_per_s", "errors",
                "request_path_cpu_ms_per_entry_and_end")  # fmt: skip

# The old bench's in-process limit calls DTModel._probs / HRMModel._rewards, which that very
# commit renamed to probs / rewards: alias them (in the bench's driver process only; the app's
# own code is untouched), then run the old bench as its __main__ (its subprocesses re-run it by
# its __file__, so they need nothing).
_OLD_SHIM = """
import runpy, sys
from glan_ray.serving import models
for name, old, new in (("DTModel", "_probs", "probs"), ("HRMModel", "_rewards", "rewards")):
    cls = getattr(models, name).func_or_class
    if not hasattr(cls, old):
        setattr(cls, old, getattr(cls, new))
sys.argv = [sys.argv[1], *sys.argv[2:]]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def old_tree(path: str, commit: str) -> str:
    """A worktree of ``commit`` at ``path`` (added when missing; refused if it is another one)."""
    if not os.path.isdir(path):
        subprocess.run(["git", "-C", ROOT, "worktree", "add", "--detach", path, commit], check=True)
    head = subprocess.run(["git", "-C", path, "rev-parse", "HEAD"], capture_output=True,
                          text=True, check=True).stdout.strip()  # fmt: skip
    want = subprocess.run(["git", "-C", ROOT, "rev-parse", commit], capture_output=True,
                          text=True, check=True).stdout.strip()  # fmt: skip
    if head != want:
        raise SystemExit(f"{path} is at {head[:12]}, not {commit} ({want[:12]}): remove it or "
                         "pass another --old-tree")  # fmt: skip
    return path


def run_bench(app: str, tree: str, args: argparse.Namespace, out: str) -> dict[str, Any]:
    """One ``serve_load.py`` run of ``tree``; its results file, read back."""
    bench = os.path.join(tree, "bench", "serve_load.py")
    opts = ["--models", args.models, "--setups", args.setup, "--paths", args.path,
            "--levels", args.levels, "--requests", str(args.requests), "--big", str(args.big),
            "--users", str(args.users), "--sessions-per-day", str(args.sessions_per_day),
            "--time-limit", str(args.time_limit), "--level-limit", str(args.level_limit),
            "--no-floor", "--no-hops", "--results", out]  # fmt: skip
    cmd = [sys.executable, "-c", _OLD_SHIM, bench, *opts] if app == "old" else [
        sys.executable, bench, *opts]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": tree, "RAY_AUTH_MODE": "disabled"}
    logger.info("%s (in %s): %s", app, tree, " ".join(["bench/serve_load.py", *opts]))
    t0 = time.monotonic()
    # cwd = the tree: Ray puts the driver's working directory first on its workers' sys.path,
    # so from another checkout the replicas would import that checkout's glan_ray
    proc = subprocess.run(cmd, env=env, cwd=tree, capture_output=True, text=True)
    wall = time.monotonic() - t0
    if not os.path.exists(out):
        raise SystemExit(
            f"{app} bench wrote nothing (rc {proc.returncode}):\n{proc.stderr[-3000:]}"
        )
    with open(out) as f:
        res = json.load(f)
    res["returncode"], res["wall_s"] = proc.returncode, wall
    if proc.returncode or not res.get("levels"):  # a set-up that failed leaves no level
        res["stderr_tail"] = proc.stderr[-3000:]
        logger.warning("%s: rc %d, %d levels:\n%s", app, proc.returncode,
                       len(res.get("levels", [])), res["stderr_tail"])  # fmt: skip
    return res


def levels_of(res: dict[str, Any], setup: str, path: str) -> list[dict[str, Any]]:
    rows = [r for r in res.get("levels", []) if r.get("setup") == setup and r.get("path") == path]
    return [{"concurrency": r["concurrency"], **{k: r.get(k) for k in LEVEL_KEYS}} for r in rows]


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per level and app: the median over the rounds of each figure; then new / old."""
    by: dict[tuple[int, str], list[dict[str, Any]]] = {}
    for run in runs:
        for lv in run["levels"]:
            by.setdefault((lv["concurrency"], run["app"]), []).append(lv)
    out: dict[str, Any] = {}
    for conc in sorted({c for c, _ in by}):
        row: dict[str, Any] = {}
        for app in ("old", "new"):
            got = by.get((conc, app), [])
            row[app] = {
                k: statistics.median(v)
                for k in SUMMARY_KEYS
                if (v := [lv[k] for lv in got if lv.get(k) is not None])
            } | {"runs": len(got)}
        ratio = {
            k: row["new"][k] / row["old"][k]
            for k in SUMMARY_KEYS
            if row["old"].get(k) and row["new"].get(k) is not None and k != "errors"
        }
        out[str(conc)] = {**row, "new_over_old": ratio}
    return out


def table(runs: list[dict[str, Any]], summary: dict[str, Any]) -> str:
    head = f"{'conc':>4} {'app':>3} {'round':>5} {'p50 ms':>7} {'p99 ms':>7} {'entries/s':>9} "
    head += f"{'errors':>6} {'path CPU ms/pair':>16} {'load1m':>6}"
    lines = [head]
    for conc in sorted({lv["concurrency"] for r in runs for lv in r["levels"]}):
        for run in runs:
            for lv in (x for x in run["levels"] if x["concurrency"] == conc):
                lines.append(
                    f"{conc:>4} {run['app']:>3} {run['round']:>5} {lv['p50_ms']:>7.2f} "
                    f"{lv['p99_ms']:>7.2f} {lv['entry_req_per_s'] or 0:>9.1f} "
                    f"{lv['errors']:>6} {lv['request_path_cpu_ms_per_entry_and_end'] or 0:>16.3f}"
                    f" {lv['loadavg_1m'] or 0:>6.2f}"
                )
        s = summary[str(conc)]
        r = s["new_over_old"]
        lines.append(
            f"{conc:>4} new/old (medians): p50 x{r.get('p50_ms', float('nan')):.2f}, p99 "
            f"x{r.get('p99_ms', float('nan')):.2f}, entries/s "
            f"x{r.get('entry_req_per_s', float('nan')):.2f}, path CPU "
            f"x{r.get('request_path_cpu_ms_per_entry_and_end', float('nan')):.2f}"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=os.path.join(ROOT, "runs", "demo", "models"))
    ap.add_argument("--old-commit", default=OLD_COMMIT)
    ap.add_argument("--old-tree", default="/tmp/glan_old", help="worktree of --old-commit")
    ap.add_argument("--rounds", type=int, default=2, help="old, new pairs (old first)")
    ap.add_argument("--setup", default="optimized+colocated")
    ap.add_argument("--path", default="direct", help="direct, proxy (haproxy set-ups: haproxy)")
    ap.add_argument("--levels", default="1,8,32")
    ap.add_argument("--requests", type=int, default=1000, help="entries at concurrency 1 and 8")
    ap.add_argument("--big", type=int, default=4000, help="entries at concurrency 32")
    ap.add_argument("--users", type=int, default=256)
    ap.add_argument("--sessions-per-day", type=int, default=8)
    ap.add_argument("--time-limit", type=float, default=600.0, help="one bench run (s)")
    ap.add_argument("--level-limit", type=float, default=240.0, help="one level (s)")
    ap.add_argument("--results", default=os.path.join(HERE, "results", "serve_load_compare.json"))
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    args.models = os.path.abspath(args.models)
    trees = {"old": old_tree(os.path.abspath(args.old_tree), args.old_commit), "new": ROOT}
    head = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                          capture_output=True, text=True).stdout.strip()  # fmt: skip
    out: dict[str, Any] = {
        "config": {k: v for k, v in vars(args).items() if k != "results"},
        "commits": {"old": args.old_commit, "new": head},
        "cpus": os.cpu_count(),
        "runs": [],
    }

    def save() -> None:
        os.makedirs(os.path.dirname(os.path.abspath(args.results)), exist_ok=True)
        out["summary"] = summarise(out["runs"])
        with open(args.results, "w") as f:
            json.dump(out, f, indent=1)

    with tempfile.TemporaryDirectory(prefix="serve_compare_") as tmp:
        for rnd in range(1, args.rounds + 1):
            for app in ("old", "new"):
                res = run_bench(app, trees[app], args, os.path.join(tmp, f"{app}{rnd}.json"))
                run = {"round": rnd, "app": app, "wall_s": res["wall_s"],
                       "returncode": res["returncode"],
                       "levels": levels_of(res, args.setup, args.path),
                       "in_process": res.get("in_process")}  # fmt: skip
                for k in ("note", "stderr_tail"):
                    if k in res:
                        run[k] = res[k]
                out["runs"].append(run)
                save()
                logger.info("%s round %d: %d levels in %.0f s", app, rnd, len(run["levels"]),
                            res["wall_s"])  # fmt: skip
    save()
    logger.info("written %s\n%s", args.results, table(out["runs"], out["summary"]))


if __name__ == "__main__":
    main()
