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
``recipe.json`` and ``recipe_curves.png`` (validation mDice per epoch and per minute).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

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
    info = {"variant": name, "sets": sets, "seconds": prior.get("seconds", 0.0) + seconds}
    atomic_write_text(run / "study_run.json", json.dumps(info, indent=2) + "\n")


def report(study: dict[str, Any], out: Path, dest: Path) -> None:
    """Write ``recipe.md``, ``recipe.json`` and ``recipe_curves.png`` for the finished variants."""
    from steelkd.figures import plateau_epoch, plot_learning_curves, read_val_curve

    rows, curves = [], {}
    for name, sets in _variants(study, []).items():
        run = out / name
        if not (run / "best_metrics.json").is_file():
            continue
        best = json.loads((run / "best_metrics.json").read_text())
        info = json.loads((run / "study_run.json").read_text()) if (run / "study_run.json").is_file() else {}
        curve = read_val_curve(run / "logs" / "metrics.csv")
        curves[name] = curve
        rows.append({"variant": name, "sets": sets, "val_mdice": best["mdice"],
                     "val_miou_bg": best["miou_bg"], "val_dice": best["dice"], "best_epoch": best["epoch"],
                     "plateau_epoch": plateau_epoch(curve["val/mdice"].to_numpy()),
                     "epochs": int(curve["epoch"].max()) + 1,
                     "minutes": info.get("seconds", 0.0) / 60})  # fmt: skip
    if not rows:
        raise SystemExit("error: no finished variant to report")
    cfg0 = load_config(out / rows[0]["variant"] / "config.yaml")
    classes = cfg0.data.class_names[1:]
    for r in rows:
        r["val_dice"] = dict(zip(classes, r["val_dice"], strict=True))
    lines = [
        f"# Recipe study: {study.get('title', dest.name)}",
        "",
        f"Base config `{study['base']}`"
        + (f" with `{'`, `'.join(_common(study))}` in every variant" if _common(study) else "")
        + "; every figure is on the **validation** split (best epoch by "
        "validation mDice); the test split is not read. Plateau: first epoch at >= 95% of the best.",
        f"Command: `python scripts/recipe_study.py {study.get('_path', 'STUDY.yaml')} --report {dest}`.",
        *([str(study["note"])] if study.get("note") else []),
        "",
        "| variant | overrides | val mDice | val mIoU incl. bg | "
        + " | ".join(f"Dice {c}" for c in classes)
        + " | best / plateau / epochs | minutes |",
        "| --- | --- | ---: | ---: | " + " | ".join("---:" for _ in classes) + " | --- | ---: |",
    ]
    for r in rows:
        dice = " | ".join(f"{r['val_dice'][c]:.4f}" for c in classes)
        sets = ", ".join(f"`{s}`" for s in r["sets"]) or "(base)"
        lines.append(
            f"| {r['variant']} | {sets} | {r['val_mdice']:.4f} | {r['val_miou_bg']:.4f} | {dice} | "
            f"{r['best_epoch']} / {r['plateau_epoch']} / {r['epochs']} | {r['minutes']:.1f} |"
        )
    dest.mkdir(parents=True, exist_ok=True)
    atomic_write_text(dest / "recipe.md", "\n".join([*lines, "", "![curves](recipe_curves.png)", ""]))
    atomic_write_text(dest / "recipe.json", json.dumps(rows, indent=2) + "\n")
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
