"""Helpers for the deployment tests: synthetic defect images and a tiny model trained once per session.

The model is cached on disk under pytest's session base temp directory so that both
``test_predict.py`` and ``test_cli_deploy.py`` reuse one training run (a fixture imported into two modules
would be built twice).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

CLASS_NAMES = ["background", "pitting", "crazing", "scratches", "patches"]
#: Mean grey level of each class in the synthetic images (background first): easy to learn quickly.
LEVELS = (120, 25, 235, 60, 185)
MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)


def synth_sample(rng: np.random.Generator, h: int = 64, w: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """One grey steel-like image (H x W uint8) with 1-3 rectangular defects, and its label map."""
    img = rng.normal(LEVELS[0], 6, (h, w))
    label = np.zeros((h, w), np.uint8)
    for _ in range(rng.integers(1, 4)):
        c = int(rng.integers(1, 5))
        dh, dw = int(rng.integers(h // 5, h // 2)), int(rng.integers(w // 10, w // 3))
        y, x = int(rng.integers(0, h - dh)), int(rng.integers(0, w - dw))
        img[y : y + dh, x : x + dw] = rng.normal(LEVELS[c], 6, (dh, dw))
        label[y : y + dh, x : x + dw] = c
    return np.clip(img, 0, 255).astype(np.uint8), label


def write_images(folder: Path, n: int, seed: int, *, h: int = 64, w: int = 256, ext: str = ".png",
                 rgb: bool = False, prefix: str = "img") -> list[tuple[Path, np.ndarray]]:
    """Write ``n`` synthetic images to ``folder``; return (path, true label map) pairs."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        img, label = synth_sample(rng, h, w)
        arr = np.stack([img] * 3, axis=2) if rgb else img
        path = folder / f"{prefix}{i:03d}{ext}"
        kwargs = {"quality": 95} if ext in (".jpg", ".jpeg") else {}
        Image.fromarray(arr).save(path, **kwargs)
        out.append((path, label))
    return out


def train_tiny_model(out_dir: Path, steps: int = 24, batch: int = 4, seed: int = 0) -> Path:
    """Train ``resunet_convnext_atto`` for a few dozen steps on synthetic 64x128 images and save it."""
    from steelkd.models import create_model
    from steelkd.models.saved import make_card, save_model

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = create_model("resunet_convnext_atto", num_classes=5)
    opt = torch.optim.AdamW(model.parameters(), lr=4e-3, weight_decay=0.0)
    weight = torch.tensor([0.3, 1.0, 1.0, 1.0, 1.0])
    model.train()
    for _ in range(steps):
        pairs = [synth_sample(rng, 64, 128) for _ in range(batch)]
        x = np.stack([np.stack([p[0]] * 3, axis=-1) for p in pairs]).astype(np.float32) / 255.0
        x = torch.from_numpy(((x - MEAN) / STD).transpose(0, 3, 1, 2).copy())
        y = torch.from_numpy(np.stack([p[1] for p in pairs]).astype(np.int64))
        loss = torch.nn.functional.cross_entropy(model(x), y, weight=weight)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    return save_model(model, out_dir, make_card(model, CLASS_NAMES))


def tiny_model_dir(tmp_path_factory) -> Path:  # type: ignore[no-untyped-def]
    """The session's trained tiny model directory (trained on first use, then reused)."""
    root = tmp_path_factory.getbasetemp() / "deploy_tiny_model"
    if not (root / "model.json").exists():
        train_tiny_model(root)
    return root


def tiny_onnx(tmp_path_factory) -> Path:  # type: ignore[no-untyped-def]
    """The tiny model exported to ONNX with its card as metadata (exported on first use)."""
    from steelkd.export import to_onnx
    from steelkd.models.saved import load_model

    path = tmp_path_factory.getbasetemp() / "deploy_tiny_model.onnx"
    if not path.exists():
        model, card = load_model(tiny_model_dir(tmp_path_factory))
        to_onnx(model, path, card=card, sample_size=(64, 128))
    return path
