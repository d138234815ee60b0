"""The four supervised models: shapes, loss formulas by hand, masking, checkpoints, learning."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from glan_ray.models.hrm import HRM, HRMConfig, hrm_loss, hrm_reward
from glan_ray.models.klan_am import AMConfig, KlanAM, am_loss, fuse
from glan_ray.models.klan_isp import (
    ISPConfig,
    KlanISP,
    branch_kl,
    isp_loss,
    static_scores,
    uplift,
)
from glan_ray.models.lrtg import LRTG, LRTGConfig, fit_log_relation, lrtg_losses

CARDS, N_NUM, B = (4, 6), 5, 32


pytestmark = pytest.mark.usefixtures("torch_one_thread", "torch_seed")


def _inputs(n: int = B) -> dict[str, Tensor]:
    return {
        "x_cat": torch.stack([torch.randint(0, c, (n,)) for c in CARDS], dim=1),
        "x_num": torch.randn(n, N_NUM),
    }


# ---- one shared tester for every model (d3rlpy style) ----


@dataclass
class Case:
    """How to build a model, make a labelled synthetic batch, and score it."""

    build: Callable[[], nn.Module]
    batch: Callable[[], dict[str, Tensor]]
    forward: Callable[[nn.Module, dict[str, Tensor]], dict[str, Tensor]]
    loss: Callable[[dict[str, Tensor], dict[str, Tensor]], Tensor]
    nonneg: tuple[str, ...]
    shapes: dict[str, tuple[int, ...]]


def _lrtg_batch() -> dict[str, Tensor]:
    b = _inputs()
    b["seq"] = torch.randn(B, 30, 2)
    b["seq_dt"] = torch.arange(1, 31).expand(B, 30)
    b["y_wt"] = F.softplus(b["x_num"][:, 0] + b["seq"][:, :7, 1].mean(1)) + 0.5
    b["y_se"] = 1.0 + b["x_cat"][:, 0].float()
    return b


def _hrm_batch() -> dict[str, Tensor]:
    b = _inputs()
    b["page"] = torch.randint(0, 3, (B,))
    b["dur"] = F.softplus(b["x_num"][:, :3] + F.one_hot(b["page"], 3))
    b["y_sw"] = (b["x_num"][:, 3] > 0.5).float()
    return b


def _isp_batch() -> dict[str, Tensor]:
    b = _inputs()
    b["treatment"] = torch.randint(0, 4, (B,))
    b["response"] = F.softplus(b["x_num"][:, 0]) + 0.5 * (b["treatment"] == 2)
    return b


def _am_batch() -> dict[str, Tensor]:
    b = _inputs()
    b["page"] = torch.randint(0, 3, (B,))
    b["label"] = (b["x_num"][:, 1] > 0).float()
    return b


CASES: dict[str, Case] = {
    "lrtg": Case(
        build=lambda: LRTG(LRTGConfig(CARDS, N_NUM, d_model=16, n_layers=1, dropout=0.0)),
        batch=_lrtg_batch,
        forward=lambda m, b: m(b["x_cat"], b["x_num"], b["seq"], b["seq_dt"]),
        loss=lambda o, b: sum(lrtg_losses(o, b["y_wt"], b["y_se"], a=1.0, b=0.0).values()),
        nonneg=("wt", "se"),
        shapes={"wt": (B,), "se": (B,), "gates": (B, 2, 4)},
    ),
    "hrm": Case(
        build=lambda: HRM(HRMConfig(CARDS, N_NUM)),
        batch=_hrm_batch,
        forward=lambda m, b: m(b["x_cat"], b["x_num"], b["page"]),
        loss=lambda o, b: hrm_loss(o, b["dur"], b["y_sw"], lam=1.0, gamma=2.0, delta=1.0)[0],
        nonneg=("dur", "p_sw"),
        shapes={"dur": (B, 3), "logit_sw": (B,), "p_sw": (B,), "fs_weights": (B, 7)},
    ),
    "isp": Case(
        build=lambda: KlanISP(ISPConfig(CARDS, N_NUM)),
        batch=_isp_batch,
        forward=lambda m, b: m(b["x_cat"], b["x_num"]),
        loss=lambda o, b: isp_loss(o, b["treatment"], b["response"], beta=0.1)[0],
        nonneg=("y1", "y0"),
        shapes={"y1": (B, 3), "y0": (B, 3), "z0": (B, 3, 16), "gates": (B, 3, 2, 4)},
    ),
    "am": Case(
        build=lambda: KlanAM(AMConfig(CARDS, N_NUM)),
        batch=_am_batch,
        forward=lambda m, b: m(b["x_cat"], b["x_num"]),
        loss=lambda o, b: am_loss(o, b["page"], b["label"]),
        nonneg=("w",),
        shapes={"logit": (B, 3), "w": (B, 3), "gates": (B, 3, 4)},
    ),
}


@pytest.mark.parametrize("name", CASES)
def test_output_shapes_and_non_negativity(name):
    case = CASES[name]
    out = case.forward(case.build(), case.batch())
    for key, shape in case.shapes.items():
        assert out[key].shape == shape, key
    for key in case.nonneg:
        assert (out[key] >= 0).all(), key
    assert all(torch.isfinite(v).all() for v in out.values())


@pytest.mark.parametrize("name", CASES)
def test_state_dict_round_trips_through_torch_save(name, tmp_path):
    case = CASES[name]
    model, batch = case.build().eval(), case.batch()
    path = tmp_path / f"{name}.pt"
    torch.save(model.state_dict(), path)
    torch.manual_seed(123)  # a differently initialised twin
    twin = case.build().eval()
    twin.load_state_dict(torch.load(path, weights_only=True))
    with torch.no_grad():
        a, b = case.forward(model, batch), case.forward(twin, batch)
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.mark.parametrize("name", CASES)
def test_a_few_adam_steps_reduce_the_loss(name):
    case = CASES[name]
    model, batch = case.build(), case.batch()

    def eval_loss() -> float:
        model.eval()
        with torch.no_grad():
            return float(case.loss(case.forward(model, batch), batch))

    before = eval_loss()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(40):
        opt.zero_grad()
        case.loss(case.forward(model, batch), batch).backward()
        opt.step()
    assert eval_loss() < 0.5 * before


# ---- L-RTG ----


def test_lrtg_padding_is_ignored_and_fully_padded_rows_stay_finite():
    model = CASES["lrtg"].build().eval()
    b = _lrtg_batch()
    mask = torch.zeros(B, 30, dtype=torch.bool)
    mask[:, 20:] = True
    mask[0] = True  # a user with no history
    with torch.no_grad():
        out = model(b["x_cat"], b["x_num"], b["seq"], b["seq_dt"], mask)
        seq = b["seq"].clone()
        seq[mask] = 50.0
        out2 = model(b["x_cat"], b["x_num"], seq, b["seq_dt"], mask)
    assert torch.isfinite(out["wt"]).all()
    torch.testing.assert_close(out["wt"], out2["wt"])
    torch.testing.assert_close(out["se"], out2["se"])


def test_lrtg_losses_and_relation_fit_by_hand():
    out = {"wt": torch.tensor([2.0, 0.0]), "se": torch.tensor([math.e - 1, 0.0])}
    parts = lrtg_losses(out, torch.tensor([1.5, 3.0]), torch.tensor([0.0, 1.0]), a=2.0, b=0.5)
    # Huber: ½·0.5² = 0.125 and 1·(3 − 0.5) = 2.5
    assert parts["wt"].item() == pytest.approx((0.125 + 2.5) / 2)
    assert parts["se"].item() == pytest.approx(((math.e - 1) ** 2 + 1.0) / 2)
    # rel: (2 − 2·ln e − 0.5)² = 0.25 and (0 − 0 − 0.5)² = 0.25
    assert parts["rel"].item() == pytest.approx(0.25)
    y_se = torch.tensor([0.0, 1.0, 4.0, 9.0])
    a, b = fit_log_relation(3.0 * torch.log1p(y_se) + 2.0, y_se)
    assert (a, b) == (pytest.approx(3.0), pytest.approx(2.0))


def test_config_validation_names_the_fix():
    with pytest.raises(ValueError, match="n_heads"):
        LRTGConfig(CARDS, N_NUM, d_model=30, n_heads=4)
    with pytest.raises(ValueError, match="page_groups"):
        HRMConfig(CARDS, N_NUM, n_pages=3, page_groups=(0, 1))
    assert LRTGConfig([4, 6], N_NUM).cat_cardinalities == (4, 6)  # lists from YAML/JSON


# ---- HRM ----


def test_hrm_reward_by_hand():
    dur = torch.tensor([[1.0, 2.0, 3.0], [0.0, 4.0, 0.0]])
    p_sw = torch.tensor([0.25, 1.0])
    torch.testing.assert_close(hrm_reward(dur, p_sw), torch.tensor([4.5, 0.0]))


def test_hrm_loss_parts_by_hand():
    out = {"dur": torch.tensor([[1.0, 2.0, 3.0]]), "logit_sw": torch.tensor([0.0])}
    target = torch.tensor([[1.0, 2.5, 6.0]])  # Huber: 0, ½·0.5² = 0.125, 1·(3 − ½) = 2.5
    total, parts = hrm_loss(out, target, torch.tensor([1.0]), lam=2.0, gamma=2.0, delta=1.0)
    sw = 0.25 * math.log(2)  # focal, p = 0.5, y = 1, γ = 2
    assert parts["reg_0"].item() == 0.0
    assert parts["reg_1"].item() == pytest.approx(0.125)
    assert parts["reg_2"].item() == pytest.approx(2.5)
    assert parts["reg"].item() == pytest.approx(2.625)
    assert parts["sw"].item() == pytest.approx(sw)
    assert total.item() == pytest.approx(2.625 + 2.0 * sw)


def test_hrm_pages_of_one_group_share_selection_parameters():
    model = CASES["hrm"].build()
    assert model.select.weight.shape[0] == 2  # (0, 1, 1): Featured alone, Explore+Following
    with torch.no_grad():
        model.page_emb.weight[2] = model.page_emb.weight[1]
    b = _inputs(2)
    out = model(b["x_cat"][[0, 0]], b["x_num"][[0, 0]], torch.tensor([1, 2]))
    torch.testing.assert_close(out["fs_weights"][0], out["fs_weights"][1])


# ---- KLAN-ISP ----


def test_isp_treated_loss_reaches_only_the_treated_branch_tower():
    case = CASES["isp"]
    model, b = case.build(), case.batch()
    treatment = torch.tensor([0, 1] * (B // 2))  # only control and treatment 1 (branch 0)
    out = case.forward(model, b)
    total, _ = isp_loss(out, treatment, b["response"], beta=0.5)
    total.backward()

    def grad_norm(module: nn.Module) -> float:
        return sum(float(p.grad.abs().sum()) for p in module.parameters() if p.grad is not None)

    assert grad_norm(model.branches[0].tower1) > 0
    assert grad_norm(model.branches[1].tower1) == 0.0
    assert grad_norm(model.branches[2].tower1) == 0.0
    assert all(grad_norm(br.tower0) > 0 for br in model.branches)  # control trains every ŷ⁰


def test_isp_loss_by_hand():
    out = {
        "y1": torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 9.0]]),
        "y0": torch.tensor([[1.0, 1.0, 4.0], [0.0, 0.0, 0.0], [5.0, 5.0, 5.0]]),
        "z0": torch.zeros(3, 3, 2),
    }
    treatment, response = torch.tensor([0, 1, 3]), torch.tensor([2.0, 3.0, 10.0])
    total, parts = isp_loss(out, treatment, response, beta=1.0)
    # treated: row 1 uses y1[1, 0] = 4 vs 3, row 2 uses y1[2, 2] = 9 vs 10
    assert parts["y1"].item() == pytest.approx((1.0 + 1.0) / 2)
    # control: row 0, every branch: (1−2)², (1−2)², (4−2)²
    assert parts["y0"].item() == pytest.approx((1.0 + 1.0 + 4.0) / 3)
    assert parts["kl"].item() == 0.0 and total.item() == pytest.approx(1.0 + 2.0)
    # no control sample: the control MSE is 0, not NaN
    _, parts = isp_loss(out, torch.tensor([1, 2, 3]), response, beta=1.0)
    assert parts["y0"].item() == 0.0


def test_branch_kl_non_negative_zero_when_identical_and_by_hand():
    assert branch_kl(torch.randn(8, 3, 5)).item() >= 0
    same = torch.randn(8, 1, 5).expand(8, 3, 5)
    assert branch_kl(same).item() == pytest.approx(0.0, abs=1e-6)
    z0 = torch.tensor([[[0.0, 0.0], [math.log(3.0), 0.0]]])  # p = (½, ½) and (¾, ¼)
    kl_12 = 0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25)
    kl_21 = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)
    assert branch_kl(z0).item() == pytest.approx(0.5 * (kl_12 + kl_21))


def test_uplift_and_static_scores_by_hand():
    out = {"y1": torch.tensor([[3.0, 2.0, 1.0]]), "y0": torch.tensor([[1.0, 2.0, 3.0]])}
    torch.testing.assert_close(uplift(out), torch.tensor([[1.0, 0.0, -1.0]]))
    e = torch.tensor([math.exp(2.0), 1.0, math.exp(-2.0)])
    torch.testing.assert_close(static_scores(out, temperature=0.5), (e / e.sum()).unsqueeze(0))


# ---- KLAN-AM ----


def test_am_loss_trains_only_the_assigned_page_tower():
    case = CASES["am"]
    model, b = case.build(), case.batch()
    out = case.forward(model, b)
    page = torch.zeros(B, dtype=torch.long)
    am_loss(out, page, b["label"]).backward()
    grads = [sum(float(p.grad.abs().sum()) for p in t.parameters()) for t in model.towers]
    assert grads[0] > 0 and grads[1] == 0.0 and grads[2] == 0.0
    expected = F.binary_cross_entropy_with_logits(out["logit"][:, 0], b["label"])
    torch.testing.assert_close(am_loss(out, page, b["label"]), expected)


def test_fuse_by_hand():
    w = torch.tensor([[0.25, 1.0, 0.0]])
    s = torch.tensor([[0.4, 0.5, 0.1]])
    d = torch.tensor([[0.8, 0.1, 0.1]])
    torch.testing.assert_close(fuse(w, s, d), torch.tensor([[0.7, 0.5, 0.1]]))
