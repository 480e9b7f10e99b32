"""ONNX export: dynamic batch/height/width, parity with PyTorch, metadata, atomic write."""

from __future__ import annotations

import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from steelkd.export import check_onnx, to_onnx
from steelkd.models import GlobalContextBlock, create_model


@pytest.fixture(scope="module")
def model() -> nn.Module:
    """A tiny GC+FF model with non-trivial BN statistics and GC weights (so every path matters)."""
    torch.manual_seed(0)
    m = create_model("resunet_convnext_atto_gc_ff", num_classes=5)
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.5, 0.5)
                mod.running_var.uniform_(0.5, 2.0)
            if isinstance(mod, GlobalContextBlock):
                nn.init.normal_(mod.transform[-1].weight, std=0.2)
    return m.train()  # export must not depend on (or change) the caller's mode


@pytest.fixture(scope="module")
def onnx_path(model: nn.Module, tmp_path_factory: pytest.TempPathFactory):
    path = tmp_path_factory.mktemp("onnx") / "model.onnx"
    meta = {"architecture": "resunet_convnext_atto_gc_ff", "classes": "bg,a,b,c,d"}
    out = to_onnx(model, path, opset=17, metadata=meta, sample_size=(64, 96))
    assert out == path
    return path


def test_export_keeps_mode_and_writes_atomically(model: nn.Module, onnx_path) -> None:
    assert model.training
    assert sorted(p.name for p in onnx_path.parent.iterdir()) == ["model.onnx"]  # no temp file left


@pytest.mark.parametrize("shape", [(1, 3, 64, 96), (2, 3, 97, 130), (1, 3, 128, 64)])
def test_onnxruntime_matches_pytorch_at_other_sizes(model: nn.Module, onnx_path, shape) -> None:
    torch.manual_seed(1)
    x = torch.randn(*shape)
    diff = check_onnx(model, onnx_path, x)
    assert diff < 1e-4
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    (out,) = sess.run(None, {"image": x.numpy()})
    assert out.shape == (shape[0], 5, shape[2], shape[3])  # dynamic batch, height and width


def test_metadata_and_dynamic_axes_in_graph(onnx_path) -> None:
    proto = onnx.load(str(onnx_path))
    props = {p.key: p.value for p in proto.metadata_props}
    assert props == {"architecture": "resunet_convnext_atto_gc_ff", "classes": "bg,a,b,c,d"}
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param for d in dims] == ["batch", "", "height", "width"]
    assert dims[1].dim_value == 3
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    assert sess.get_modelmeta().custom_metadata_map["classes"] == "bg,a,b,c,d"


def test_bad_arguments(model: nn.Module, tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nope\.onnx"):
        check_onnx(model, tmp_path / "nope.onnx", torch.zeros(1, 3, 64, 64))
    with pytest.raises(ValueError, match="sample_size"):
        to_onnx(model, tmp_path / "m.onnx", sample_size=(8, 8))
    assert not (tmp_path / "m.onnx").exists()
