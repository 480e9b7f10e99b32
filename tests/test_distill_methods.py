"""The logit distillation methods: pixel KD and DIST against naive references, their properties, the
builder's method x where combinations, and a short distillation run with each."""

from __future__ import annotations

import math
import statistics
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from steelkd.config import DistillConfig, config_from_dict
from steelkd.data import synth
from steelkd.engine import fit
from steelkd.losses import (
    ChannelWiseDivergence,
    CWDFeatureAdapter,
    DISTLoss,
    FeatureDistill,
    LogitDistill,
    LowResLogitDistill,
    PixelKD,
    build_distill_loss,
    dist_terms,
)
from steelkd.losses.dist import pearson
from steelkd.models import create_model, make_card, save_model

SHAPES_TAUS = [((2, 5, 4, 6), 1.0), ((1, 3, 5, 3), 2.5), ((3, 4, 3, 3), 0.5)]


def _softmax(values: list[float], tau: float) -> list[float]:
    top = max(values)
    e = [math.exp((v - top) / tau) for v in values]
    return [x / sum(e) for x in e]


def _pixels(logits: torch.Tensor, tau: float) -> list[list[float]]:
    """The class distribution of every pixel, one python list per pixel, in float64 (explicit loops)."""
    x = logits.detach().double()
    n_, c_, h_, w_ = x.shape
    return [
        _softmax([float(x[n, c, i, j]) for c in range(c_)], tau)
        for n in range(n_)
        for i in range(h_)
        for j in range(w_)
    ]


def kd_reference(student: torch.Tensor, teacher: torch.Tensor, tau: float) -> float:
    """τ² · (1 / #pixels) Σ_pixels Σ_c p_T log(p_T / p_S), written as loops over python floats."""
    pairs = zip(_pixels(student, tau), _pixels(teacher, tau), strict=True)
    kls = [sum(pt * math.log(pt / ps) for ps, pt in zip(p_s, p_t, strict=True)) for p_s, p_t in pairs]
    return tau**2 * sum(kls) / len(kls)


def dist_reference(student: torch.Tensor, teacher: torch.Tensor, tau: float) -> tuple[float, float]:
    """(inter, intra) with the standard library's Pearson correlation (no eps) over pixels / classes."""
    p_s, p_t = _pixels(student, tau), _pixels(teacher, tau)
    inter = [1 - statistics.correlation(a, b) for a, b in zip(p_s, p_t, strict=True)]
    n_classes = len(p_s[0])
    intra = [1 - statistics.correlation([p[c] for p in p_s], [p[c] for p in p_t]) for c in range(n_classes)]
    return tau**2 * sum(inter) / len(inter), tau**2 * sum(intra) / n_classes


