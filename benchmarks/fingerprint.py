"""Fingerprint of a short seeded training, distillation, evaluation and prediction run.

Runs only the command line (``steelkd train``, ``distill``, ``evaluate``, ``predict``, ``export``), so the
same script works before and after a refactor of the library, and prints (and writes) SHA-256 digests of
the trained weights, the logged metrics, the evaluation JSON and every predicted mask. Two runs of the same
code on the same machine give the same digests; a refactor that changes no result gives the same digests
as the code before it. (Digests are machine-specific: CPU kernels differ between CPU models.)

Usage:
    python benchmarks/fingerprint.py --work /tmp/fp_before --out /tmp/fp_before.json
    python benchmarks/fingerprint.py --work /tmp/fp_after --out /tmp/fp_after.json
    diff /tmp/fp_before.json /tmp/fp_after.json && echo identical
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

from safetensors.numpy import load_file

COMMON = [
    "data.kind=synth",
    "data.synth_n=40",
    "data.crop=[64,128]",
    "data.batch_size=4",
    "data.num_workers=0",
    "train.epochs=2",
    "train.lr=1e-3",
    "train.scheduler=cosine",
    "train.precision=32",
    "train.accelerator=cpu",
    "train.seed=3",
]


def _steelkd(*args: str) -> None:
    """Run ``steelkd ARGS``; a ``--set`` followed by several ``k=v`` values is expanded per value."""
    argv: list[str] = []
    in_set = False
    for a in args:
        if a == "--set":
            in_set = True
            continue
        if in_set and "=" in a and not a.startswith("-"):
            argv += ["--set", a]
            continue
        in_set = False
        argv.append(a)
    exe = Path(sys.executable).with_name("steelkd")
    subprocess.run([str(exe), *argv], check=True, stdout=subprocess.DEVNULL)


def _weights_digest(model_dir: Path) -> str:
    state = load_file(str(model_dir / "model.safetensors"))
    h = hashlib.sha256()
    for k in sorted(state):
        h.update(k.encode())
        h.update(state[k].tobytes())
    return h.hexdigest()[:16]


def _metrics_digest(metrics_csv: Path) -> str:
    with metrics_csv.open() as f:
        rows = [{k: v for k, v in r.items() if k.startswith(("train/", "val/", "lr", "epoch", "step"))}
                for r in csv.DictReader(f)]
    return hashlib.sha256(json.dumps(rows, sort_keys=True).encode()).hexdigest()[:16]


def _files_digest(path: Path) -> str:
    h = hashlib.sha256()
    for p in [path] if path.is_file() else sorted(path.rglob("*")):
        if p.is_file():
            h.update(p.name.encode())
            h.update(p.read_bytes())
    return h.hexdigest()[:16]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/steelkd_fingerprint"))
    ap.add_argument("--out", type=Path, default=None, help="write the digests as JSON here too")
    args = ap.parse_args()
    work = args.work
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    cfg = Path(__file__).resolve().parents[1] / "configs" / "synth_quick.yaml"
    data = [f"data.root={work / 'data'}"]
    teacher, student, kd, kd_low, kd_feat = (
        work / n for n in ("teacher", "student", "kd", "kd_logits_low", "kd_features")
    )
    _steelkd("train", "--config", str(cfg), "--out", str(teacher), "--set", *COMMON, *data,
             "--set", "model.name=resunet_convnext_atto_gc_ff")
    _steelkd("train", "--config", str(cfg), "--out", str(student), "--set", *COMMON, *data)
    _steelkd("distill", "--config", str(cfg), "--out", str(kd), "--set", *COMMON, *data,
             "--set", f"distill.teacher={teacher / 'model'}")
    for run, where in ((kd_low, "logits_low"), (kd_feat, "features")):
        _steelkd("distill", "--config", str(cfg), "--out", str(run), "--set", *COMMON, *data,
                 "--set", f"distill.teacher={teacher / 'model'}", "--set", f"distill.where={where}")
    out: dict[str, str] = {}
    for run in (teacher, student, kd, kd_low, kd_feat):
        out[f"{run.name}.weights"] = _weights_digest(run / "model")
        out[f"{run.name}.metrics_csv"] = _metrics_digest(run / "logs" / "metrics.csv")
        out[f"{run.name}.best_metrics"] = json.dumps(json.loads((run / "best_metrics.json").read_text()),
                                                     sort_keys=True)
    ev = work / "eval.json"
    _steelkd("evaluate", "--model", str(kd / "model"), "--config", str(cfg), "--set", *COMMON, *data,
             "--device", "cpu", "--out", str(ev))
    metrics = json.loads(ev.read_text())
    for key in ("seconds", "model", "data"):  # wall time and the paths of this run's work folder
        metrics.pop(key, None)
    out["evaluate"] = hashlib.sha256(json.dumps(metrics, sort_keys=True).encode()).hexdigest()[:16]
    images = work / "data" / "train_images"
    _steelkd("predict", "--model", str(kd / "model"), "--input", str(images), "--out", str(work / "pred"),
             "--tta")
    out["predict.masks"] = _files_digest(work / "pred" / "masks")
    out["predict.submission"] = _files_digest(work / "pred" / "submission.csv")
    onnx = work / "kd.onnx"
    _steelkd("export", "--model", str(kd / "model"), "--out", str(onnx))
    _steelkd("predict", "--model", str(onnx), "--input", str(images), "--out", str(work / "pred_onnx"))
    out["predict_onnx.masks"] = _files_digest(work / "pred_onnx" / "masks")
    text = json.dumps(out, indent=2, sort_keys=True)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
