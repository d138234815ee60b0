"""Held-out users for the RL learners' budgets by convergence (``RLTrainConfig.patience``).

With early stopping on, the pre-learner leaves the held-out users (``data.split.is_val_user``,
the supervised models' split) out of training, and after every ``train()`` the driver scores
the trained module on their rows, prepared by the algorithm's own pre-learner:

- CQL: ``val_q_mean``, the mean Q-value of the held-out logged (s, a), until it stops rising:
  the bootstrap has converged (Q at r + γ·Q', the TD targets no longer move). The last
  iteration's weights are exported. For the log: ``val_snips``, the self-normalised IPS value
  (``eval.ope.snips``) of the greedy policy's session reward on held-out sessions a
  stochastic policy logged; ``val_churn``, the share of held-out states whose greedy page
  changed since the last check; ``val_regret``, today's Q of yesterday's greedy page short of
  today's best, as a share of the mean gap between the best and the average page; the
  held-out TD error. None of these is a stopping criterion (docs/pipeline.md, "Budgets"):
  the one-step SNIPS value is flat from the first 300 updates (stopped by it, KLAN lost 1.1
  points of usage over 3 draws against 9,600 updates: it cannot see drop-offs' delayed
  cost), 10–15% of held-out states keep swapping between near-tied pages every 300 updates
  through 7,200, and the TD error grows with Q.
- DT: ``val_loss``, the held-out cross-entropy the DT minimises (inverse-propensity weighted
  when it trains so; minimised); the best iteration's weights are exported. For the log: the
  plain cross-entropy and accuracy.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.dataset as pads
import torch
import torch.nn.functional as F
from ray.rllib.core.columns import Columns

from glan_ray import storage
from glan_ray.data.split import is_val_user
from glan_ray.eval.ope import snips
from glan_ray.models.cql import double_dqn_target
from glan_ray.models.dt import dt_loss, propensity_weights
from glan_ray.schema import conform

logger = logging.getLogger(__name__)

CHUNK = 4096
"""Rows (CQL) or windows (DT) per forward pass when scoring."""


def read_heldout(path: str, fraction: float, max_rows: int) -> pa.Table:
    """Up to ``max_rows`` rows of the held-out users of the Parquet dataset at ``path`` (local
    or URI), read batch by batch (the whole dataset is never in memory)."""
    fs, inner = storage.filesystem(path)
    parts, n = [], 0
    for batch in pads.dataset(inner, filesystem=fs, format="parquet").to_batches():
        t = pa.Table.from_batches([batch])
        t = t.filter(pa.array(is_val_user(t.column("user_id"), fraction)))
        parts.append(t.slice(0, max_rows - n))
        n += parts[-1].num_rows
        if n >= max_rows:
            break
    if n == 0:
        raise ValueError(
            f"no held-out users in {path} (val_fraction {fraction}); simulate more users, raise "
            "val_fraction or turn early stopping off (patience=None)"
        )
    return pa.concat_tables(parts)


class HeldOut:
    """The held-out rows as the learner's tensors, and the metrics the criterion reads."""

    metric: str = ""
    """The metric the criterion reads."""
    mode: str = "min"
    """Its better direction."""
    keep_best: bool = True
    """Export the best check's weights (a held-out loss); False: the last (a level that
    converges, where the best is just the latest)."""

    def __init__(self, config: Any, table: pa.Table) -> None:
        pre = config.prelearner_class(
            config=config, spaces=(config.observation_space, config.action_space)
        )
        table = conform(table, pre.dataset, where=f"held-out rows of {config.input_}",
                        spec=config.app)  # the app the learner was sized for
        arrays = pre.transform(table)
        self.config = config
        self.batch = {k: torch.from_numpy(np.array(v)) for k, v in arrays.items()}  # writable
        self.rows = len(next(iter(self.batch.values())))

    def chunks(self) -> Any:
        for i in range(0, self.rows, CHUNK):
            yield {k: v[i : i + CHUNK] for k, v in self.batch.items()}

    def measure(self, module: Any) -> dict[str, float]:
        """The metrics of ``module`` (an RLModule) in eval mode (no dropout); its mode is kept."""
        was_training = module.training
        module.eval()
        try:
            return self._measure(module)
        finally:
            module.train(was_training)

    def _measure(self, module: Any) -> dict[str, float]:
        raise NotImplementedError


