"""What differs between the four supervised models: how to build, the loss, the metrics.

A ``Task`` turns a batch of feature tensors (``data.features``) into a loss and logs, and a
list of validation batches into metrics. The generic Ray Train loop (``loop.py``) does the rest.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from glan_ray.eval.metrics import auc
from glan_ray.models.hrm import hrm_loss, hrm_reward
from glan_ray.models.klan_am import am_loss
from glan_ray.models.klan_isp import isp_loss
from glan_ray.models.lrtg import lrtg_losses
from glan_ray.train.config import (
    AMTrainConfig,
    HRMTrainConfig,
    ISPTrainConfig,
    LRTGTrainConfig,
    TrainConfig,
)
from glan_ray.train.lagrangian import PrimalDual

Batch = dict[str, torch.Tensor]
Losses = tuple[torch.Tensor, dict[str, float]]
"""A batch's loss and its logged parts."""


def _cat(parts: list[torch.Tensor]) -> np.ndarray:
    """Per-batch tensors as one array on the host: (B_1 + B_2 + ..., ...)."""
    return torch.cat(parts).cpu().numpy()


class Task:
    """Base: subclasses define ``loss`` and ``metrics``; ``after_step`` hooks dual updates."""

    def __init__(self, cfg: TrainConfig, extra: dict[str, Any]):
        self.cfg, self.extra = cfg, extra

    def loss(self, model: nn.Module, b: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        raise NotImplementedError

    def after_step(self, logs: dict[str, float]) -> dict[str, float]:
        return {}

    @torch.no_grad()
    def metrics(self, model: nn.Module, batches: list[Batch]) -> dict[str, float]:
        raise NotImplementedError


class LRTGTask(Task):
    """L-RTG with the primal-dual Lagrangian (GLAN eq. 18–20)."""

    cfg: LRTGTrainConfig

    def __init__(self, cfg: LRTGTrainConfig, extra: dict[str, Any]):
        super().__init__(cfg, extra)
        self.a, self.b = float(extra["rel_a"]), float(extra["rel_b"])
        self.dual = PrimalDual(
            {"se": cfg.eps_se, "rel": cfg.eps_rel},
            eta=cfg.eta_lambda,
            lambda_max=cfg.lambda_max,
            rho=cfg.ema_rho,
        )

    def parts(self, model: nn.Module, b: Batch) -> dict[str, torch.Tensor]:
        out = model(b["x_cat"], b["x_num"], b["seq"], b["seq_dt"])
        losses = lrtg_losses(out, b["y_wt"], b["y_se"], self.a, self.b, self.cfg.huber_delta)
        return {**losses, "pred_wt": out["wt"], "pred_se": out["se"]}

    def loss(self, model: nn.Module, b: Batch) -> Losses:
        p = self.parts(model, b)
        total = p["wt"] + self.dual.penalty({"se": p["se"], "rel": p["rel"]})
        logs = {
            "losses/wt": p["wt"].item(),
            "losses/se": p["se"].item(),
            "losses/rel": p["rel"].item(),
        }
        return total, logs

    def after_step(self, logs: dict[str, float]) -> dict[str, float]:
        self.dual.update({"se": logs["losses/se"], "rel": logs["losses/rel"]})
        return {
            "lambda/se": self.dual.lambdas["se"],
            "lambda/rel": self.dual.lambdas["rel"],
            "ema/se": self.dual.ema["se"],
            "ema/rel": self.dual.ema["rel"],
        }

    @torch.no_grad()
    def metrics(self, model: nn.Module, batches: list[Batch]) -> dict[str, float]:
        pw_, yw_, ps_, ys_, rel_ = [], [], [], [], []
        for b in batches:
            p = self.parts(model, b)
            pw_.append(p["pred_wt"])
            yw_.append(b["y_wt"])
            ps_.append(p["pred_se"])
            ys_.append(b["y_se"])
            rel_.append(p["pred_wt"] - self.a * torch.log1p(p["pred_se"]) - self.b)
        pw, yw, ps, ys, rel = (_cat(x) for x in (pw_, yw_, ps_, ys_, rel_))
        se_mse, rel_mse = float(np.mean((ps - ys) ** 2)), float(np.mean(rel**2))
        return {
            "val/mae_wt_s": float(np.mean(np.abs(pw - yw))) * 3600,
            "val/mape_wt": float(np.mean(np.abs(pw - yw) / np.maximum(yw, 1 / 60))),
            "val/mse_se": se_mse,
            "val/l_rel": rel_mse,
            "val/se_ok": float(se_mse <= self.cfg.eps_se),
            "val/rel_ok": float(rel_mse <= self.cfg.eps_rel),
        }


class HRMTask(Task):
    cfg: HRMTrainConfig

    def loss(self, model: nn.Module, b: Batch) -> Losses:
        out = model(b["x_cat"], b["x_num"], b["page"])
        total, parts = hrm_loss(
            out,
            b["dur"],
            b["y_sw"],
            lam=self.cfg.sw_weight,
            gamma=self.cfg.focal_gamma,
            delta=self.cfg.huber_delta,
        )
        return total, {f"losses/{k}": float(v) for k, v in parts.items()}

    @torch.no_grad()
    def metrics(self, model: nn.Module, batches: list[Batch]) -> dict[str, float]:
        p_sw_, y_sw_, tot_, tot_hat_, rew = [], [], [], [], []
        for b in batches:
            out = model(b["x_cat"], b["x_num"], b["page"])
            p_sw_.append(out["p_sw"])
            y_sw_.append(b["y_sw"])
            tot_.append(b["dur"].sum(-1))
            tot_hat_.append(out["dur"].sum(-1))
            rew.append(hrm_reward(out["dur"], out["p_sw"]))
        p_sw, y_sw, tot, tot_hat = (_cat(x) for x in (p_sw_, y_sw_, tot_, tot_hat_))
        return {
            "val/auc_sw": auc(y_sw, p_sw),
            "val/mae_dur_min": float(np.mean(np.abs(tot_hat - tot))),
            "val/reward_mean": float(torch.cat(rew).mean()),
        }


class ISPTask(Task):
    cfg: ISPTrainConfig

    def loss(self, model: nn.Module, b: Batch) -> Losses:
        out = model(b["x_cat"], b["x_num"])
        total, parts = isp_loss(out, b["treatment"], b["response"], beta=self.cfg.kl_beta)
        return total, {f"losses/{k}": float(v) for k, v in parts.items()}

    @torch.no_grad()
    def metrics(self, model: nn.Module, batches: list[Batch]) -> dict[str, float]:
        err, n = 0.0, 0
        for b in batches:
            out = model(b["x_cat"], b["x_num"])
            t = b["treatment"]
            treated = t > 0
            factual = torch.where(
                treated, out["y1"].gather(1, (t - 1).clamp(min=0)[:, None])[:, 0], out["y0"].mean(1)
            )
            err += float(((factual - b["response"]) ** 2).sum())
            n += len(t)
        return {"val/mse_factual": err / max(n, 1)}


class AMTask(Task):
    cfg: AMTrainConfig

    def loss(self, model: nn.Module, b: Batch) -> Losses:
        out = model(b["x_cat"], b["x_num"])
        loss = am_loss(out, b["page"], b["static"])
        return loss, {"losses/bce": loss.item()}

    @torch.no_grad()
    def metrics(self, model: nn.Module, batches: list[Batch]) -> dict[str, float]:
        w_, y_ = [], []
        for b in batches:
            out = model(b["x_cat"], b["x_num"])
            w_.append(out["w"].gather(1, b["page"][:, None])[:, 0])
            y_.append(b["static"])
        w, y = _cat(w_), _cat(y_)
        bce = -np.mean(y * np.log(np.clip(w, 1e-7, 1)) + (1 - y) * np.log(np.clip(1 - w, 1e-7, 1)))
        return {"val/bce": float(bce), "val/auc_static": auc(y, w)}


TASKS: dict[str, type[Task]] = {"lrtg": LRTGTask, "hrm": HRMTask, "isp": ISPTask, "am": AMTask}

VAL_METRIC: dict[str, tuple[str, str]] = {
    "lrtg": ("val/mae_wt_s", "min"),
    "hrm": ("val/mae_dur_min", "min"),
    "isp": ("val/mse_factual", "min"),
    "am": ("val/bce", "min"),
}
"""The metric (and its direction) that selects the best checkpoint and drives Tune."""
