"""The four supervised tasks: losses, dual updates and validation metrics by hand, on stand-in
models whose outputs are read straight off the batch (so every number is known)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from glan_ray.train.config import (
    CONFIGS,
    AMTrainConfig,
    HRMTrainConfig,
    ISPTrainConfig,
    LRTGTrainConfig,
    TrainConfig,
)
from glan_ray.train.objectives import (
    TASKS,
    VAL_METRIC,
    AMTask,
    HRMTask,
    ISPTask,
    LRTGTask,
    Task,
)

T = torch.tensor


class Stub(nn.Module):
    """Outputs are columns of ``x_num`` times a learnable scale (1 at the start)."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x_cat: Tensor, x_num: Tensor, *rest: Tensor) -> dict[str, Tensor]:
        x = self.scale * x_num
        if self.kind == "lrtg":
            return {"wt": x[:, 0], "se": x[:, 1]}
        if self.kind == "hrm":
            return {"dur": x[:, :3], "logit_sw": x[:, 3], "p_sw": torch.sigmoid(x[:, 3])}
        if self.kind == "isp":
            return {"y1": x[:, :3], "y0": x[:, 3:6], "z0": x[:, 6:].reshape(len(x), 3, 2)}
        return {"w": x[:, :3], "logit": torch.logit(x[:, :3])}


def _cat(n: int) -> Tensor:
    return torch.zeros(n, 1, dtype=torch.long)


# ---- L-RTG ----

LRTG_CFG = LRTGTrainConfig(huber_delta=1.0, eps_se=0.2, eps_rel=0.5, eta_lambda=0.1, ema_rho=0.5)
A, B = 2.0, 0.5  # the fitted log relation y_wt ≈ a·ln(1 + y_se) + b


def _lrtg_batch(wt: list[float], se: list[float], y_wt: list[float], y_se: list[float]):
    n = len(wt)
    seq, seq_dt = torch.zeros(n, 30, 2), torch.ones(n, 30, dtype=torch.long)
    return {"x_cat": _cat(n), "x_num": T([wt, se]).T, "seq": seq, "seq_dt": seq_dt,
            "y_wt": T(y_wt), "y_se": T(y_se)}  # fmt: skip


def _rel(wt: float, se: float) -> float:
    return wt - A * math.log1p(se) - B


def test_lrtg_loss_is_huber_until_the_duals_rise_then_adds_the_penalty():
    task = LRTGTask(LRTG_CFG, {"rel_a": A, "rel_b": B})
    model, b = Stub("lrtg"), _lrtg_batch([1.5, 2.0], [1.0, 2.0], [1.0, 2.0], [1.0, 3.0])
    total, logs = task.loss(model, b)
    rel = (_rel(1.5, 1.0) ** 2 + _rel(2.0, 2.0) ** 2) / 2
    assert logs == {
        "losses/wt": pytest.approx(0.0625),  # ½·0.5² and 0, halved
        "losses/se": pytest.approx(0.5),  # (0² + 1²) / 2
        "losses/rel": pytest.approx(rel),
    }
    assert total.item() == pytest.approx(0.0625)  # λ = 0: the primal loss alone
    # dual ascent: λ_se = 0.1·(0.5 − 0.2); L_rel < ε_rel keeps λ_rel at 0
    duals = task.after_step(logs)
    assert duals == {
        "lambda/se": pytest.approx(0.03),
        "lambda/rel": 0.0,
        "ema/se": pytest.approx(0.5),
        "ema/rel": pytest.approx(rel),
    }
    total, _ = task.loss(model, b)
    assert total.item() == pytest.approx(0.0625 + 0.03 * (0.5 - 0.2))
    total.backward()
    assert model.scale.grad is not None and model.scale.grad != 0


