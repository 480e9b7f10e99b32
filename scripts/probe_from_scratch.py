"""Probe: does a network trained from scratch learn a data set at all within N steps?

A plain PyTorch loop (fp32, AdamW with weight decay 1e-4, CE + soft Dice), outside Lightning and steelkd's
recipe, on steelkd's own training loader of a run config with ``--set`` overrides; it prints the losses,
the mean defect probability overall and on defect pixels every 50 steps, then the validation Dice of
class 1 (argmax, images padded to a multiple of 32). It separates "the recipe fails" from "the network
fails": the Magnetic Tile diagnosis in docs/training.md ("Recipe options") ran

    python scripts/probe_from_scratch.py r18 400 1e-3 --set data.root=../data/magnetic_tile_defect \
        "data.class_names=[background, defect]" data.batch_size=8 "data.crop=[256, 256]" \
        data.crop_on_defect=0.5
    python scripts/probe_from_scratch.py atto 400 1e-3 --set ... (the same)

``r18``: segmentation_models_pytorch's Unet on resnet18 (BatchNorm; smp is the benchmark baseline, not a
part of steelkd's models); ``atto``: steelkd's ResUnet-atto. No weights are downloaded.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from torch import nn

from steelkd.config import load_config
from steelkd.engine.datamodule import SegDataModule
from steelkd.evaluate import evaluate_model
from steelkd.losses import DiceLoss
from steelkd.models import create_model


def _network(which: str, num_classes: int) -> nn.Module:
    if which == "atto":
        return create_model("resunet_convnext_atto", num_classes=num_classes)
    import segmentation_models_pytorch as smp

    return smp.Unet("resnet18", encoder_weights=None, classes=num_classes)


class _PadTo32(nn.Module):
    """Pads the input to a multiple of 32 (smp's Unet needs it) and crops the logits back."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        return self.net(F.pad(x, (0, (-w) % 32, 0, (-h) % 32)))[..., :h, :w]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("network", choices=["atto", "r18"])
    ap.add_argument("steps", type=int)
    ap.add_argument("lr", type=float)
    ap.add_argument("--config", default="configs/neu_seg/atto.yaml")
    ap.add_argument("--set", nargs="*", default=[], dest="sets")
    args = ap.parse_args()
    torch.manual_seed(0)
    cfg = load_config(args.config, args.sets)
    dm = SegDataModule(cfg)
    net = _network(args.network, cfg.data.num_classes)
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=1e-4)
    dice, step, t0 = DiceLoss(cfg.data.num_classes), 0, time.time()
    net.train()
    while step < args.steps:
        for x, y, *_ in dm.train_dataloader():
            out = net(x)
            ce, d = F.cross_entropy(out, y), dice(out, y)
            opt.zero_grad()
            (ce + d).backward()
            opt.step()
            step += 1
            if step % 50 == 0:
                p = out.softmax(1)[:, 1].detach()
                print(f"{args.network} step {step} ce {ce.item():.3f} dice_loss {d.item():.3f} "
                      f"p_def_mean {p.mean().item():.3f} p_on_def {p[y == 1].mean().item():.3f} "
                      f"{time.time() - t0:.0f}s", flush=True)  # fmt: skip
            if step >= args.steps:
                break
    res = evaluate_model(_PadTo32(net), dm.val_ds)  # argmax at full size, dataset-level Dice
    name = cfg.data.class_names[1]
    ratio = res["pred_counts"][name] / max(1, res["pixel_counts"][name])
    print(f"{args.network} VAL dice {res['dice'][name]:.4f} pred_frac_of_gt {ratio:.2f}", flush=True)


if __name__ == "__main__":
    main()
