"""train.compile: the student's forward is compiled in place when training starts; the state dict is
unchanged."""

from __future__ import annotations

import torch

from steelkd.config import Config
from steelkd.engine.segmenter import SegmenterModule


def _module(compile_: bool) -> SegmenterModule:
    cfg = Config()
    cfg.model.name = "resunet_convnext_atto"
    cfg.data.class_names = ["background", "a", "b"]
    cfg.train.class_weights = [1.0, 1.0, 1.0]
    cfg.train.compile = compile_
    torch.manual_seed(0)
    return SegmenterModule(cfg.to_dict())


def test_compile_is_in_place_and_keeps_the_state_dict() -> None:
    torch._dynamo.reset()  # no compiled state from earlier tests in this process
    eager, compiled = _module(False), _module(True)
    eager.on_fit_start()
    compiled.on_fit_start()
    assert eager.model._compiled_call_impl is None
    assert compiled.model._compiled_call_impl is not None
    assert list(compiled.state_dict()) == list(eager.state_dict())  # no _orig_mod. prefix: checkpoints load
    x = torch.randn(2, 3, 64, 64)  # the training mode and shapes train.compile runs in
    torch.testing.assert_close(compiled.model(x), eager.model(x), rtol=1e-3, atol=1e-3)