def test_lrtg_metrics_by_hand_over_two_batches():
    task = LRTGTask(LRTG_CFG, {"rel_a": A, "rel_b": B})
    batches = [
        _lrtg_batch([1.5, 2.0], [1.0, 2.0], [1.0, 2.0], [1.0, 3.0]),
        _lrtg_batch([0.01], [0.0], [0.0], [0.0]),  # an inactive day: MAPE's floor of 1 minute
    ]
    m = task.metrics(Stub("lrtg"), batches)
    rel = (_rel(1.5, 1.0) ** 2 + _rel(2.0, 2.0) ** 2 + _rel(0.01, 0.0) ** 2) / 3
    assert m == {
        "val/mae_wt_s": pytest.approx((0.5 + 0.0 + 0.01) / 3 * 3600, rel=1e-6),
        "val/mape_wt": pytest.approx((0.5 / 1.0 + 0.0 + 0.01 * 60) / 3, rel=1e-6),
        "val/mse_se": pytest.approx(1 / 3),
        "val/l_rel": pytest.approx(rel, rel=1e-6),
        "val/se_ok": 0.0,  # 1/3 > ε_se = 0.2
        "val/rel_ok": 1.0,  # ≈ 0.29 <= ε_rel = 0.5
    }


# ---- HRM ----


def _hrm_batch(dur_hat, logit, dur, y_sw):
    x_num = torch.cat([T(dur_hat), T(logit)[:, None]], dim=1)
    n = len(logit)
    return {"x_cat": _cat(n), "x_num": x_num, "page": torch.zeros(n, dtype=torch.long),
            "dur": T(dur), "y_sw": T(y_sw)}  # fmt: skip


HRM_BATCHES = [
    _hrm_batch([[1.0, 2.0, 3.0], [0.0, 1.0, 0.0]], [0.0, math.log(3)],
               [[2.0, 2.0, 1.0], [1.0, 1.0, 0.0]], [0.0, 1.0]),
    _hrm_batch([[2.0, 0.0, 0.0]], [-math.log(3)], [[2.0, 0.0, 0.0]], [1.0]),
]  # fmt: skip


def test_hrm_loss_logs_every_part_and_weights_the_dropoff_term():
    task = HRMTask(HRMTrainConfig(sw_weight=2.0, focal_gamma=0.0), {})
    total, logs = task.loss(Stub("hrm"), HRM_BATCHES[0])
    assert set(logs) == {"losses/reg", "losses/sw", "losses/reg_0", "losses/reg_1", "losses/reg_2"}
    assert logs["losses/reg"] == pytest.approx(sum(logs[f"losses/reg_{j}"] for j in range(3)))
    # γ = 0: plain BCE of p = (0.5, 0.75) against (0, 1)
    assert logs["losses/sw"] == pytest.approx(-(math.log(0.5) + math.log(0.75)) / 2)
    assert total.item() == pytest.approx(logs["losses/reg"] + 2.0 * logs["losses/sw"])


def test_hrm_metrics_by_hand_over_two_batches():
    m = HRMTask(HRMTrainConfig(), {}).metrics(Stub("hrm"), HRM_BATCHES)
    # p_sw = (0.5, 0.75, 0.25) for y_sw = (0, 1, 1): positives 0.75 (wins) and 0.25 (loses)
    assert m["val/auc_sw"] == pytest.approx(0.5)
    # predicted totals 6, 1, 2 against 5, 2, 2
    assert m["val/mae_dur_min"] == pytest.approx((1 + 1 + 0) / 3)
    # r̂ = (1 − p_sw)·Σ T̂: 0.5·6, 0.25·1, 0.75·2
    assert m["val/reward_mean"] == pytest.approx((3.0 + 0.25 + 1.5) / 3)


# ---- KLAN-ISP ----


def _isp_batch(y1, y0, treatment, response):
    n = len(treatment)
    x_num = torch.cat([T(y1), T(y0), torch.randn(n, 6)], dim=1)
    return {"x_cat": _cat(n), "x_num": x_num, "treatment": T(treatment, dtype=torch.long),
            "response": T(response)}  # fmt: skip


