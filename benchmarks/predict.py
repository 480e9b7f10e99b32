"""End-to-end batch-prediction speed: PyTorch fp32, PyTorch bf16 autocast and ONNX Runtime, in one run.

"End to end" is what ``steelkd predict`` does per image: read the JPEG, normalise, infer, softmax,
threshold + minimum area, RLE for the submission, write the mask PNG and the overlay, write
``submission.csv``. Synthetic 256 x 1600 Severstal-layout JPEGs (``steelkd.data.synth``) and an
untrained network of the named architecture (speed does not depend on the weights; the post-processing
cost does a little, through the predicted areas). Each backend first runs one warm-up batch.

Example:
    .venv/bin/python benchmarks/predict.py                       # resunet_convnext_tiny, 16 images
    .venv/bin/python benchmarks/predict.py --model resunet_convnext_atto --images 8 --batch-size 2
    .venv/bin/python benchmarks/predict.py --device cuda --images 64 --batch-size 8 --json out.json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from steelkd.config import SEVERSTAL_CLASSES
from steelkd.data.image import read_image
from steelkd.data.synth import generate
from steelkd.export import to_onnx
from steelkd.io import atomic_write_text
from steelkd.models import create_model, make_card, save_model
from steelkd.predict import PostProcess, Predictor, resolve_inputs
from steelkd.runtime import device_name


class TimedBackend:
    """Wrap a backend and add up the seconds spent inside ``logits = f(batch)``."""

    def __init__(self, backend: Any) -> None:
        self.backend = backend
        self.card = backend.card
        self.name = backend.name
        self.seconds = 0.0

    def __call__(self, batch: Any) -> Any:
        t0 = time.perf_counter()
        out = self.backend(batch)
        self.seconds += time.perf_counter() - t0
        return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="resunet_convnext_tiny", help="architecture, built untrained")
    p.add_argument("--images", type=int, default=16, help="number of synthetic 256x1600 images")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--device", default="cpu", help="cpu or cuda (bf16 autocast runs on either)")
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0 = torch's default)")
    p.add_argument("--backends", default="torch-fp32,torch-bf16,onnxruntime",
                   help="comma-separated subset of torch-fp32, torch-bf16, onnxruntime")
    p.add_argument("--tta", action="store_true", help="flip TTA (3 forward passes per image)")
    p.add_argument("--threshold", default="0.5",
                   help="post-processing threshold, or 'argmax' (an untrained network then labels most "
                   "pixels as defects: the worst case for RLE and overlays)")
    p.add_argument("--json", default="", help="also write the results as JSON here")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = set(backends) - {"torch-fp32", "torch-bf16", "onnxruntime"}
    if unknown:
        print(f"error: unknown backend(s) {sorted(unknown)}", file=sys.stderr)
        return 1
    rows: list[dict[str, Any]] = []
    post = (PostProcess(threshold=None, min_area=0) if args.threshold == "argmax"
            else PostProcess(threshold=float(args.threshold)))
    with tempfile.TemporaryDirectory(prefix="steelkd_bench_predict_") as tmp:
        root = Path(tmp)
        generate(root / "data", n=args.images, seed=0)
        images = root / "data" / "train_images"
        model = create_model(args.model, num_classes=len(SEVERSTAL_CLASSES)).eval()
        card = make_card(model, SEVERSTAL_CLASSES)
        model_dir = save_model(model, root / "model", card)
        onnx_path = None
        if "onnxruntime" in backends:
            t0 = time.perf_counter()
            onnx_path = to_onnx(model, root / "model.onnx", card=card)
            print(f"exported ONNX in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        warm = [read_image(p) for p in resolve_inputs(images)[: args.batch_size]]
        for name in backends:
            if name == "onnxruntime":
                predictor = Predictor.from_path(onnx_path, backend="onnxruntime", device=args.device,
                                                batch_size=args.batch_size, tta=args.tta, post=post)
            else:
                predictor = Predictor.from_path(model_dir, backend="torch", device=args.device,
                                                bf16=name == "torch-bf16", batch_size=args.batch_size,
                                                tta=args.tta, post=post)
            predictor.predict_arrays(warm)  # warm-up: allocator, oneDNN/ORT kernel selection
            timed = TimedBackend(predictor.backend)
            predictor.backend = timed
            report = predictor.predict_files(images, root / f"out_{name}")
            n = max(1, len(report.results))
            rows.append({"backend": name, "images": len(report.results), "seconds": report.seconds,
                         "images_per_second": report.images_per_second,
                         "ms_per_image": 1000 * report.seconds / n,
                         "model_ms_per_image": 1000 * timed.seconds / n,
                         "model_share": timed.seconds / report.seconds})
            print(f"{name}: {report.images_per_second:.2f} img/s", file=sys.stderr)
    meta = {"model": args.model, "size": "256x1600", "batch_size": args.batch_size, "tta": args.tta,
            "threshold": args.threshold, "device": device_name(args.device),
            "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "python": platform.python_version()}
    print(f"\nbatch prediction end to end, {args.model}, {args.images} synthetic 256x1600 JPEGs, "
          f"batch {args.batch_size}{', flip TTA' if args.tta else ''}, threshold {args.threshold}, "
          f"{meta['device']}, "
          f"{meta['torch_threads']} torch threads\n")
    print("| backend | images/s | ms/image | of which model forward (ms) |")
    print("| --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['backend']} | {r['images_per_second']:.2f} | {r['ms_per_image']:.0f} | "
              f"{r['model_ms_per_image']:.0f} ({100 * r['model_share']:.0f}%) |")
    if args.json:
        atomic_write_text(args.json, json.dumps({"meta": meta, "results": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