class CQLHeldOut(HeldOut):
    metric, mode, keep_best = "val_q_mean", "max", False

    def __init__(self, config: Any, table: pa.Table) -> None:
        super().__init__(config, table)
        self._greedy: torch.Tensor | None = None
        propensity = table.column("propensity").to_numpy().astype(np.float64)
        self._stochastic = propensity < 1.0  # (N,) rows a deterministic policy logged: no support
        self._propensity = propensity[self._stochastic]

    @torch.no_grad()
    def _measure(self, module: Any) -> dict[str, float]:
        qnet = module.qnet
        target = getattr(module, "_target_qnet", qnet)  # a remote learner's copy has none
        dev = next(qnet.parameters()).device
        greedy, td, q_sum, loss, gap = [], 0.0, 0.0, 0.0, 0.0
        for i, b in enumerate(self.chunks()):
            b = {k: v.to(dev) for k, v in b.items()}
            q = qnet(b[Columns.OBS])  # (B, A)
            y = double_dqn_target(qnet(b[Columns.NEXT_OBS]), target(b[Columns.NEXT_OBS]),
                                  b[Columns.REWARDS], b[Columns.TERMINATEDS],
                                  self.config.gamma)  # fmt: skip
            q_a = q.gather(1, b[Columns.ACTIONS].long().unsqueeze(1)).squeeze(1)  # (B,)
            td += float(F.mse_loss(q_a, y, reduction="sum"))
            q_sum += float(q_a.sum())
            now = q.argmax(-1)  # (B,)
            greedy.append(now.cpu())
            best = q.max(-1).values  # (B,)
            gap += float((best - q.mean(-1)).sum())
            if self._greedy is not None:  # the value, by today's Q, of yesterday's choice
                prev = self._greedy[i * CHUNK : i * CHUNK + len(now)].to(dev)
                loss += float((best - q.gather(1, prev.unsqueeze(1)).squeeze(1)).sum())
        now = torch.cat(greedy)  # (N,)
        before = self._greedy  # yesterday's greedy pages (None on the first check)
        first = before is None
        churn = float("nan") if before is None else float((now != before).float().mean())
        self._greedy = now
        pi = F.one_hot(now, q.size(-1)).numpy().astype(np.float64)[self._stochastic]  # (n, A)
        value = snips(self.batch[Columns.REWARDS].numpy()[self._stochastic],
                      self.batch[Columns.ACTIONS].numpy()[self._stochastic], self._propensity,
                      pi)  # fmt: skip
        return {
            "val_snips": value,
            "val_churn": churn,
            "val_regret": float("nan") if first else loss / max(gap, 1e-12),
            "val_td_loss": td / self.rows,
            "val_q_mean": q_sum / self.rows,
        }


class DTHeldOut(HeldOut):
    metric, mode = "val_loss", "min"

    @torch.no_grad()
    def _measure(self, module: Any) -> dict[str, float]:
        from glan_ray.rllib.dt.torch.dt_torch_rl_module import MASK, PROPENSITY

        dev = next(module.dt.parameters()).device
        loss_w = w_total = ce_n = n_total = hits = 0.0
        for b in self.chunks():
            b = {k: v.to(dev) for k, v in b.items()}
            logits = module._logits(b)  # (B, n, A)
            n = logits.size(1)
            actions, mask = b[Columns.ACTIONS][:, :n], b[MASK][:, :n].float()  # (B, n)
            w = torch.ones_like(mask)
            if self.config.propensity_weighting:
                w = propensity_weights(b[PROPENSITY][:, :n], self.config.max_weight)  # (B, n)
            # dt_loss is a weighted mean: times its weight sum, it adds up over the chunks
            w_sum, n_valid = float((w * mask).sum()), float(mask.sum())
            loss_w += float(dt_loss(logits, actions, mask, w)) * w_sum
            ce_n += float(dt_loss(logits, actions, mask)) * n_valid
            hits += float(((logits.argmax(-1) == actions).float() * mask).sum())
            w_total, n_total = w_total + w_sum, n_total + n_valid
        return {
            "val_loss": loss_w / max(w_total, 1e-12),
            "val_ce": ce_n / max(n_total, 1.0),
            "val_accuracy": hits / max(n_total, 1.0),
        }


def held_out(algo: str, config: Any, table: pa.Table) -> HeldOut:
    """The held-out scorer of ``algo`` (``cql`` or ``dt``) over ``table``'s rows."""
    return {"cql": CQLHeldOut, "dt": DTHeldOut}[algo](config, table)


__all__ = ["CQLHeldOut", "DTHeldOut", "HeldOut", "held_out", "read_heldout"]
