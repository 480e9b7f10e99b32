"""Defect records: one row per 8-connected defect region in defects.csv / defects.jsonl, in input order."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from deploy_helpers import CLASS_NAMES, tiny_model_dir, write_images
from steelkd.predict import Predictor
from steelkd.predict.results import DEFECT_FIELDS, ImageResult, find_defects, write_defects


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model_dir(tmp_path_factory)


def test_regions_are_8_connected_with_box_area_and_probabilities() -> None:
    label = np.zeros((10, 12), np.uint8)
    label[1, 1] = label[2, 2] = label[3, 3] = 2  # a diagonal: one region under 8-connectivity
    label[5:8, 6:11] = 2  # a 3 x 5 block
    label[0:2, 9:12] = 1
    conf = np.zeros((10, 12), np.float32)
    conf[1, 1], conf[2, 2], conf[3, 3] = 0.6, 0.7, 0.8
    conf[5:8, 6:11] = 0.9
    conf[6, 8] = 1.0
    conf[0:2, 9:12] = 0.55
    regions = find_defects("x.png", label, conf, ["background", "a", "b"])
    got = [(r.class_id, r.class_name, r.area, (r.x, r.y, r.w, r.h)) for r in regions]
    assert got == [(1, "a", 6, (9, 0, 3, 2)), (2, "b", 3, (1, 1, 3, 3)), (2, "b", 15, (6, 5, 5, 3))]
    assert regions[1].mean_prob == pytest.approx(0.7) and regions[1].max_prob == pytest.approx(0.8)
    assert regions[2].mean_prob == pytest.approx((14 * 0.9 + 1.0) / 15) and regions[2].max_prob == 1.0
    assert list(regions[0].record()) == list(DEFECT_FIELDS)
    assert find_defects("x.png", np.zeros((4, 4), np.uint8), None, ["background", "a"]) == []


def test_write_defects_keeps_input_order_and_both_files_agree(tmp_path: Path) -> None:
    def result(name: str, label: np.ndarray) -> ImageResult:
        res = ImageResult(Path(name), name, label.shape, [], {})
        res.defects = find_defects(name, label, np.full(label.shape, 0.75, np.float32), ["bg", "a", "b"])
        return res

    a = np.zeros((6, 6), np.uint8)
    a[0, 0] = 2
    a[4:6, 4:6] = 1
    b = np.zeros((6, 6), np.uint8)
    b[2:4, 0:3] = 1
    results = [result("z.png", a), result("empty.png", np.zeros((6, 6), np.uint8)), result("a.png", b)]
    csv_path, jsonl_path = write_defects(results, tmp_path / "out")
    with open(csv_path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    lines = [json.loads(line) for line in jsonl_path.read_text().splitlines()]
    assert [r["image"] for r in rows] == ["z.png", "z.png", "a.png"]  # input order, empty image: no row
    assert [{k: str(v) for k, v in line.items()} for line in lines] == rows
    assert lines[0]["class"] == "a" and lines[0]["area"] == 4 and lines[0]["mean_prob"] == 0.75
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]  # no temp file left


def test_predict_files_writes_defect_records_matching_the_masks(model_dir: Path, tmp_path: Path) -> None:
    pairs = write_images(tmp_path / "in", 5, seed=61)
    write_images(tmp_path / "in", 1, seed=62, h=70, w=150, prefix="odd")
    pred = Predictor.from_path(model_dir, batch_size=2)
    report = pred.predict_files(tmp_path / "in", tmp_path / "out", overlays=False)
    assert report.defects_paths == (tmp_path / "out" / "defects.csv", tmp_path / "out" / "defects.jsonl")
    with open(tmp_path / "out" / "defects.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert rows and list(rows[0]) == list(DEFECT_FIELDS)
    order = [r.image_id for r in report.results]
    assert order == [p.name for p, _ in pairs] + ["odd000.png"]
    seen = [r["image"] for r in rows]
    assert seen == sorted(seen, key=order.index)  # grouped by image, in input order
    for res in report.results:
        mask = np.asarray(Image.open(res.mask_path))
        mine = [r for r in rows if r["image"] == res.image_id]
        expected = 0
        for c in range(1, len(CLASS_NAMES)):
            n, _, stats, _ = cv2.connectedComponentsWithStats((mask == c).astype(np.uint8), connectivity=8)
            expected += n - 1
            boxes = sorted(tuple(int(v) for v in stats[k, :5]) for k in range(1, n))
            listed = sorted(
                (int(r["x"]), int(r["y"]), int(r["w"]), int(r["h"]), int(r["area"]))
                for r in mine
                if int(r["class_id"]) == c
            )
            assert listed == boxes
            area = sum(int(r["area"]) for r in mine if r["class"] == CLASS_NAMES[c])
            assert area == res.class_areas[CLASS_NAMES[c]]
        assert len(mine) == expected == len(res.defects)
    probs = [(float(r["mean_prob"]), float(r["max_prob"])) for r in rows]
    assert all(0.5 <= m <= x <= 1.0 for m, x in probs)  # threshold 0.5: every labelled pixel has p >= 0.5
    lines = (tmp_path / "out" / "defects.jsonl").read_text().splitlines()
    assert len(lines) == len(rows)


def test_no_defects_option_writes_no_records(model_dir: Path, tmp_path: Path) -> None:
    write_images(tmp_path / "in", 2, seed=63)
    report = Predictor.from_path(model_dir).predict_files(tmp_path / "in", tmp_path / "out", defects=False)
    assert report.defects_paths is None and not (tmp_path / "out" / "defects.csv").exists()
    assert any(r.defects for r in report.results)  # still in the results
