"""Does an ACT DT follow its command? On the first session of training days (a one-token
window), the DT is given token A(s, a) for each page a in turn: how often its argmax is a (it
inverts its critic); given the best page's advantage, and its own command head ĉ(s), how often it
picks the critic's argmax; and the scale of the advantages against the tokens' ``rtg_scale``.

    python bench/act_follow.py --run runs/cmd_default --data runs/base_default/data

Reads the draws ``<run>/act_<i>/dt`` (``bench/retrain_noise.py --variant
'act=act_critic={klan_cql}'``), each with the critic it was trained on; writes ``--results``.
"""

from __future__ import annotations

import argparse
import glob
import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from glan_ray.models.checkpoint import load_checkpoint
from glan_ray.models.critic_labels import QLabeller
from glan_ray.models.dt import rtg_baseline_s


def _argmax(net: torch.nn.Module, token_s: np.ndarray, obs: np.ndarray, scale: float) -> np.ndarray:
    """The DT's page on one-session windows: token_s (N,) seconds, obs (N, D) -> (N,)."""
    n = len(obs)
    with torch.no_grad():
        logits = net(torch.tensor(token_s[:, None] / scale, dtype=torch.float32),
                     torch.from_numpy(obs[:, None]), torch.zeros(n, 1, dtype=torch.long),
                     torch.zeros(n, 1, dtype=torch.long))[:, 0]  # fmt: skip  # (N, A)
    return logits.argmax(1).numpy()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", required=True, help="retrain_noise run with act_<i> draws")
    ap.add_argument("--data", required=True, help="the run directory the DTs trained on")
    ap.add_argument("--states", type=int, default=5000, help="first sessions read")
    ap.add_argument("--results", default="bench/results/act_follow.json")
    args = ap.parse_args()
    files = sorted(glob.glob(f"{args.data}/trajectories/*/*.parquet"))
    if not files:
        raise SystemExit(f"no trajectories under {args.data}")
    table = pa.concat_tables(pq.read_table(f, columns=["obs"]) for f in files)
    first = np.array([np.asarray(o[0], np.float32) for o in table.column("obs").to_pylist()
                      if len(o)][: args.states])  # fmt: skip  # (N, D)
    out = {}
    for path in sorted(glob.glob(os.path.join(args.run, "act_*", "dt"))):
        net, _, meta = load_checkpoint(path)
        net.eval()
        critic = QLabeller(meta["train_config"]["act_critic"], option="act_critic")
        scale = float(meta["extra"]["rtg_scale"])
        n, pages = len(first), net.cfg.n_actions
        adv = np.stack([critic.advantage(first, np.full(n, a)) for a in range(pages)], 1)
        best = adv.argmax(1)  # (N,) the critic's page
        cmd = rtg_baseline_s(first, meta["extra"]["command"])  # (N,) ĉ(s), seconds
        out[os.path.basename(os.path.dirname(path))] = {
            "asked_A_of_page_a_picks_a": [
                round(float((_argmax(net, adv[:, a], first, scale) == a).mean()), 3)
                for a in range(pages)],
            "asked_max_A_picks_critic_argmax": round(float(
                (_argmax(net, adv.max(1), first, scale) == best).mean()), 3),
            "command_head_picks_critic_argmax": round(float(
                (_argmax(net, cmd, first, scale) == best).mean()), 3),
            "critic_argmax_shares": [round(float((best == a).mean()), 3) for a in range(pages)],
            "advantage_spread_s": round(float((adv.max(1) - adv.min(1)).mean()), 1),
            "rtg_scale_s": scale,
            "command_above_max_advantage": round(float((cmd > adv.max(1)).mean()), 3),
        }  # fmt: skip
    print(json.dumps(out, indent=1))
    os.makedirs(os.path.dirname(args.results) or ".", exist_ok=True)
    with open(args.results, "w") as f:
        json.dump({"config": vars(args), "draws": out}, f, indent=1)
    print(f"wrote {args.results}")


if __name__ == "__main__":
    main()
