"""scripts/recipe_study.py's report: rows and curves of variants measured here or in an earlier report."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import pandas as pd

from script_helpers import load_script
from steelkd.config import load_config, save_config


def _script() -> ModuleType:
    return load_script("recipe_study")


def _finished_run(run: Path, mdice: list[float]) -> None:
    """A run folder as fit leaves it: config, best metrics, the CSV log and the study's seconds."""
    save_config(load_config(None, ["data.class_names=[background, defect]"]), run / "config.yaml")
    best = max(range(len(mdice)), key=mdice.__getitem__)
    metrics = {"mdice": mdice[best], "miou_bg": 0.5, "dice": [mdice[best]], "epoch": best}
    (run / "best_metrics.json").write_text(json.dumps(metrics))
    (run / "logs").mkdir(parents=True)
    pd.DataFrame({"epoch": range(len(mdice)), "step": range(10, 10 * len(mdice) + 1, 10), "val/mdice": mdice}
                 ).to_csv(run / "logs" / "metrics.csv", index=False)  # fmt: skip
    (run / "study_run.json").write_text(json.dumps({"seconds": 120.0, "machine": "test CPU"}))


def test_report_keeps_rows_and_curves_of_variants_whose_runs_are_gone(tmp_path) -> None:
    rs, out, dest = _script(), tmp_path / "runs", tmp_path / "report"
    study = {"base": "b.yaml", "variants": {"a": ["train.epochs=3"]}}
    _finished_run(out / "a", [0.1, 0.6, 0.5])
    rs.report(study, out, dest)
    first = json.loads((dest / "recipe.json").read_text())
    summary = [(r["variant"], r["val_mdice"], r["best_epoch"], r["minutes"]) for r in first]
    assert summary == [("a", 0.6, 1, 2.0)]

    # next session: a's run folder is gone, a new variant b is measured; a's row and curve are kept
    for p in sorted((out / "a").rglob("*"), reverse=True):
        p.unlink() if p.is_file() else p.rmdir()
    study["variants"]["b"] = ["train.epochs=2"]
    _finished_run(out / "b", [0.2, 0.7])
    rs.report(study, out, dest)
    rows = {r["variant"]: r for r in json.loads((dest / "recipe.json").read_text())}
    assert rows["a"] == first[0] and rows["b"]["val_mdice"] == 0.7
    assert pd.read_csv(dest / "curves" / "a.csv")["val/mdice"].tolist() == [0.1, 0.6, 0.5]
    table = (dest / "recipe.md").read_text()
    assert "| a | `train.epochs=3` | 0.6000" in table and "| b | `train.epochs=2` | 0.7000" in table
    # epochs trained (1-based, as in the figure): a peaks (and plateaus) at its 2nd of 3, b at its 2nd of 2
    assert "| 2 / 2 / 3 |" in table and "| 2 / 2 / 2 |" in table

    # a variant whose overrides changed is not the one measured: its old row is dropped
    study["variants"]["a"] = ["train.epochs=4"]
    rs.report(study, out, dest)
    assert [r["variant"] for r in json.loads((dest / "recipe.json").read_text())] == ["b"]
