"""Anchor: segmentation_models_pytorch's Unet on a role's encoder, trained as the experiment trains the role.

Does steelkd's ResUnet match the U-Net a user would pick first, smp's ``Unet("tu-<encoder>")`` on the
same timm encoder, when both learn with the same recipe? This script takes a role's run config from an
experiment preset (data, recipe, seed: what the experiment trains), swaps the network for smp's Unet on
that role's encoder (no weights downloaded; inputs padded to a multiple of 32, logits cropped back),
trains it with steelkd's own training (``steelkd.engine.fit``: the same loaders, loss, schedule,
precision, checkpoint chosen on validation mDice), scores it once on the test split, and writes
``<out>/<name>.json`` and ``<out>/anchor.md`` (every anchor in ``<out>``) beside the experiment's own runs
of that role and seed (test mDice, epochs, CPU seconds per epoch and the hardware each was timed on, read
from the experiment's ``results.json``; a cost ratio only between runs timed on the same hardware).
smp is the benchmark baseline, not a part of steelkd's models: it is registered in this process only.

    python scripts/smp_anchor.py --config configs/experiments/neu_seg.yaml --role student --seed 0 \\
        --runs ../study_out/smp_anchor --out results/neu_seg/anchor
    python scripts/smp_anchor.py --config configs/experiments/neu_seg.yaml --out results/neu_seg/anchor \\
        --table-only   # anchor.md again from the anchors' JSON and the experiment's results.json as it is now

Resumes from ``<runs>/<name>/checkpoints/last.ckpt`` when it exists.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from steelkd.config import apply_overrides, config_from_dict
from steelkd.data import build_datasets
from steelkd.engine import fit
from steelkd.evaluate import evaluate_model
from steelkd.experiment.config import load_experiment_config, run_config
from steelkd.experiment.results import kept_log
from steelkd.figures import read_val_curve
from steelkd.io import atomic_write_text
from steelkd.models import load_model
from steelkd.models.base import SegmentationModel
from steelkd.models.registry import list_models, register
from steelkd.runtime import device_name


class SmpUnet(SegmentationModel):
    """``smp.Unet("tu-<encoder>")`` behind steelkd's forward contract (logits at the input size).

    Example:
        >>> SmpUnet("convnext_atto", 4)(torch.zeros(1, 3, 200, 200)).shape  # doctest: +SKIP
        torch.Size([1, 4, 200, 200])
    """

    def __init__(self, encoder: str, num_classes: int) -> None:
        import segmentation_models_pytorch as smp

        super().__init__()
        self.net = smp.Unet(f"tu-{encoder}", encoder_weights=None, classes=num_classes)
        self.name, self.num_classes = f"smp_unet_{encoder}", num_classes
        self.decoder_channels, self.model_kwargs = (16,), {}

    def forward(self, x: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        if return_features:
            raise ValueError(f"{self.name} is a baseline anchor: it has no features to distil")
        h, w = x.shape[-2:]
        return self.net(F.pad(x, (0, (-w) % 32, 0, (-h) % 32)))[..., :h, :w]


def register_anchor(encoder: str) -> str:
    """Register ``smp_unet_<encoder>`` in steelkd's registry (this process only); returns the name."""
    name = f"smp_unet_{encoder}"
    if name in list_models():
        return name

    @register(name)
    def _factory(num_classes: int = 5, pretrained: bool = False, **kw: Any) -> SegmentationModel:
        if pretrained or kw:
            raise ValueError(f"{name}: trained from scratch with smp's defaults only ({pretrained=}, {kw})")
        return SmpUnet(encoder, num_classes)

    return name


def _encoder(model_name: str) -> str:
    """``resunet_convnext_femto_gc_ff`` -> ``convnext_femto``: the timm encoder of a ResUnet."""
    body = model_name.removeprefix("resunet_")
    return body.removesuffix("_gc_ff")


def _experiment_runs(results: Path, role: str, seed: int) -> list[dict[str, Any]]:
    """The experiment's baseline and timing runs of ``role`` and ``seed`` in its ``results.json``, each
    with its best validation mDice from the log the experiment keeps (``<results dir>/logs/<run>.csv``)."""
    if not results.is_file():
        return []
    runs = json.loads(results.read_text())["runs"]
    keep = ("baseline", "baseline_timing")
    mine = [r for r in runs if r["model_role"] == role and r["seed"] == seed and r["kind"] in keep]
    for r in mine:
        log = kept_log(results.parent, r["run"])
        if log.is_file():
            r["best_val_mdice"] = float(read_val_curve(log)["val/mdice"].max())
    return mine


def _cpu_per_epoch(r: dict[str, Any]) -> float | None:
    return r["cpu_seconds"] / r["epochs"] if r.get("cpu_seconds") else None


