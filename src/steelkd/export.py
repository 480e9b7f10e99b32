"""Export of a segmentation model (plain forward: image -> logits): ONNX, OpenVINO IR (fp32 or int8).

The model card goes into the file as the metadata entry :data:`steelkd.card.ONNX_CARD_KEY`
(a JSON string), which :class:`steelkd.predict.OnnxBackend` reads back.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import sys
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from steelkd.card import ONNX_CARD_KEY, OPENVINO_CARD_PATH
from steelkd.io import atomic_path
from steelkd.runtime import require_extra

INPUT_NAME = "image"
OUTPUT_NAME = "logits"


class _LogitsOnly(nn.Module):
    """Wrap a model so the exported graph has exactly one input and one output."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def to_onnx(
    model: nn.Module,
    path: str | Path,
    opset: int = 17,
    metadata: dict[str, str] | None = None,
    sample_size: tuple[int, int] = (256, 256),
    card: dict[str, Any] | None = None,
) -> Path:
    """Export ``model``'s plain forward to ONNX with dynamic batch, height and width.

    Uses the legacy TorchScript exporter (``dynamo=False``). Input ``image`` (``N x 3 x H x W``, float32,
    normalised), output ``logits`` (``N x C x H x W``). The file is written atomically; ``metadata`` and
    the ``card`` go into the model's ``metadata_props`` (read back with ``onnxruntime``'s
    ``get_modelmeta().custom_metadata_map``).

    Args:
        model: a segmentation model (left in its original train/eval mode and device afterwards).
        path: output ``.onnx`` file.
        opset: ONNX opset version.
        metadata: string key/value pairs to embed (e.g. class names, normalisation as JSON).
        sample_size: ``(H, W)`` of the dummy input used for tracing; any size works afterwards.
        card: the model card (:func:`steelkd.models.make_card`), stored as JSON under
            :data:`~steelkd.card.ONNX_CARD_KEY` so that ``steelkd predict`` can run the file.

    Returns:
        The path written.

    Example:
        >>> from steelkd.models import create_model, make_card
        >>> model = create_model("resunet_convnext_atto")
        >>> to_onnx(model, "model.onnx", card=make_card(model, ["bg", "a", "b", "c", "d"]))  # doctest: +SKIP
    """
    import onnx

    path = Path(path)
    h, w = (int(s) for s in sample_size)
    if h < 32 or w < 32:
        raise ValueError(f"sample_size must be at least 32x32, got {sample_size}")
    props = {str(k): str(v) for k, v in (metadata or {}).items()}
    if card is not None:
        props[ONNX_CARD_KEY] = json.dumps(card, default=str)
    was_training = model.training
    device = next(model.parameters()).device
    wrapper = _LogitsOnly(model).eval()
    x = torch.randn(1, 3, h, w, device=device)
    dyn = {0: "batch", 2: "height", 3: "width"}
    try:
        with atomic_path(path) as tmp, warnings.catch_warnings():
            warnings.simplefilter("ignore", category=torch.jit.TracerWarning)
            warnings.simplefilter("ignore", category=DeprecationWarning)  # legacy exporter, on purpose
            torch.onnx.export(
                wrapper,
                (x,),
                str(tmp),
                dynamo=False,
                opset_version=opset,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_axes={INPUT_NAME: dyn, OUTPUT_NAME: dyn},
                do_constant_folding=True,
            )
            proto = onnx.load(str(tmp))
            for key, value in props.items():
                entry = proto.metadata_props.add()
                entry.key = key
                entry.value = value
            onnx.checker.check_model(proto)
            onnx.save(proto, str(tmp))
    finally:
        model.train(was_training)
    return path