def test_isp_loss_and_factual_mse_by_hand():
    torch.manual_seed(0)
    batches = [
        # control: factual = mean of ŷ⁰ = 2 vs 2.5; treated on page 1 (t = 2): ŷ¹₁ = 5 vs 4
        _isp_batch([[9.0, 9.0, 9.0], [4.0, 5.0, 6.0]], [[1.0, 2.0, 3.0], [9.0, 9.0, 9.0]],
                   [0, 2], [2.5, 4.0]),
        _isp_batch([[0.0, 0.0, 1.0]], [[9.0, 9.0, 9.0]], [3], [1.0]),  # t = 3: ŷ¹₂ = 1, exact
    ]  # fmt: skip
    task = ISPTask(ISPTrainConfig(kl_beta=0.5), {})
    m = task.metrics(Stub("isp"), batches)
    assert m == {"val/mse_factual": pytest.approx((0.25 + 1.0 + 0.0) / 3)}
    total, logs = task.loss(Stub("isp"), batches[0])
    assert set(logs) == {"losses/y1", "losses/y0", "losses/kl"}
    assert logs["losses/y1"] == pytest.approx(1.0)  # (5 − 4)², the treated row's own branch
    assert logs["losses/y0"] == pytest.approx(((1 - 2.5) ** 2 + 0.25 + 0.25) / 3)
    assert logs["losses/kl"] >= 0
    assert total.item() == pytest.approx(1.0 + logs["losses/y0"] + 0.5 * logs["losses/kl"])


# ---- KLAN-AM ----


def _am_batch(w, page, static):
    n = len(page)
    return {"x_cat": _cat(n), "x_num": T(w), "page": T(page, dtype=torch.long),
            "static": T(static)}  # fmt: skip


def test_am_loss_and_metrics_read_the_assigned_pages_weight():
    b = _am_batch([[0.9, 0.1, 0.5], [0.2, 0.3, 0.4], [0.6, 0.7, 0.8]], [0, 1, 2], [1.0, 0.0, 1.0])
    task = AMTask(AMTrainConfig(), {})
    bce = -(math.log(0.9) + math.log(0.7) + math.log(0.8)) / 3  # w of pages 0, 1, 2
    loss, logs = task.loss(Stub("am"), b)
    assert loss.item() == pytest.approx(bce, rel=1e-6) and logs == {"losses/bce": loss.item()}
    m = task.metrics(Stub("am"), [b])
    assert m["val/bce"] == pytest.approx(bce, rel=1e-6)
    assert m["val/auc_static"] == pytest.approx(1.0)  # 0.9 and 0.8 above 0.3


def test_am_metrics_stay_finite_on_certain_wrong_weights():
    b = _am_batch([[1.0, 0.5, 0.5], [0.5, 0.0, 0.5]], [0, 1], [0.0, 1.0])
    m = AMTask(AMTrainConfig(), {}).metrics(Stub("am"), [b])
    assert m["val/bce"] == pytest.approx(-math.log(1e-7), rel=1e-6)  # clipped at 1e-7
    assert m["val/auc_static"] == pytest.approx(0.0)


# ---- the registry ----

BATCHES = {
    "lrtg": [_lrtg_batch([1.5, 2.0], [1.0, 2.0], [1.0, 2.0], [1.0, 3.0])],
    "hrm": HRM_BATCHES,
    "isp": [_isp_batch([[1.0, 2.0, 3.0]] * 2, [[1.0, 2.0, 3.0]] * 2, [0, 1], [1.0, 2.0])],
    "am": [_am_batch([[0.9, 0.1, 0.5], [0.2, 0.3, 0.4]], [0, 1], [1.0, 0.0])],
}
EXTRA = {"lrtg": {"rel_a": A, "rel_b": B}}


@pytest.mark.parametrize("name", sorted(TASKS))
def test_every_tasks_selection_metric_is_one_it_reports(name):
    assert set(TASKS) == set(VAL_METRIC) == set(CONFIGS)
    metric, mode = VAL_METRIC[name]
    assert mode in ("min", "max")
    task = TASKS[name](CONFIGS[name](), EXTRA.get(name, {}))
    m = task.metrics(Stub(name), BATCHES[name])
    assert metric in m and np.isfinite(m[metric])
    assert all(k.startswith("val/") for k in m)
    _, logs = task.loss(Stub(name), BATCHES[name][0])
    assert all(k.startswith("losses/") and np.isfinite(v) for k, v in logs.items())


def test_the_base_task_leaves_loss_and_metrics_to_subclasses():
    task = Task(TrainConfig(), {})
    with pytest.raises(NotImplementedError):
        task.loss(Stub("am"), BATCHES["am"][0])
    with pytest.raises(NotImplementedError):
        task.metrics(Stub("am"), BATCHES["am"])
    assert task.after_step({"losses/total": 1.0}) == {}


def test_lrtg_task_needs_the_fitted_relation():
    with pytest.raises(KeyError, match="rel_a"):
        LRTGTask(LRTG_CFG, {})