def official_dist(
    y_s: torch.Tensor, y_t: torch.Tensor, tau: float, beta: float, gamma: float
) -> torch.Tensor:
    """hunto/DIST_KD segmentation/losses/dist_kd.py (2418f18) transcribed, with τ and τ² (paper) added."""

    def pearson_rows(x: torch.Tensor, y: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
        x, y = x - x.mean(1).unsqueeze(1), y - y.mean(1).unsqueeze(1)
        return (x * y).sum(1) / (x.norm(dim=1) * y.norm(dim=1) + eps)

    c = y_s.shape[1]
    y_s = (y_s.transpose(1, 3).reshape(-1, c) / tau).softmax(dim=1)
    y_t = (y_t.transpose(1, 3).reshape(-1, c) / tau).softmax(dim=1)
    inter = 1 - pearson_rows(y_s, y_t).mean()
    intra = 1 - pearson_rows(y_s.transpose(0, 1), y_t.transpose(0, 1)).mean()
    return tau**2 * (beta * inter + gamma * intra)


def softened(teacher: torch.Tensor, tau: float, a: float) -> torch.Tensor:
    """Student logits whose probabilities (at τ) are ``a·p_T + (1 − a)/C``: a positive affine map of p_T."""
    p_t = torch.softmax(teacher.double() / tau, dim=1)
    return (tau * torch.log(a * p_t + (1 - a) / teacher.shape[1])).float()


# ---------------------------------------------------------------------------------------------- KD


@pytest.mark.parametrize(("shape", "tau"), SHAPES_TAUS)
def test_kd_matches_loop_reference(shape: tuple[int, ...], tau: float) -> None:
    torch.manual_seed(0)
    s, t = torch.randn(shape) * 2, torch.randn(shape) * 2
    assert float(PixelKD(tau=tau)(s, t)) == pytest.approx(kd_reference(s, t, tau), rel=1e-5)
    assert float(PixelKD(tau=tau, loss_weight=0.3)(s, t)) == pytest.approx(
        0.3 * kd_reference(s, t, tau), rel=1e-5
    )


def test_kd_zero_when_equal_positive_otherwise_and_asymmetric() -> None:
    torch.manual_seed(1)
    s, t = torch.randn(2, 5, 6, 6) * 3, torch.randn(2, 5, 6, 6) * 3
    kd = PixelKD(tau=2.0)
    assert float(kd(t, t)) == pytest.approx(0.0, abs=1e-6)
    assert float(kd(t + 4.0, t)) == pytest.approx(0.0, abs=1e-5)  # a per-pixel shift: same softmax
    assert float(kd(s, t)) > 0.05
    assert float(kd(s, t)) != pytest.approx(float(kd(t, s)), rel=1e-3)  # KL(teacher || student)


def test_kd_temperature_squared_scaling_and_pixel_mean() -> None:
    torch.manual_seed(2)
    s, t = torch.randn(2, 4, 5, 5) * 2, torch.randn(2, 4, 5, 5) * 2
    for tau in (0.5, 2.0, 4.0):
        # τ²·KL(softmax(t/τ) || softmax(s/τ)) == τ² · KD_{τ=1}(s/τ, t/τ)
        assert float(PixelKD(tau=tau)(s, t)) == pytest.approx(
            tau**2 * float(PixelKD(tau=1.0)(s / tau, t / tau)), rel=1e-5
        )
    # A mean over pixels, not a sum: repeating the batch or the image leaves it unchanged.
    kd = PixelKD()
    assert float(kd(torch.cat([s, s]), torch.cat([t, t]))) == pytest.approx(float(kd(s, t)), rel=1e-6)
    assert float(kd(s.repeat(1, 1, 2, 3), t.repeat(1, 1, 2, 3))) == pytest.approx(float(kd(s, t)), rel=1e-6)


# -------------------------------------------------------------------------------------------- DIST


@pytest.mark.parametrize(("shape", "tau"), SHAPES_TAUS)
def test_dist_matches_reference_and_official_code(shape: tuple[int, ...], tau: float) -> None:
    torch.manual_seed(3)
    s, t = torch.randn(shape) * 2, torch.randn(shape) * 2
    inter_ref, intra_ref = dist_reference(s, t, tau)
    inter, intra = dist_terms(s, t, tau=tau)
    assert float(inter) == pytest.approx(inter_ref, rel=1e-5)
    assert float(intra) == pytest.approx(intra_ref, rel=1e-5)
    loss = DISTLoss(tau=tau, inter_weight=0.7, intra_weight=1.9, loss_weight=0.5)(s, t)
    assert float(loss) == pytest.approx(0.5 * (0.7 * inter_ref + 1.9 * intra_ref), rel=1e-5)
    official = official_dist(s.double(), t.double(), tau, beta=0.7, gamma=1.9)
    assert float(loss) == pytest.approx(0.5 * float(official), rel=1e-5)


def test_dist_zero_when_equal_positive_otherwise_and_symmetric() -> None:
    torch.manual_seed(4)
    s, t = torch.randn(2, 5, 6, 6) * 3, torch.randn(2, 5, 6, 6) * 3
    dist = DISTLoss(tau=2.0)
    assert float(dist(t, t)) == pytest.approx(0.0, abs=1e-5)  # 1 − corr = 0 up to eps
    assert float(dist(s, t)) > 0.1
    inter, intra = dist_terms(s, t, tau=2.0)
    assert float(inter) > 0 and float(intra) > 0
    # Pearson is symmetric, so DIST is too (unlike KD's KL).
    assert float(dist(s, t)) == pytest.approx(float(dist(t, s)), rel=1e-5)


def test_dist_ignores_per_pixel_logit_shift_but_not_logit_scale() -> None:
    torch.manual_seed(5)
    s, t = torch.randn(2, 5, 6, 6) * 2, torch.randn(2, 5, 6, 6) * 2
    dist = DISTLoss(tau=1.5)
    shift = torch.randn(2, 1, 6, 6) * 5  # the same constant for every class of a pixel: same softmax
    assert float(dist(s + shift, t)) == pytest.approx(float(dist(s, t)), rel=1e-5)
    assert float(dist(s, t - shift)) == pytest.approx(float(dist(s, t)), rel=1e-5)
    # Scaling the logits changes the probabilities non-linearly: not an invariance.
    assert float(dist(t + shift, t)) == pytest.approx(0.0, abs=1e-5)
    assert float(dist(3 * t, t)) > 0.01


def test_dist_is_zero_for_a_positive_affine_copy_of_the_teachers_probabilities() -> None:
    """DIST matches relations: p_S = a·p_T + (1 − a)/C scores 0 in both terms, where KD does not."""
    torch.manual_seed(6)
    t = torch.randn(2, 5, 6, 6) * 2
    for tau in (1.0, 2.5):
        s = softened(t, tau, a=0.4)
        p_s, p_t = torch.softmax(s.double() / tau, 1), torch.softmax(t.double() / tau, 1)
        assert torch.allclose(p_s, 0.4 * p_t + 0.6 / 5, atol=1e-6)
        inter, intra = dist_terms(s, t, tau=tau)
        assert float(inter) == pytest.approx(0.0, abs=1e-5)
        assert float(intra) == pytest.approx(0.0, abs=1e-5)
        assert float(PixelKD(tau=tau)(s, t)) > 0.01


def test_pearson_positive_affine_invariance_and_sign() -> None:
    torch.manual_seed(7)
    x, y = torch.rand(10, 6, dtype=torch.float64), torch.rand(10, 6, dtype=torch.float64)
    r = pearson(x, y, eps=0.0)
    assert torch.allclose(pearson(3.0 * x + 2.0, 0.5 * y - 1.0, eps=0.0), r, atol=1e-12)
    assert torch.allclose(pearson(-3.0 * x + 2.0, y, eps=0.0), -r, atol=1e-12)
    assert torch.allclose(pearson(x, x, eps=0.0), torch.ones(10, dtype=torch.float64), atol=1e-12)
    # With the eps (1e-8) a constant row gives 0, not NaN.
    const = torch.full((1, 6), 0.5, dtype=torch.float64)
    assert float(pearson(const, y[:1])) == 0.0


def test_dist_uniform_student_pixel_is_finite() -> None:
    """A pixel whose student logits are all equal (zero-centred probabilities): loss and grads finite."""
    torch.manual_seed(8)
    s = torch.randn(1, 4, 3, 3)
    s[0, :, 1, 1] = 0.7
    s.requires_grad_(True)
    loss = DISTLoss()(s, torch.randn(1, 4, 3, 3))
    loss.backward()
    assert torch.isfinite(loss) and bool(torch.isfinite(s.grad).all())


# ------------------------------------------------------------------------------------ both methods

LOSSES = [PixelKD(tau=2.0), DISTLoss(tau=2.0, inter_weight=1.0, intra_weight=2.0)]


@pytest.mark.parametrize("loss", LOSSES, ids=["kd", "dist"])
def test_gradient_reaches_student_only(loss: torch.nn.Module) -> None:
    torch.manual_seed(9)
    s = torch.randn(2, 5, 6, 6, requires_grad=True)
    t = torch.randn(2, 5, 6, 6, requires_grad=True)
    loss(s, t).backward()
    assert s.grad is not None and float(s.grad.abs().sum()) > 0
    assert t.grad is None


@pytest.mark.parametrize("loss", LOSSES, ids=["kd", "dist"])
def test_bf16_inputs_and_autocast_give_float32(loss: torch.nn.Module) -> None:
    torch.manual_seed(10)
    s, t = torch.randn(2, 5, 8, 8) * 2, torch.randn(2, 5, 8, 8) * 2
    s16, t16 = s.bfloat16(), t.bfloat16()
    out = loss(s16, t16)
    assert out.dtype == torch.float32
    assert float(out) == pytest.approx(float(loss(s16.float(), t16.float())), rel=1e-6)
    assert float(out) == pytest.approx(float(loss(s, t)), rel=5e-2)  # only the bf16 rounding of the inputs
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = loss(s, t)
    assert out.dtype == torch.float32
    assert float(out) == pytest.approx(float(loss(s, t)), rel=1e-6)


@pytest.mark.parametrize("loss", [PixelKD, DISTLoss])
def test_bad_settings_and_shapes_raise(loss: type[torch.nn.Module]) -> None:
    for tau in (0, -1.0, True):
        with pytest.raises(ValueError, match="temperature tau"):
            loss(tau=tau)
    with pytest.raises(ValueError, match="N x C x H x W"):
        loss()(torch.randn(2, 5, 8, 8), torch.randn(2, 5, 4, 4))
    with pytest.raises(ValueError, match="N x C x H x W"):
        loss()(torch.randn(5, 8, 8), torch.randn(5, 8, 8))


# ------------------------------------------------------------------------------------------ builder

TERMS = {"cwd": ChannelWiseDivergence, "kd": PixelKD, "dist": DISTLoss}
WRAPPERS = {"logits": LogitDistill, "logits_low": LowResLogitDistill, "features": FeatureDistill}


def _outputs(seed: int, channels: tuple[int, ...]) -> dict[str, object]:
    g = torch.Generator().manual_seed(seed)
    return {
        "logits": torch.randn(2, 5, 16, 16, generator=g),
        "logits_low": torch.randn(2, 5, 4, 4, generator=g),
        "features": [
            torch.randn(2, ch, 16 // 2**k, 16 // 2**k, generator=g) for k, ch in enumerate(channels)
        ],
    }


@pytest.mark.parametrize("method", ["cwd", "kd", "dist"])
@pytest.mark.parametrize("where", ["logits", "logits_low", "features"])
def test_builder_method_picks_the_logit_term_for_every_where(method: str, where: str) -> None:
    cfg = DistillConfig(
        method=method, where=where, tau=2.0, loss_weight=0.5, inter_weight=2.0, intra_weight=3.0
    )
    loss = build_distill_loss(cfg, (8, 4), (16, 4))
    assert type(loss) is WRAPPERS[where]
    assert type(loss.term) is TERMS[method]
    assert loss.term.tau == 2.0 and loss.term.loss_weight == 0.5
    if method == "dist":
        assert (loss.term.inter_weight, loss.term.intra_weight) == (2.0, 3.0)
    s, t = _outputs(0, (8, 4)), _outputs(1, (16, 4))
    direct = {
        "cwd": ChannelWiseDivergence(tau=2.0, loss_weight=0.5),
        "kd": PixelKD(tau=2.0, loss_weight=0.5),
        "dist": DISTLoss(tau=2.0, inter_weight=2.0, intra_weight=3.0, loss_weight=0.5),
    }[method]
    if where == "logits_low":
        expected = direct(s["logits_low"], t["logits_low"])
    else:
        expected = direct(s["logits"], t["logits"])
    if where == "features":
        assert isinstance(loss.adapter, CWDFeatureAdapter)  # the feature terms stay CWD
        assert loss.adapter.loss_weight == cfg.feature_weight * cfg.loss_weight
        expected = expected + loss.adapter(s["features"], t["features"])
        assert len(list(loss.parameters())) == 2  # the one 1x1 adapter (8 -> 16): weight and bias
    else:
        assert not list(loss.parameters())
    assert float(loss(s, t).detach()) == pytest.approx(float(expected.detach()), rel=1e-6)


def test_builder_low_res_student_is_resized_and_variant_is_cwd_only() -> None:
    s, t = _outputs(2, (8, 4)), _outputs(3, (16, 4))
    s["logits_low"] = torch.randn(2, 5, 8, 8)
    for method in ("kd", "dist"):
        assert torch.isfinite(
            build_distill_loss(DistillConfig(method=method, where="logits_low"), (), ())(s, t)
        )
    eq5 = build_distill_loss(DistillConfig(method="cwd", variant="paper_eq5"), (), ())
    assert eq5.term.variant == "paper_eq5"
    for method in ("kd", "dist"):
        with pytest.raises(ValueError, match="applies to method cwd only"):
            build_distill_loss(DistillConfig(method=method, variant="paper_eq5"), (), ())
    with pytest.raises(ValueError, match=r"distill\.method"):
        build_distill_loss(DistillConfig(method="fitnet"), (), ())


# ------------------------------------------------------------------------------------------- fit()


@pytest.mark.parametrize("method", ["kd", "dist"])
def test_fit_distils_with_each_method(tmp_path: Path, method: str) -> None:
    root = tmp_path / "synth"
    synth.generate(root, n=8, seed=0, height=32, width=64)
    torch.manual_seed(1)
    names = ["background", "pitting", "crazing", "scratches", "patches"]
    teacher = create_model("resunet_convnext_atto", num_classes=len(names))
    teacher_dir = save_model(teacher, tmp_path / "teacher", make_card(teacher, names))
    cfg = config_from_dict({
        "data": {"kind": "synth", "root": str(root), "crop": [], "batch_size": 2, "num_workers": 0,
                 "split_file": str(tmp_path / "s.json")},
        "model": {"name": "resunet_convnext_atto"},
        "train": {"epochs": 1, "precision": "32", "accelerator": "cpu", "log_every": 1,
                  "limit_train_batches": 2, "limit_val_batches": 1, "out_dir": str(tmp_path / "run")},
        "distill": {"teacher": str(teacher_dir), "method": method, "tau": 2.0, "intra_weight": 2.0},
    })  # fmt: skip
    result = fit(cfg, progress=False)
    kd = pd.read_csv(result.metrics_csv)["train/loss_kd_step"].dropna().to_numpy()
    assert len(kd) == 2 and bool(np.isfinite(kd).all()) and bool((kd > 0).all()), kd
    assert (result.model_dir / "model.safetensors").is_file()
