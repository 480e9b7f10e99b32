"""Models: shapes at any input size, the forward contract, parameter counts, GC, weights loading, CLI."""

from __future__ import annotations

import pytest
import timm
import torch
from safetensors.torch import save_file
from torch import nn
from typer.testing import CliRunner

from steelkd.models import (
    GlobalContextBlock,
    ResUnet,
    count_parameters,
    create_model,
    list_models,
)

PAPER_M = {
    "resunet_convnext_tiny": 33.91,
    "resunet_convnext_tiny_gc_ff": 36.02,
    "resunet_convnext_base_gc_ff": 100.98,
}


@pytest.fixture(scope="module")
def atto_gc_ff() -> ResUnet:
    torch.manual_seed(0)
    model = create_model("resunet_convnext_atto_gc_ff", num_classes=5)
    assert isinstance(model, ResUnet)
    return model.eval()


@pytest.mark.parametrize("size", [(64, 64), (200, 200), (97, 130), (64, 160)])
def test_output_matches_input_size(atto_gc_ff: ResUnet, size: tuple[int, int]) -> None:
    with torch.inference_mode():
        y = atto_gc_ff(torch.randn(2, 3, *size))
    assert y.shape == (2, 5, *size)
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("size", [(64, 96), (97, 130)])
def test_return_features_contract(atto_gc_ff: ResUnet, size: tuple[int, int]) -> None:
    x = torch.randn(1, 3, *size)
    with torch.inference_mode():
        out = atto_gc_ff(x, return_features=True)
        plain = atto_gc_ff(x)
    assert set(out) == {"logits", "logits_low", "features"}
    torch.testing.assert_close(out["logits"], plain)
    h4, w4 = size[0] // 4, size[1] // 4  # ConvNeXt stem: 4x4 conv, stride 4, no padding
    assert out["logits_low"].shape == (1, 5, h4, w4)
    feats = out["features"]
    assert [f.shape[1] for f in feats] == list(atto_gc_ff.decoder_channels) == [160, 80, 40]
    assert feats[-1].shape[-2:] == (h4, w4)
    heights = [f.shape[-2] for f in feats]
    assert heights == sorted(heights) and len(set(heights)) == 3  # coarse to fine
    # logits are the bilinear x4 upsampling of logits_low
    up = nn.functional.interpolate(out["logits_low"], size=size, mode="bilinear", align_corners=False)
    torch.testing.assert_close(out["logits"], up)


def test_attributes() -> None:
    model = create_model("resunet_convnext_atto", num_classes=3)
    assert model.name == "resunet_convnext_atto"
    assert model.num_classes == 3
    assert model.decoder_channels == (160, 80, 40)
    assert model.model_kwargs == {}
    custom = create_model(
        "resunet_convnext_atto_ff", num_classes=2, decoder_channels=(64, 32, 16), ff_channels=24
    )
    assert custom.decoder_channels == (64, 32, 16)
    assert custom.model_kwargs == {"decoder_channels": (64, 32, 16), "ff_channels": 24}
    assert custom.head.in_channels == 24


@pytest.mark.parametrize("name", sorted(PAPER_M))
def test_param_counts_match_paper(name: str) -> None:
    params_m = count_parameters(name, num_classes=5) / 1e6
    assert abs(params_m / PAPER_M[name] - 1) < 0.03, f"{name}: {params_m:.2f} M vs paper {PAPER_M[name]}"


def test_every_registered_name_builds() -> None:
    names = list_models()
    for enc in ("atto", "femto", "pico", "nano", "tiny", "base"):
        for suffix in ("", "_gc", "_ff", "_gc_ff"):
            assert f"resunet_convnext_{enc}{suffix}" in names
    counts = {}
    for name in names:
        with torch.device("meta"):
            model = create_model(name, num_classes=5)
        assert model.name == name
        has_gc = any(isinstance(m, GlobalContextBlock) for m in model.modules())
        assert has_gc == ("_gc" in name), name
        assert (model.decoder.fusion is not None) == name.endswith("_ff"), name
        counts[name] = sum(p.numel() for p in model.parameters())
    # GC and FF add parameters; a bigger encoder has more
    assert (
        counts["resunet_convnext_tiny_gc_ff"]
        > counts["resunet_convnext_tiny_gc"]
        > counts["resunet_convnext_tiny"]
    )
    assert counts["resunet_convnext_base"] > counts["resunet_convnext_tiny"] > counts["resunet_convnext_atto"]
    assert list_models("*_gc_ff") == [n for n in names if n.endswith("_gc_ff")]


def test_unknown_name_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="resunet_convnext_tiny"):
        create_model("resunet_convnext_tiyn")


def test_gc_block_is_identity_at_init_and_learns() -> None:
    torch.manual_seed(0)
    gc = GlobalContextBlock(16, ratio=1 / 4)
    x = torch.randn(2, 16, 5, 7)
    assert torch.equal(gc(x), x)
    # not a degenerate block: once the last conv is non-zero, it adds a per-channel context
    nn.init.normal_(gc.transform[-1].weight)
    y = gc(x)
    assert not torch.allclose(y, x)
    delta = y - x
    torch.testing.assert_close(delta, delta[..., :1, :1].expand_as(delta))  # constant over H x W (addition)


