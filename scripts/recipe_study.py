"""Recipe study: train variants of one run config and compare them on the validation split only.

Every choice of a training recipe (class weights, Dice, EMA, schedule, crop, scale jitter...) is made on the
validation split carved from the training images (``data.val_fraction``); the test split is never read
here. A study file (YAML) names a base run config and the variants, each a list of ``--set`` overrides:

    base: configs/neu_seg/atto.yaml
    out: /work/study_out/recipe_neu_seg      # run folders (never committed)
    sets: [train.epochs=6]                    # optional: overrides of every variant, before its own
    variants:
      ce_median_freq: [train.class_weights=median_freq]
      ce_plain: [train.class_weights=none]

    python scripts/recipe_study.py configs/studies/recipe_neu_seg.yaml --report results/neu_seg/recipe
    python scripts/recipe_study.py STUDY.yaml --only ce_plain      # one variant (resumes a killed run)

Each variant trains with :func:`steelkd.engine.fit` into ``<out>/<variant>`` (skipped when its
``best_metrics.json`` exists; resumed from ``last.ckpt`` when one is there), then the report folder gets
``recipe.md`` (a table of the best validation metrics, epoch and minutes of every finished variant),
``recipe.json``, ``recipe_curves.png`` (validation mDice per epoch and per minute) and
``curves/<variant>.csv`` (each variant's validation curve). Run folders do not outlive a machine, the report
folder is committed: a variant whose run folder is absent keeps its row of the earlier ``recipe.json`` and its
curve file (when its overrides are unchanged), so a study grows over sessions without retraining.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import pandas as pd

from steelkd.config import load_config, read_yaml_mapping
from steelkd.io import atomic_write_text


def _variants(study: dict[str, Any], only: list[str]) -> dict[str, list[str]]:
    variants = {str(k): [str(s) for s in (v or [])] for k, v in (study.get("variants") or {}).items()}
    unknown = [name for name in only if name not in variants]
    if unknown:
        raise SystemExit(f"error: unknown variant {unknown[0]} (known: {', '.join(variants)})")
    return {k: v for k, v in variants.items() if not only or k in only}


def _common(study: dict[str, Any]) -> list[str]:
    """The ``sets:`` of the study: overrides applied to every variant before its own."""
    return [str(s) for s in (study.get("sets") or [])]


def train_variant(base: str, out: Path, name: str, sets: list[str]) -> None:
    """Train one variant into ``out/name`` unless it is finished; resume from its last checkpoint."""
    from steelkd.engine import fit
    from steelkd.runtime import device_name

    run = out / name
    if (run / "best_metrics.json").is_file():
        print(f"[{name}] done already")
        return
    cfg = load_config(base, [*sets, f"train.out_dir={run}", f"name={name}"])
    last = run / "checkpoints" / "last.ckpt"
    print(f"[{name}] {'resume' if last.is_file() else 'train'}: {' '.join(sets) or '(base)'}", flush=True)
    t0 = time.perf_counter()
    fit(cfg, progress=False, resume=str(last) if last.is_file() else None)
    seconds = time.perf_counter() - t0
    prior = json.loads((run / "study_run.json").read_text()) if (run / "study_run.json").is_file() else {}
    info = {"variant": name, "sets": sets, "seconds": prior.get("seconds", 0.0) + seconds,
            "machine": device_name("cpu")}  # fmt: skip
    atomic_write_text(run / "study_run.json", json.dumps(info, indent=2) + "\n")


def _measured(run: Path, name: str, sets: list[str]) -> tuple[dict[str, Any], pd.DataFrame]:
    """The row and the validation curve of a variant finished in ``run``."""
    from steelkd.figures import plateau_epoch, read_val_curve
    from steelkd.runtime import device_name

    best = json.loads((run / "best_metrics.json").read_text())
    info = json.loads((run / "study_run.json").read_text()) if (run / "study_run.json").is_file() else {}
    curve = read_val_curve(run / "logs" / "metrics.csv")
    classes = load_config(run / "config.yaml").data.class_names[1:]
    row = {"variant": name, "sets": sets, "val_mdice": best["mdice"], "val_miou_bg": best["miou_bg"],
           "val_dice": dict(zip(classes, best["dice"], strict=True)), "best_epoch": best["epoch"],
           "plateau_epoch": int(curve["epoch"].iloc[plateau_epoch(curve["val/mdice"].to_numpy())]),
           "epochs": int(curve["epoch"].max()) + 1, "minutes": info.get("seconds", 0.0) / 60,
           "machine": info.get("machine") or device_name("cpu")}  # fmt: skip
    return row, curve


def _carried(dest: Path) -> dict[str, dict[str, Any]]:
    """The rows of an earlier report in ``dest`` (its ``recipe.json``), by variant."""
    path = dest / "recipe.json"
    return {r["variant"]: r for r in json.loads(path.read_text())} if path.is_file() else {}


def _rows(
    study: dict[str, Any], out: Path, dest: Path
) -> tuple[list[dict[str, Any]], dict[str, pd.DataFrame]]:
    """Every variant measured here (its run folder) or before (the report folder), with the curves kept."""
    earlier = _carried(dest)
    rows, curves = [], {}
    for name, sets in _variants(study, []).items():
        run, kept = out / name, dest / "curves" / f"{name}.csv"
        if (run / "best_metrics.json").is_file():
            row, curves[name] = _measured(run, name, sets)
        elif name in earlier and earlier[name]["sets"] == sets:
            row = {**earlier[name], "carried": True}
            if kept.is_file():
                curves[name] = pd.read_csv(kept)
        else:
            continue
        rows.append(row)
    return rows, curves


def report(study: dict[str, Any], out: Path, dest: Path) -> None:
    """Write ``recipe.md``, ``recipe.json``, ``recipe_curves.png`` and ``curves/`` of finished variants."""
    from steelkd.figures import plot_learning_curves

    rows, curves = _rows(study, out, dest)
    if not rows:
        raise SystemExit("error: no finished variant to report")
    classes = list(rows[0]["val_dice"])
    lines = [
        f"# Recipe study: {study.get('title', dest.name)}",
        "",
        f"Base config `{study['base']}`"
        + (f" with `{'`, `'.join(_common(study))}` in every variant" if _common(study) else "")
        + "; every figure is on the **validation** split (best epoch by "
        "validation mDice); the test split is not read. Plateau: first epoch at >= 95% of the best. "
        "Epochs count from 1 (epochs trained, as in the figure; `recipe.json` keeps the logged 0-based "
        "`best_epoch` and `plateau_epoch`).",
        f"Command: `python scripts/recipe_study.py {study.get('_path', 'STUDY.yaml')} --report {dest}`.",
        *([str(study["note"])] if study.get("note") else []),
        "",
        "| variant | overrides | val mDice | val mIoU incl. bg | "
        + " | ".join(f"Dice {c}" for c in classes)
        + " | best / plateau / epochs | minutes | machine |",
        "| --- | --- | ---: | ---: | " + " | ".join("---:" for _ in classes) + " | --- | ---: | --- |",
    ]
    for r in rows:
        dice = " | ".join(f"{r['val_dice'][c]:.4f}" for c in classes)
        sets = ", ".join(f"`{s}`" for s in r["sets"]) or "(base)"
        lines.append(
            f"| {r['variant']} | {sets} | {r['val_mdice']:.4f} | {r['val_miou_bg']:.4f} | {dice} | "
            f"{r['best_epoch'] + 1} / {r['plateau_epoch'] + 1} / {r['epochs']} | {r['minutes']:.1f} | "
            f"{r.get('machine', 'not recorded')} |"
        )
    unfinished = [v for v in study.get("variants") or {} if v not in {r["variant"] for r in rows}]
    if unfinished:
        lines += ["", f"Not finished (no row): {', '.join(unfinished)}."]
    missing = [r["variant"] for r in rows if r["variant"] not in curves]
    if missing:
        lines += ["", f"No curve kept for {', '.join(missing)} (measured before the report kept curves)."]
    (dest / "curves").mkdir(parents=True, exist_ok=True)
    for name, curve in curves.items():
        atomic_write_text(dest / "curves" / f"{name}.csv", curve.to_csv(index=False))
    atomic_write_text(dest / "recipe.md", "\n".join([*lines, "", "![curves](recipe_curves.png)", ""]))
    atomic_write_text(dest / "recipe.json", json.dumps([{k: v for k, v in r.items() if k != "carried"}
                                                        for r in rows], indent=2) + "\n")  # fmt: skip
    plot_learning_curves(curves, dest / "recipe_curves.png")
    print(f"wrote {dest / 'recipe.md'}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("study", help="study YAML (base, out, variants)")
    ap.add_argument("--only", action="append", default=[], help="train only this variant (repeatable)")
    ap.add_argument("--report", default="", help="write the report into this folder after training")
    ap.add_argument("--no-train", action="store_true", help="only write the report")
    args = ap.parse_args()
    study = read_yaml_mapping(args.study, "study file")
    study["_path"] = args.study
    out = Path(study.get("out") or "runs/recipe_study")
    if not args.no_train:
        for name, sets in _variants(study, args.only).items():
            train_variant(study["base"], out, name, [*_common(study), *sets])
    if args.report:
        report(study, out, Path(args.report))


if __name__ == "__main__":
    main()
