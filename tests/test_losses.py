"""Losses: CWD against a direct per-channel computation, class weights, weighted CE, Dice, feature CWD."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from steelkd.losses import (
    ChannelWiseDivergence,
    CWDFeatureAdapter,
    DiceLoss,
    WeightedCrossEntropy,
    channel_wise_divergence,
    class_weights,
)

SHAPES_TAUS = [((2, 5, 8, 8), 1.0), ((1, 3, 4, 7), 2.5), ((3, 4, 16, 16), 0.5)]


def cwd_loop_reference(student: torch.Tensor, teacher: torch.Tensor, tau: float, eq5: bool = False) -> float:
    """CWD with explicit loops over n and c, in float64: τ²/(N·C) Σ_n Σ_c KL(φ(T_nc) || φ(S_nc))."""
    s, t = student.detach().double(), teacher.detach().double()
    n_, c_, h, w = s.shape
    if eq5:  # class softmax over the channel dimension at every position, written out
        s = torch.exp(s) / torch.exp(s).sum(dim=1, keepdim=True)
        t = torch.exp(t) / torch.exp(t).sum(dim=1, keepdim=True)
    total = 0.0
    for n in range(n_):
        for c in range(c_):
            es = torch.exp(s[n, c].reshape(h * w) / tau)
            et = torch.exp(t[n, c].reshape(h * w) / tau)
            phi_s = es / es.sum()
            phi_t = et / et.sum()
            total += float((phi_t * torch.log(phi_t / phi_s)).sum())
    return total * tau**2 / (c_ * n_)


def mmrazor_formula(
    preds_s: torch.Tensor, preds_t: torch.Tensor, tau: float, loss_weight: float
) -> torch.Tensor:
    """mmrazor's ChannelWiseDivergence.forward, transcribed."""
    n, c, h, w = preds_s.shape
    softmax_pred_t = F.softmax(preds_t.reshape(-1, w * h) / tau, dim=1)
    loss = (
        torch.sum(
            softmax_pred_t * F.log_softmax(preds_t.reshape(-1, w * h) / tau, dim=1)
            - softmax_pred_t * F.log_softmax(preds_s.reshape(-1, w * h) / tau, dim=1)
        )
        * tau**2
    )
    return loss_weight * loss / (c * n)


# --------------------------------------------------------------------------------------------- CWD


@pytest.mark.parametrize(("shape", "tau"), SHAPES_TAUS)
def test_cwd_matches_loop_reference(shape: tuple[int, ...], tau: float) -> None:
    g = torch.Generator().manual_seed(sum(shape))
    s, t = torch.randn(shape, generator=g) * 2, torch.randn(shape, generator=g) * 2
    got = ChannelWiseDivergence(tau=tau)(s, t)
    assert got.dtype == torch.float32 and got.dim() == 0
    assert float(got) == pytest.approx(cwd_loop_reference(s, t, tau), rel=1e-5, abs=1e-7)
    assert float(got) == pytest.approx(float(mmrazor_formula(s, t, tau, 1.0)), rel=1e-5)


@pytest.mark.parametrize(("shape", "tau"), SHAPES_TAUS)
def test_cwd_paper_eq5_matches_its_reference_and_differs(shape: tuple[int, ...], tau: float) -> None:
    g = torch.Generator().manual_seed(7 + sum(shape))
    s, t = torch.randn(shape, generator=g) * 3, torch.randn(shape, generator=g) * 3
    eq5 = float(ChannelWiseDivergence(tau=tau, variant="paper_eq5")(s, t))
    std = float(ChannelWiseDivergence(tau=tau)(s, t))
    assert eq5 == pytest.approx(cwd_loop_reference(s, t, tau, eq5=True), rel=1e-4, abs=1e-8)
    assert eq5 > 0
    assert not math.isclose(eq5, std, rel_tol=1e-3)


def test_cwd_zero_when_equal_positive_otherwise() -> None:
    t = torch.randn(2, 5, 8, 8)
    for variant in ("standard", "paper_eq5"):
        cwd = ChannelWiseDivergence(tau=1.0, variant=variant)
        assert float(cwd(t.clone(), t)) == pytest.approx(0.0, abs=1e-7)
        assert float(cwd(t + 0.5 * torch.randn_like(t), t)) > 1e-4


def test_cwd_is_asymmetric_kl_teacher_first() -> None:
    g = torch.Generator().manual_seed(3)
    s, t = torch.randn(2, 3, 6, 6, generator=g) * 3, torch.randn(2, 3, 6, 6, generator=g) * 3
    cwd = ChannelWiseDivergence()
    assert float(cwd(s, t)) == pytest.approx(cwd_loop_reference(s, t, 1.0), rel=1e-5)
    assert not math.isclose(float(cwd(s, t)), float(cwd(t, s)), rel_tol=1e-3)