def check_onnx(model: nn.Module, path: str | Path, x: torch.Tensor) -> float:
    """Max absolute difference between ``model(x)`` (PyTorch, eval mode) and ONNX Runtime on CPU.

    Args:
        model: the PyTorch model the file was exported from.
        path: the ``.onnx`` file.
        x: an input batch ``N x 3 x H x W`` (any size: proves the dynamic axes).

    Returns:
        ``max |torch - onnxruntime|`` over all logits.

    Example:
        >>> diff = check_onnx(model, "model.onnx", torch.randn(1, 3, 96, 160))  # doctest: +SKIP
        >>> diff < 1e-4  # doctest: +SKIP
        True
    """
    import onnxruntime as ort

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ONNX file not found: {path}")
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            ref = model(x).float().cpu().numpy()
    finally:
        model.train(was_training)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (out,) = sess.run([OUTPUT_NAME], {INPUT_NAME: x.detach().float().cpu().numpy()})
    if out.shape != ref.shape:
        raise ValueError(
            f"{path}: ONNX output shape {out.shape} != PyTorch {ref.shape} for input {tuple(x.shape)}"
        )
    return float(np.max(np.abs(out - ref)))


def to_openvino(
    model: nn.Module,
    path: str | Path,
    card: dict[str, Any],
    *,
    calibration: Sequence[np.ndarray] | None = None,
    sample_size: tuple[int, int] = (256, 256),
) -> Path:
    """Export ``model`` to an OpenVINO IR (``.xml`` + ``.bin``, dynamic N/H/W), int8 when calibrated.

    The graph goes through ONNX (:func:`to_onnx`, the same graph ONNX Runtime runs) and is read by
    OpenVINO; the card is stored in the IR's ``rt_info`` (:data:`OPENVINO_CARD_PATH`). With
    ``calibration`` (normalised ``3 x H x W`` float32 training images, e.g. 100-300 of them) the IR is
    quantised to int8 by NNCF post-training quantisation (per-channel weights, the mixed preset keeps
    activations asymmetric); without it the weights stay fp32 (the precision is chosen when the model is
    compiled, see :class:`steelkd.predict.OpenVinoBackend`).

    Args:
        model: the segmentation model.
        path: the output ``.xml`` (the ``.bin`` is written beside it).
        card: the model card (:func:`steelkd.models.make_card`).
        calibration: images for int8 calibration, or ``None`` for an fp32 IR.
        sample_size: ``(H, W)`` of the tracing input.

    Raises:
        ValueError: openvino (or nncf, for int8) is not installed (``pip install 'steelkd[openvino]'``),
            a bad path, or an empty calibration set.

    Example:
        >>> to_openvino(model, "int8/model.xml", card, calibration=images)  # doctest: +SKIP
    """
    ov = require_extra("openvino", "openvino")
    path = Path(path)
    if path.suffix.lower() != ".xml":
        raise ValueError(f"{path}: an OpenVINO model is a .xml file (with its .bin beside it)")
    if calibration is not None and len(calibration) == 0:
        raise ValueError("int8 calibration needs at least one image")
    nncf = require_extra("nncf", "openvino") if calibration is not None else None
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = to_onnx(model, Path(tmp) / "model.onnx", sample_size=sample_size)
        ov_model = ov.Core().read_model(str(onnx_path))
        if nncf is not None:
            data = nncf.Dataset(list(calibration), lambda x: np.ascontiguousarray(x[None], np.float32))
            with contextlib.redirect_stdout(sys.stderr):  # NNCF's progress bars are not the caller's output
                ov_model = nncf.quantize(
                    ov_model, data, preset=nncf.QuantizationPreset.MIXED, subset_size=len(calibration)
                )
        ov_model.set_rt_info(json.dumps(card, default=str), list(OPENVINO_CARD_PATH))
        path.parent.mkdir(parents=True, exist_ok=True)
        staged = Path(tmp) / "staged.xml"
        ov.save_model(ov_model, str(staged), compress_to_fp16=False)
        with atomic_path(path.with_suffix(".bin")) as bin_tmp:
            shutil.copyfile(staged.with_suffix(".bin"), bin_tmp)
        with atomic_path(path) as xml_tmp:
            shutil.copyfile(staged, xml_tmp)
    return path