def test_gc_model_equals_bypassed_at_init_then_changes_after_a_step() -> None:
    torch.manual_seed(0)
    model = create_model("resunet_convnext_atto_gc", num_classes=3)
    x = torch.randn(2, 3, 64, 64)
    target = torch.randint(0, 3, (2, 64, 64))
    model.eval()
    with torch.no_grad():
        with_gc = model(x)
        saved = [stage.gc for stage in model.decoder.stages]
        for stage in model.decoder.stages:
            stage.gc = nn.Identity()
        bypassed = model(x)
        for stage, gc in zip(model.decoder.stages, saved, strict=True):
            stage.gc = gc
    assert torch.equal(with_gc, bypassed)

    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loss = nn.functional.cross_entropy(model(x), target)
    loss.backward()
    opt.step()
    model.eval()
    with torch.no_grad():
        after = model(x)
        for stage in model.decoder.stages:
            assert stage.gc.transform[-1].weight.abs().sum() > 0  # the zero conv learned
            stage.gc = nn.Identity()
        after_bypassed = model(x)
    assert not torch.allclose(after, after_bypassed)


def test_no_unused_parameters_in_plain_forward() -> None:
    """DDP without find_unused_parameters needs every parameter to get a gradient."""
    torch.manual_seed(0)
    model = create_model("resunet_convnext_atto_gc_ff", num_classes=5)
    model(torch.randn(2, 3, 64, 64)).square().mean().backward()
    unused = [n for n, p in model.named_parameters() if p.grad is None]
    assert unused == []


def test_bf16_autocast_cpu(atto_gc_ff: ResUnet) -> None:
    x = torch.randn(1, 3, 64, 96)
    with torch.inference_mode():
        ref = atto_gc_ff(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = atto_gc_ff(x, return_features=True)
    assert out["logits"].shape == (1, 5, 64, 96)
    assert out["logits"].dtype == torch.bfloat16
    assert torch.isfinite(out["logits"].float()).all()
    assert (out["logits"].float() - ref).abs().max() < 0.25 * ref.abs().max() + 0.1


def _features_key(key: str) -> str:
    parts = key.split(".")
    return f"{parts[0]}_{parts[1]}.{'.'.join(parts[2:])}"


def test_encoder_weights_roundtrip_timm_classification_safetensors(tmp_path) -> None:
    torch.manual_seed(1)
    clf = timm.create_model("convnext_atto", pretrained=False, num_classes=10)
    path = tmp_path / "convnext_atto.safetensors"
    save_file({k: v.contiguous() for k, v in clf.state_dict().items()}, str(path))
    model = create_model("resunet_convnext_atto", encoder_weights=path)
    enc = model.encoder.state_dict()
    for key, value in clf.state_dict().items():
        if key.startswith("head."):
            continue
        assert torch.equal(enc[_features_key(key)], value), key


def test_encoder_weights_roundtrip_features_only_prefixed_pt(tmp_path) -> None:
    torch.manual_seed(2)
    src = create_model("resunet_convnext_atto_gc")
    path = tmp_path / "encoder.pt"
    torch.save({"state_dict": {f"model.encoder.{k}": v for k, v in src.encoder.state_dict().items()}}, path)
    dst = create_model("resunet_convnext_atto", encoder_weights=str(path))
    for key, value in src.encoder.state_dict().items():
        assert torch.equal(dst.encoder.state_dict()[key], value), key
    # a full segmentation-model state dict also works: its encoder part is used
    full = tmp_path / "full.pt"
    torch.save(src.state_dict(), full)
    again = create_model("resunet_convnext_atto", encoder_weights=full)
    assert torch.equal(again.encoder.state_dict()["stem_0.weight"], src.encoder.state_dict()["stem_0.weight"])


def test_encoder_weights_mismatch_names_the_key(tmp_path) -> None:
    clf = timm.create_model("convnext_atto", pretrained=False)
    state = dict(clf.state_dict())
    state["stages.9.bogus.weight"] = torch.zeros(3)
    del state["stem.0.bias"]
    path = tmp_path / "bad.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    with pytest.raises(ValueError) as info:
        create_model("resunet_convnext_atto", encoder_weights=path)
    msg = str(info.value)
    assert "stages.9.bogus.weight" in msg and "stem_0.bias" in msg and "bad.safetensors" in msg
    # wrong architecture: shape mismatch named
    femto = timm.create_model("convnext_femto", pretrained=False)
    path2 = tmp_path / "femto.safetensors"
    save_file({k: v.contiguous() for k, v in femto.state_dict().items()}, str(path2))
    with pytest.raises(
        ValueError,
        match=r"\d+ shape mismatches \(first: stem_0\.weight \(48, 3, 4, 4\) != \(40, 3, 4, 4\)",
    ):
        create_model("resunet_convnext_atto", encoder_weights=path2)
    with pytest.raises(FileNotFoundError, match=r"missing\.safetensors"):
        create_model("resunet_convnext_atto", encoder_weights=tmp_path / "missing.safetensors")


def test_cli_models_list_and_info() -> None:
    import typer

    from steelkd.cli.models import register

    app = typer.Typer()
    register(app)
    runner = CliRunner()
    res = runner.invoke(app, ["models", "list", "--pattern", "*tiny*"], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    line = next(ln for ln in res.output.splitlines() if "resunet_convnext_tiny_gc_ff" in ln)
    assert "36.01" in line and "36.02" in line
    assert "resunet_convnext_base" not in res.output
    res = runner.invoke(app, ["models", "info", "resunet_convnext_atto", "--size", "64x64"])
    assert res.exit_code == 0, res.output
    assert "(160, 80, 40)" in res.output
    res = runner.invoke(app, ["models", "info", "no_such_model"])
    assert res.exit_code == 1