def test_cwd_invariant_to_per_channel_offset() -> None:
    # the spatial softmax ignores a constant added to a whole channel map (standard variant)
    s, t = torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8)
    offset = torch.randn(2, 4, 1, 1) * 10
    cwd = ChannelWiseDivergence(tau=2.0)
    assert float(cwd(s + offset, t)) == pytest.approx(float(cwd(s, t)), rel=1e-4)


def test_cwd_gradient_reaches_student_only() -> None:
    s = torch.randn(2, 5, 8, 8, requires_grad=True)
    t = torch.randn(2, 5, 8, 8, requires_grad=True)
    for variant in ("standard", "paper_eq5"):
        s.grad = None
        loss = ChannelWiseDivergence(variant=variant)(s, t)
        loss.backward()
        assert s.grad is not None and float(s.grad.abs().sum()) > 0
        assert t.grad is None


def test_cwd_training_student_towards_teacher_lowers_loss() -> None:
    t = torch.randn(1, 3, 8, 8) * 2
    s = nn.Parameter(torch.zeros(1, 3, 8, 8))
    cwd = ChannelWiseDivergence()
    opt = torch.optim.SGD([s], lr=5.0)
    start = float(cwd(s, t).detach())
    for _ in range(50):
        opt.zero_grad()
        cwd(s, t).backward()
        opt.step()
    assert float(cwd(s, t).detach()) < 0.1 * start


def test_cwd_loss_weight_scales() -> None:
    s, t = torch.randn(2, 5, 8, 8), torch.randn(2, 5, 8, 8)
    base = float(ChannelWiseDivergence(tau=1.5)(s, t))
    assert float(ChannelWiseDivergence(tau=1.5, loss_weight=3.0)(s, t)) == pytest.approx(3.0 * base, rel=1e-6)
    assert float(ChannelWiseDivergence(tau=1.5, loss_weight=0.0)(s, t)) == 0.0
    assert float(channel_wise_divergence(s, t, tau=1.5)) == pytest.approx(base, rel=1e-6)