def _row(label: str, r: dict[str, Any], anchor: dict[str, Any]) -> str:
    """One table row; its cost against the anchor's only when both were timed on the same hardware."""
    per_epoch, theirs = _cpu_per_epoch(r), _cpu_per_epoch(anchor)
    same = r.get("hardware") and r.get("hardware") == anchor.get("hardware")
    ratio = f"{per_epoch / theirs:.2f}" if same and per_epoch and theirs else "—"
    val = f"{r['best_val_mdice']:.4f}" if r.get("best_val_mdice") is not None else "—"
    return (
        f"| {label} | {r['model']} | {r['epochs']} | {val} | {r['mdice']:.4f} | {r['miou_bg']:.4f} | "
        f"{f'{per_epoch:.1f}' if per_epoch else '—'} | {ratio} | {r.get('hardware') or '?'} |"
    )


def write_markdown(out: Path, results: Path) -> Path:
    """``anchor.md``: every anchor in ``out`` beside the experiment's runs of its role and seed."""
    lines = [
        "# smp Unet anchors",
        "",
        "Written by `scripts/smp_anchor.py` (its docstring says how). Each anchor is smp's "
        "`Unet(\"tu-<encoder>\")` trained with its role's run config of the experiment; beside it the "
        "experiment's own runs of that role and seed from `results.json` (`baseline_timing`: the same "
        "baseline trained again on another machine for its seconds). CPU seconds per epoch compare only "
        "between rows timed on the same hardware (cost / anchor: — where they were not).",
        "",
        "| run | model | epochs | best val mDice | test mDice | test mIoU incl. bg | CPU s / epoch "
        "| cost / anchor | hardware |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for path in sorted(out.glob("smp_unet_*.json")):
        a = json.loads(path.read_text())
        lines.append(_row(f"anchor {a['role']} seed {a['seed']}", a, a))
        for r in _experiment_runs(results, a["role"], a["seed"]):
            lines.append(_row(f"{r['kind']} {r['run']}", r, a))
    dest = out / "anchor.md"
    atomic_write_text(dest, "\n".join(lines) + "\n")
    return dest


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True, help="experiment preset YAML")
    ap.add_argument("--role", default="student", help="the model role whose run config is used")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--runs", default="../study_out/smp_anchor", help="where it trains (not committed)")
    ap.add_argument("--out", required=True, help="where the anchor's JSON and anchor.md go")
    ap.add_argument("--results", default="", help="the experiment's results.json (default: <out>/../)")
    ap.add_argument("--set", nargs="*", default=[], dest="sets", help="run-config overrides KEY=VALUE")
    ap.add_argument(
        "--table-only", action="store_true", help="train nothing: rewrite anchor.md from --out's anchors"
    )
    args = ap.parse_args()
    out = Path(args.out)
    results = Path(args.results) if args.results else out.parent / "results.json"
    if args.table_only:
        print(write_markdown(out, results).read_text())
        return

    cfg = load_experiment_config(args.config)
    run_cfg = run_config(cfg, args.role, seed=args.seed)
    if args.sets:
        run_cfg = config_from_dict(apply_overrides(run_cfg.to_dict(), args.sets))
    name = register_anchor(_encoder(run_cfg.model.name))
    run_cfg.model.name, run_cfg.model.kwargs = name, {}
    run_dir = Path(args.runs) / f"{name}_{args.role}_s{args.seed}"
    run_cfg.train.out_dir = str(run_dir)
    last = run_dir / "checkpoints" / "last.ckpt"
    result = fit(run_cfg, progress=False, resume=str(last) if last.is_file() else None)
    curve = read_val_curve(result.metrics_csv)
    model = load_model(result.model_dir)[0]
    test = build_datasets(run_cfg.data).test
    metrics = evaluate_model(
        model, test, batch_size=cfg.evaluate.batch_size, device="cpu", precision=cfg.evaluate.precision
    )
    record = {
        "run": run_dir.name,
        "model": name,
        "role": args.role,
        "seed": args.seed,
        "epochs": run_cfg.train.epochs,
        "best_val_mdice": float(curve["val/mdice"].max()),
        "best_epoch": int(curve.loc[curve["val/mdice"].idxmax(), "epoch"]) + 1,
        "val_mdice_per_epoch": [round(float(v), 4) for v in curve["val/mdice"]],
        "wall_seconds": result.seconds,
        "cpu_seconds": result.cpu_seconds,
        "hardware": device_name("cpu"),
        "params": sum(p.numel() for p in model.parameters()),
        "mdice": metrics["mdice"],
        "miou_bg": metrics["miou_bg"],
        "dice": metrics["dice"],
        "config": run_cfg.to_dict(),
    }
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / f"{run_dir.name}.json", json.dumps(record, indent=2, default=str) + "\n")
    print(write_markdown(out, results).read_text())


if __name__ == "__main__":
    main()
