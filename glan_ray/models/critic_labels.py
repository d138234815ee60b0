"""Value-based return labels (``DTConfig.q_labels``): an exported CQL model's Q(s_t, a_t) in
seconds replaces the observed remaining return R̂_t as the DT's return token in training.

CQL's Q is trained on the same sessions with reward = session usage × ``reward_scale`` and the
day's last session terminal (``rllib.cql``), so Q(s, a) / ``reward_scale`` is the expected
(γ-discounted) usage from this session to the end of the day, given the state and the page: the
observed R̂_t with the luck of the rest of the day averaged out. ``advantage`` is the token of
the advantage-conditioned DT (ACT, ``DTConfig.act_critic``): Q(s, a) − V(s).
"""

from __future__ import annotations

import numpy as np
import torch

from glan_ray.apps import AppSpec, plpm_spec
from glan_ray.models.app_check import require_export_app
from glan_ray.models.checkpoint import load_checkpoint


class QLabeller:
    """``labeller(obs (..., D), actions (...)) -> Q(s, a)`` in seconds, (...) float64."""

    def __init__(self, path: str, option: str = "q_labels", app: AppSpec | None = None) -> None:
        """``option``: the DTConfig field that named ``path`` (errors name it); ``app``: the app
        spec of the data it labels (None: the PLPM app): a critic of another is refused."""
        self.model, _, meta = load_checkpoint(path)
        if meta["model"] != "cql":
            raise ValueError(f"{option}: {path} holds a '{meta['model']}' model; expected cql")
        require_export_app(meta, app or plpm_spec(), model=path, where=f"the {option} data")
        scale = float(meta.get("train_config", {}).get("reward_scale", 0.0))
        if not scale > 0:
            raise ValueError(f"{option}: {path} records no positive reward_scale")
        if (meta.get("extra") or {}).get("history_features"):
            raise ValueError(f"{option}: {path} reads history features beside obs (a cql_hist "
                             "export); the DT's critic must read obs alone")  # fmt: skip
        self.unit_s = 1.0 / scale
        self.model.eval()

    @torch.no_grad()
    def __call__(self, obs: np.ndarray, actions: np.ndarray) -> np.ndarray:
        lead = actions.shape
        x = torch.from_numpy(np.ascontiguousarray(obs, np.float32).reshape(-1, obs.shape[-1]))
        q = self.model(x)  # (N, A)
        a = torch.from_numpy(np.asarray(actions, np.int64).reshape(-1, 1)).clamp(0, q.shape[1] - 1)
        return (q.gather(1, a)[:, 0].double().numpy() * self.unit_s).reshape(lead)

    @torch.no_grad()
    def advantage(self, obs: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """ACT's token (``DTConfig.act_critic``): A(s, a) = Q(s, a) − V(s) in seconds, V(s) the
        mean of Q(s, ·) over the pages (the value of a page drawn at random, the policy the
        propensity-weighted DT learns under); obs (..., D), actions (...) -> (...) float64."""
        lead = actions.shape
        x = torch.from_numpy(np.ascontiguousarray(obs, np.float32).reshape(-1, obs.shape[-1]))
        q = self.model(x).double()  # (N, A)
        a = torch.from_numpy(np.asarray(actions, np.int64).reshape(-1, 1)).clamp(0, q.shape[1] - 1)
        adv = q.gather(1, a)[:, 0] - q.mean(1)  # (N,)
        return (adv.numpy() * self.unit_s).reshape(lead)


__all__ = ["QLabeller"]