def test_cwd_float32_under_autocast_and_half_inputs() -> None:
    s, t = torch.randn(2, 5, 8, 8), torch.randn(2, 5, 8, 8)
    s16, t16 = s.bfloat16(), t.bfloat16()
    expected = float(ChannelWiseDivergence()(s16.float(), t16.float()))
    out = ChannelWiseDivergence()(s16, t16)
    assert out.dtype == torch.float32
    assert float(out) == pytest.approx(expected, rel=1e-6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = ChannelWiseDivergence()(s, t)
    assert out.dtype == torch.float32
    assert float(out) == pytest.approx(float(ChannelWiseDivergence()(s, t)), rel=1e-6)


def test_cwd_rejects_misaligned_inputs_and_bad_settings() -> None:
    cwd = ChannelWiseDivergence()
    with pytest.raises(ValueError, match="spatial sizes differ"):
        cwd(torch.randn(2, 5, 8, 8), torch.randn(2, 5, 16, 16))
    with pytest.raises(ValueError, match="channel"):
        cwd(torch.randn(2, 4, 8, 8), torch.randn(2, 5, 8, 8))
    with pytest.raises(ValueError, match="N x C x H x W"):
        cwd(torch.randn(5, 8, 8), torch.randn(5, 8, 8))
    with pytest.raises(ValueError, match="tau"):
        ChannelWiseDivergence(tau=0.0)
    with pytest.raises(ValueError, match="variant"):
        ChannelWiseDivergence(variant="paper")


# ---------------------------------------------------------------------------------- feature CWD


def test_feature_adapter_differing_channels_is_trainable_and_matches_manual() -> None:
    adapter = CWDFeatureAdapter([8, 16, 4], [12, 16, 6], tau=2.0, loss_weight=0.5)
    assert isinstance(adapter.adapters[0], nn.Conv2d) and adapter.adapters[0].kernel_size == (1, 1)
    assert isinstance(adapter.adapters[1], nn.Identity)
    assert isinstance(adapter.adapters[2], nn.Conv2d)
    params = list(adapter.parameters())
    assert len(params) == 4 and all(p.requires_grad for p in params)  # two convs: weight + bias each

    s = [torch.randn(2, 8, 4, 4), torch.randn(2, 16, 8, 8), torch.randn(2, 4, 8, 8)]
    t = [torch.randn(2, 12, 4, 4), torch.randn(2, 16, 8, 8), torch.randn(2, 6, 16, 16, requires_grad=True)]
    loss = adapter(s, t)
    manual = 0.0
    for conv, si, ti in zip(adapter.adapters, s, t, strict=True):
        x = conv(si)
        if x.shape[-2:] != ti.shape[-2:]:
            x = F.interpolate(x, size=ti.shape[-2:], mode="bilinear", align_corners=False)
        manual += cwd_loop_reference(x, ti, 2.0)
    assert float(loss.detach()) == pytest.approx(0.5 * manual, rel=1e-5)

    loss.backward()
    assert (
        adapter.adapters[0].weight.grad is not None and float(adapter.adapters[0].weight.grad.abs().sum()) > 0
    )
    assert adapter.adapters[2].weight.grad is not None
    assert t[2].grad is None


def test_feature_adapter_always_adapt_and_errors() -> None:
    adapter = CWDFeatureAdapter([8], [8], always_adapt=True)
    assert isinstance(adapter.adapters[0], nn.Conv2d)
    with pytest.raises(ValueError, match="one teacher level per student level"):
        CWDFeatureAdapter([8, 16], [8])
    adapter = CWDFeatureAdapter([8, 16], [8, 32])
    with pytest.raises(ValueError, match="2 levels"):
        adapter([torch.randn(1, 8, 4, 4)], [torch.randn(1, 8, 4, 4)])
    with pytest.raises(ValueError, match="level 1"):
        adapter([torch.randn(1, 8, 4, 4), torch.randn(1, 15, 4, 4)], [torch.randn(1, 8, 4, 4)] * 2)


# -------------------------------------------------------------------------------- class weights


def test_class_weights_median_freq_known_counts() -> None:
    # freq = [0.7, 0.1, 0, 0.2]; median over the present classes = 0.2; the empty class gets 0
    w = class_weights(np.array([700, 100, 0, 200], dtype=np.int64), "median_freq")
    assert w.dtype == torch.float32
    assert w.tolist() == pytest.approx([0.2 / 0.7, 2.0, 0.0, 1.0], rel=1e-6)
    # even number of classes: median = (0.1 + 0.2) / 2 = 0.15
    w = class_weights(torch.tensor([600, 200, 100, 100]), "median_freq")
    assert w.tolist() == pytest.approx([0.25, 0.75, 1.5, 1.5], rel=1e-6)
    w = class_weights([600, 200, 100, 100], "median_freq_sqrt")
    assert w.tolist() == pytest.approx([0.5, 0.75**0.5, 1.5**0.5, 1.5**0.5], rel=1e-6)


def test_class_weights_inverse_none_and_lists() -> None:
    w = class_weights([700, 100, 0, 200], "inverse")
    inv = np.array([1 / 0.7, 1 / 0.1, 1 / 0.2])
    assert w.tolist() == pytest.approx([*(inv[:2] / inv.mean()), 0.0, inv[2] / inv.mean()], rel=1e-6)
    assert float(w[[0, 1, 3]].mean()) == pytest.approx(1.0, rel=1e-6)
    assert torch.isfinite(w).all()
    assert class_weights([5, 0, 3], "none").tolist() == [1.0, 1.0, 1.0]
    assert class_weights([5, 0, 3], None).tolist() == [1.0, 1.0, 1.0]
    assert class_weights([5, 0, 3], [0.5, 2, 3]).tolist() == [0.5, 2.0, 3.0]


@pytest.mark.parametrize(
    ("counts", "method", "match"),
    [
        ([5, 0, 3], [1.0, 2.0], "2 weights .* for 3 classes"),
        ([5, 0, 3], [1.0, -2.0, 1.0], "finite and >= 0"),
        ([5, 0, 3], "median", "unknown method 'median'"),
        ([0, 0, 0], "median_freq", "all zero"),
        ([5, -1, 3], "median_freq", "finite and >= 0"),
        ([[5, 1], [3, 1]], "median_freq", "1-D"),
    ],
)
def test_class_weights_bad_input(counts: list, method: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        class_weights(counts, method)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------- weighted CE


def test_weighted_ce_equals_torch_cross_entropy() -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 4, 8, 8, generator=g)
    target = torch.randint(0, 4, (2, 8, 8), generator=g)
    target[0, :2] = 255
    weight = class_weights([900, 30, 50, 20], "median_freq")
    got = WeightedCrossEntropy(weight, ignore_index=255)(logits, target)
    assert float(got) == pytest.approx(
        float(F.cross_entropy(logits, target, weight=weight, ignore_index=255)), rel=1e-6
    )
    got = WeightedCrossEntropy()(logits, target.clamp(max=3))
    assert float(got) == pytest.approx(float(F.cross_entropy(logits, target.clamp(max=3))), rel=1e-6)


def test_weighted_ce_weight_is_a_buffer_that_moves_and_gradients_flow() -> None:
    ce = WeightedCrossEntropy([0.5, 1.0, 2.0])
    assert "weight" in dict(ce.named_buffers())
    assert "weight" not in ce.state_dict()  # recomputed from the data, never a load mismatch
    ce.to("meta")
    assert ce.weight is not None and ce.weight.device.type == "meta"
    ce = WeightedCrossEntropy([0.5, 1.0, 2.0])
    logits = torch.randn(1, 3, 4, 4, requires_grad=True)
    ce(logits, torch.randint(0, 3, (1, 4, 4))).backward()
    assert logits.grad is not None and float(logits.grad.abs().sum()) > 0


def test_weighted_ce_degenerate_batch_is_zero_not_nan_and_float32() -> None:
    logits = torch.randn(1, 3, 4, 4, requires_grad=True)
    all_ignored = torch.full((1, 4, 4), -100)
    assert float(WeightedCrossEntropy([1.0, 1.0, 1.0])(logits, all_ignored)) == 0.0
    zero_weight_only = torch.full((1, 4, 4), 2)
    out = WeightedCrossEntropy([1.0, 1.0, 0.0])(logits, zero_weight_only)
    assert float(out) == 0.0
    out.backward()
    out = WeightedCrossEntropy()(logits.detach().bfloat16(), torch.randint(0, 3, (1, 4, 4)))
    assert out.dtype == torch.float32


def test_weighted_ce_rejects_mismatch() -> None:
    with pytest.raises(ValueError, match="3 class weights for logits with 4 classes"):
        WeightedCrossEntropy([1.0, 1.0, 1.0])(torch.randn(1, 4, 4, 4), torch.zeros(1, 4, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="do not match"):
        WeightedCrossEntropy()(torch.randn(1, 4, 4, 4), torch.zeros(1, 5, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="finite"):
        WeightedCrossEntropy([1.0, float("inf")])


# ------------------------------------------------------------------------------------- Dice


def test_dice_loss_near_zero_on_perfect_prediction_and_high_on_wrong() -> None:
    target = torch.randint(0, 5, (2, 16, 16), generator=torch.Generator().manual_seed(1))
    onehot = F.one_hot(target, 5).permute(0, 3, 1, 2).float()
    dice = DiceLoss(num_classes=5)
    assert float(dice(onehot * 30.0, target)) < 1e-3
    wrong = F.one_hot((target + 1) % 5, 5).permute(0, 3, 1, 2).float() * 30.0
    assert float(dice(wrong, target)) > 0.95


def test_dice_loss_matches_manual_formula() -> None:
    g = torch.Generator().manual_seed(2)
    logits, target = torch.randn(2, 3, 8, 8, generator=g), torch.randint(0, 3, (2, 8, 8), generator=g)
    p = torch.softmax(logits, 1)
    onehot = F.one_hot(target, 3).permute(0, 3, 1, 2).float()
    per_class = [
        (2 * (p[:, c] * onehot[:, c]).sum() + 1.0) / (p[:, c].sum() + onehot[:, c].sum() + 1.0)
        for c in range(3)
    ]
    fg = 1 - (per_class[1] + per_class[2]) / 2
    all_ = 1 - sum(per_class) / 3
    assert float(DiceLoss(3)(logits, target)) == pytest.approx(float(fg), rel=1e-6)
    assert float(DiceLoss(3, ignore_background=False)(logits, target)) == pytest.approx(float(all_), rel=1e-6)
    # ignored pixels are left out: same as the loss on the remaining pixels only
    t2 = target.clone()
    t2[:, :, 4:] = 255
    left = DiceLoss(3, ignore_index=255)(logits, t2)
    assert float(left) == pytest.approx(float(DiceLoss(3)(logits[..., :4], target[..., :4])), rel=1e-6)
    logits.requires_grad_(True)
    DiceLoss(3)(logits, target).backward()
    assert logits.grad is not None and float(logits.grad.abs().sum()) > 0


def test_dice_loss_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError, match="N x 5 x H x W"):
        DiceLoss(5)(torch.randn(1, 4, 8, 8), torch.zeros(1, 8, 8, dtype=torch.long))
    with pytest.raises(ValueError, match="num_classes"):
        DiceLoss(1)
