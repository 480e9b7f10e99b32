"""Helpers for the service tests: a deterministic pixel-wise ONNX model and images with known defects.

The model is a real ``.onnx`` file with a model card in its metadata, opened by the service through
``load_backend`` like any exported model: a 1x1 convolution whose logits make dark pixels (grey < 70)
``dark``, bright pixels (grey > 180) ``bright`` and the rest background; ``scratch`` never fires (a target
for relabelling). So an image with painted rectangles has exactly those rectangles as defects, which the
tests can check region by region (an untrained network would predict noise).
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
from PIL import Image

CLASS_NAMES = ["background", "dark", "bright", "scratch"]
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
GREY = 120  # background level
DARK, BRIGHT = 20, 240


def pixel_model(path: Path, *, postprocess: dict | None = None, gain: float = 30.0) -> Path:
    """Write the pixel-wise model (see the module docstring) as an ONNX file with its card."""
    import onnx
    from onnx import TensorProto, helper

    from steelkd.card import ONNX_CARD_KEY

    mean, std = np.array(MEAN), np.array(STD)
    m = float(mean.mean())

    def line(slope: float, at: float) -> tuple[np.ndarray, float]:
        # logit = slope * (v/255 - at/255); the input is x_c = (v/255 - mean_c) / std_c, so
        # sum_c (std_c * slope / 3) x_c = slope * (v/255 - mean(mean_c)).
        return std * slope / 3, slope * (m - at / 255)

    rows = [(np.zeros(3), 0.0), line(-gain, 70), line(gain, 180), (np.zeros(3), -50.0)]
    weight = np.stack([r[0] for r in rows]).astype(np.float32).reshape(4, 3, 1, 1)
    bias = np.array([r[1] for r in rows], np.float32)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["input", "w", "b"], ["logits"])],
        "pixel",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["n", 3, "h", "w"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["n", 4, "h", "w"])],
        [helper.make_tensor("w", TensorProto.FLOAT, weight.shape, weight.ravel()),
         helper.make_tensor("b", TensorProto.FLOAT, bias.shape, bias)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    card = {"architecture": "pixel-threshold", "class_names": CLASS_NAMES, "num_classes": 4,
            "normalization": {"mean": list(MEAN), "std": list(STD), "scale": 255.0},
            "postprocess": postprocess if postprocess is not None else {"threshold": 0.5, "min_area": 0}}
    helper.set_model_props(model, {ONNX_CARD_KEY: json.dumps(card)})
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def frame(boxes: list[tuple[int, int, int, int, int]], h: int = 64, w: int = 256) -> np.ndarray:
    """An RGB grey frame with rectangles ``(x, y, w, h, level)`` painted in."""
    img = np.full((h, w), GREY, np.uint8)
    for x, y, bw, bh, level in boxes:
        img[y : y + bh, x : x + bw] = level
    return np.repeat(img[:, :, None], 3, axis=2)


def png_bytes(image: np.ndarray) -> bytes:
    """PNG file bytes of an RGB array."""
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


#: Two defects: a dark one (class 1) and a bright one (class 2).
TWO_DEFECTS = [(10, 10, 20, 12, DARK), (100, 30, 40, 20, BRIGHT)]
