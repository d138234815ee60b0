"""Value-based return labels (``DTConfig.q_labels``): an exported CQL model's Q(s_t, a_t) in
seconds replaces the observed remaining return R̂_t as the DT's return token in training.

CQL's Q is trained on the same sessions with reward = session usage × ``reward_scale`` and the
day's last session terminal (``rllib.cql``), so Q(s, a) / ``reward_scale`` is the expected
(γ-discounted) usage from this session to the end of the day, given the state and the page: the
observed R̂_t with the luck of the rest of the day averaged out.
"""

from __future__ import annotations

import numpy as np
import torch

from glan_ray.models.checkpoint import load_checkpoint


class QLabeller:
    """``labeller(obs (..., D), actions (...)) -> Q(s, a)`` in seconds, (...) float64."""

    def __init__(self, path: str) -> None:
        self.model, _, meta = load_checkpoint(path)
        if meta["model"] != "cql":
            raise ValueError(f"q_labels: {path} holds a '{meta['model']}' model; expected cql")
        scale = float(meta.get("train_config", {}).get("reward_scale", 0.0))
        if not scale > 0:
            raise ValueError(f"q_labels: {path} records no positive reward_scale")
        self.unit_s = 1.0 / scale
        self.model.eval()

    @torch.no_grad()
    def __call__(self, obs: np.ndarray, actions: np.ndarray) -> np.ndarray:
        lead = actions.shape
        x = torch.from_numpy(np.ascontiguousarray(obs, np.float32).reshape(-1, obs.shape[-1]))
        q = self.model(x)  # (N, A)
        a = torch.from_numpy(np.asarray(actions, np.int64).reshape(-1, 1)).clamp(0, q.shape[1] - 1)
        return (q.gather(1, a)[:, 0].double().numpy() * self.unit_s).reshape(lead)


__all__ = ["QLabeller"]
