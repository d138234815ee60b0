"""Shared layers and losses (glan_ray.nn), checked against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from glan_ray.nn.attention import AttentionPooling, PeriodicAttention, dist_bucket
from glan_ray.nn.embedding import FieldEmbedding
from glan_ray.nn.feature_selection import PageFeatureSelection
from glan_ray.nn.losses import focal_bce, huber, masked_mse
from glan_ray.nn.mmoe import MMoE
from glan_ray.nn.tower import Tower, inverse_softplus

pytestmark = pytest.mark.usefixtures("torch_one_thread", "torch_seed")


# ---- periodic attention ----


def test_dist_bucket_boundaries():
    dt = torch.tensor([1, 2, 3, 4, 7, 8, 14, 15, 30, 31, 60, 61, 365])
    expected = [0, 1, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7]
    assert dist_bucket(dt, 8).tolist() == expected
    # fewer buckets: the far ones merge into the last
    assert dist_bucket(dt, 5).tolist() == [min(b, 4) for b in expected]
    assert dist_bucket(dt.view(1, -1), 8).shape == (1, 13)


def test_period_bias_indexing_by_hand():
    att = PeriodicAttention(d=4, n_dist_buckets=8)
    with torch.no_grad():
        att.b_week.copy_(torch.tensor([0.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0]))
        att.b_dist.copy_(torch.tensor([0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7]))
    dt = torch.tensor([[1, 7, 8, 30], [14, 2, 61, 3]])
    # Δt=1: B_week[1] + B_dist[0]; 7: B_week[0] + B_dist[3]; 8: B_week[1] + B_dist[4];
    # 30: B_week[2] + B_dist[5]; 14: B_week[0] + B_dist[4]; 2: B_week[2] + B_dist[1];
    # 61: B_week[5] + B_dist[7]; 3: B_week[3] + B_dist[2]
    expected = torch.tensor([[10.0, 0.3, 10.4, 20.5], [0.4, 20.1, 50.7, 30.2]])
    torch.testing.assert_close(att.period_bias(dt), expected)


def test_periodic_attention_is_softmax_of_bias_when_keys_are_blind():
    att = PeriodicAttention(d=4, n_dist_buckets=8)
    with torch.no_grad():
        att.k_proj.weight.zero_()
        att.k_proj.bias.zero_()
        att.b_week.copy_(torch.arange(7.0))
    dt = torch.tensor([[1, 2, 3]])
    w = att.attention_weights(torch.randn(1, 4), torch.randn(1, 3, 4), dt)
    torch.testing.assert_close(w, torch.softmax(torch.tensor([[1.0, 2.0, 3.0]]), -1))


def test_periodic_attention_ignores_masked_positions():
    att = PeriodicAttention(d=8, n_dist_buckets=8)
    ctx, h = torch.randn(2, 8), torch.randn(2, 5, 8)
    dt = torch.arange(1, 6).expand(2, 5)
    mask = torch.tensor([[False, False, False, True, True], [False, True, False, False, True]])
    out = att(ctx, h, dt, mask)
    h2, dt2 = h.clone(), dt.clone()
    h2[mask] = 100.0 * torch.randn(int(mask.sum()), 8)
    dt2 = torch.where(mask, torch.full_like(dt, 99), dt2)
    torch.testing.assert_close(att(ctx, h2, dt2, mask), out)
    assert (att.attention_weights(ctx, h, dt, mask)[mask] == 0).all()
    # and an unmasked change does change the output
    h2[0, 0] += 1.0
    assert not torch.allclose(att(ctx, h2, dt2, mask)[0], out[0])


def test_fully_padded_rows_pool_to_zero_without_nan():
    att, pool = PeriodicAttention(d=4, n_dist_buckets=8), AttentionPooling(4)
    h = torch.randn(2, 3, 4, requires_grad=True)
    mask = torch.tensor([[True, True, True], [False, True, True]])
    out = att(torch.randn(2, 4), h, torch.ones(2, 3, dtype=torch.long), mask)
    pooled = pool(h, mask)
    assert torch.equal(pooled[0], torch.zeros(4)) and torch.isfinite(out).all()
    torch.testing.assert_close(pooled[1], h[1, 0])  # one valid position: weight 1
    (out.sum() + pooled.sum()).backward()
    assert torch.isfinite(h.grad).all()


def test_attention_pooling_ignores_masked_positions_and_is_convex():
    pool = AttentionPooling(6)
    h = torch.randn(3, 4, 6)
    mask = torch.zeros(3, 4, dtype=torch.bool)
    mask[:, -1] = True
    out = pool(h, mask)
    h2 = h.clone()
    h2[:, -1] = 1e3
    torch.testing.assert_close(pool(h2, mask), out)
    assert out.shape == (3, 6)
    # a convex combination of the valid rows stays inside their per-coordinate range
    lo, hi = h[:, :-1].min(1).values, h[:, :-1].max(1).values
    assert ((out >= lo - 1e-6) & (out <= hi + 1e-6)).all()


# ---- losses ----


def test_focal_with_gamma_zero_is_bce():
    logits, target = torch.randn(64) * 3, torch.randint(0, 2, (64,)).float()
    bce = F.binary_cross_entropy_with_logits(logits, target)
    torch.testing.assert_close(focal_bce(logits, target, gamma=0.0), bce, rtol=0, atol=1e-7)


def test_focal_hand_values_gamma_two():
    # logit 0 -> p = 0.5, y = 1: (1 - 0.5)^2 * ln 2
    assert focal_bce(torch.tensor([0.0]), torch.tensor([1.0])).item() == pytest.approx(
        0.25 * math.log(2)
    )
    # logit ln 3 -> p = 0.75. y = 1: 0.25^2 * -ln 0.75; y = 0: 0.75^2 * -ln 0.25
    x = torch.tensor([math.log(3.0)])
    assert focal_bce(x, torch.tensor([1.0])).item() == pytest.approx(0.0625 * -math.log(0.75))
    assert focal_bce(x, torch.tensor([0.0])).item() == pytest.approx(0.5625 * -math.log(0.25))
    # α weights positives by α
    assert focal_bce(x, torch.tensor([1.0]), alpha=0.25).item() == pytest.approx(
        0.25 * 0.0625 * -math.log(0.75)
    )


def test_focal_down_weights_easy_examples_more_as_gamma_grows():
    logits = torch.tensor([3.0, -1.0])  # y = 1: easy (p ≈ 0.95), hard (p ≈ 0.27)
    target = torch.ones(2)
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    ratios = []
    for gamma in (0.0, 1.0, 2.0, 5.0):
        per = torch.stack([focal_bce(logits[i : i + 1], target[i : i + 1], gamma) for i in (0, 1)])
        rel = per / bce  # how much of the BCE each example keeps
        ratios.append((rel[0] / rel[1]).item())
        assert rel[0] <= rel[1]
    assert ratios == sorted(ratios, reverse=True) and ratios[-1] < 1e-4
    # stable for extreme logits
    assert torch.isfinite(focal_bce(torch.tensor([80.0, -80.0]), torch.tensor([0.0, 1.0])))


def test_huber_hand_values():
    zero = torch.zeros(1)
    assert huber(torch.tensor([0.5]), zero).item() == pytest.approx(0.125)  # ½ r²
    assert huber(torch.tensor([3.0]), zero).item() == pytest.approx(2.5)  # δ(|r| − ½δ)
    assert huber(torch.tensor([-3.0]), zero, delta=2.0).item() == pytest.approx(4.0)
    pred, target = torch.tensor([0.5, 3.0]), torch.zeros(2)
    assert huber(pred, target).item() == pytest.approx((0.125 + 2.5) / 2)
    assert huber(pred, target, weight=torch.tensor([1.0, 0.0])).item() == pytest.approx(0.125)
    assert huber(pred, target, weight=torch.tensor([3.0, 1.0])).item() == pytest.approx(
        (3 * 0.125 + 2.5) / 4
    )


def test_masked_mse_hand_value_empty_mask_and_no_nan_leak():
    pred = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
    target = torch.zeros(3)
    assert masked_mse(pred, target, torch.tensor([True, False, True])).item() == 5.0
    empty = masked_mse(pred, target, torch.zeros(3, dtype=torch.bool))
    assert empty.item() == 0.0
    empty.backward()
    assert torch.equal(pred.grad, torch.zeros(3))
    # an inf in a masked entry neither reaches the loss nor the gradient
    bad = torch.tensor([1.0, float("inf")], requires_grad=True)
    loss = masked_mse(bad, torch.zeros(2), torch.tensor([True, False]))
    loss.backward()
    assert loss.item() == 1.0 and torch.equal(bad.grad, torch.tensor([2.0, 0.0]))


# ---- MMoE, embeddings, feature selection, towers ----


def test_mmoe_gates_sum_to_one_and_shapes():
    mmoe = MMoE(d_in=6, n_experts=4, expert_hidden=8, d_out=5, n_tasks=3, gate_in=2)
    outs, gates = mmoe(torch.randn(7, 6), torch.randn(7, 2), return_gates=True)
    assert len(outs) == 3 and all(o.shape == (7, 5) for o in outs)
    assert gates.shape == (7, 3, 4) and (gates >= 0).all()
    torch.testing.assert_close(gates.sum(-1), torch.ones(7, 3))
    assert len(mmoe(torch.randn(7, 6), torch.randn(7, 2))) == 3


def test_mmoe_uniform_gates_average_the_experts():
    mmoe = MMoE(d_in=3, n_experts=2, expert_hidden=4, d_out=2, n_tasks=1)
    with torch.no_grad():
        mmoe.gates[0].weight.zero_()
        mmoe.gates[0].bias.zero_()
    x = torch.randn(5, 3)
    expected = (mmoe.experts[0](x) + mmoe.experts[1](x)) / 2
    torch.testing.assert_close(mmoe(x)[0], expected)


@pytest.mark.parametrize(("cards", "n_num"), [((3, 5), 4), ((), 4), ((3, 5), 0)])
def test_field_embedding_shapes(cards, n_num):
    emb = FieldEmbedding(cards, n_num, d=6)
    x_cat = torch.stack([torch.randint(0, c, (9,)) for c in cards], 1) if cards else None
    x_cat = torch.zeros(9, 0, dtype=torch.long) if x_cat is None else x_cat
    out = emb(x_cat, torch.randn(9, n_num))
    assert out.shape == (9, len(cards) + n_num, 6) == (9, emb.n_fields, 6)


def test_field_embedding_numeric_is_value_times_vector_plus_bias():
    emb = FieldEmbedding((4,), 2, d=3)
    x_num = torch.tensor([[2.0, -1.0]])
    out = emb(torch.tensor([[3]]), x_num)
    torch.testing.assert_close(out[0, 0], emb.cat[0].weight[3])
    torch.testing.assert_close(out[0, 1], 2.0 * emb.num_weight[0] + emb.num_bias[0])
    torch.testing.assert_close(out[0, 2], -1.0 * emb.num_weight[1] + emb.num_bias[1])
    with pytest.raises(ValueError, match="x_num"):
        emb(torch.tensor([[3]]), torch.zeros(1, 3))


def test_page_feature_selection_shares_weights_within_a_group():
    fs = PageFeatureSelection(n_fields=5, d=4, page_groups=(0, 1, 1))
    assert fs.weight.shape == (2, 5, 4) and fs.bias.shape == (2, 5)
    with torch.no_grad():
        fs.weight.normal_()
        fs.bias.normal_()
    e_fields, e_page = torch.randn(3, 5, 4), torch.randn(1, 4).expand(3, 4)
    e_u, w = fs(e_fields, e_page, torch.tensor([0, 1, 2]))
    torch.testing.assert_close(w.sum(-1), torch.ones(3))
    torch.testing.assert_close(w[1], w[2])  # same group, same page embedding -> same weights
    assert not torch.allclose(w[0], w[1])
    torch.testing.assert_close(w[0], torch.softmax(fs.weight[0] @ e_page[0] + fs.bias[0], -1))
    torch.testing.assert_close(e_u, torch.einsum("bf,bfd->bd", w, e_fields))
    assert "page_to_group" not in fs.state_dict()
    with pytest.raises(ValueError, match="page_groups"):
        PageFeatureSelection(5, 4, (0, 2, 2))


def test_tower_output_bias_starts_at_the_target():
    tower = Tower(4, 8)
    tower.set_output_bias(inverse_softplus(3.0))
    out = F.softplus(tower(torch.zeros(10, 4)))
    torch.testing.assert_close(out, torch.full((10,), 3.0), atol=0.3, rtol=0)
    assert F.softplus(torch.tensor(inverse_softplus(0.01))).item() == pytest.approx(0.01)
