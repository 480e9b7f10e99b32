"""steelkd data import: each format on small hand-made files with known masks, the report, idempotence,
atomicity, and the command line."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as cocomask
from typer.testing import CliRunner

from steelkd.cli import app
from steelkd.data.importers import ImportOptions, import_annotations, read_classes_yaml
from steelkd.data.importers.common import LabelPainter, parse_class_list, write_classes_yaml

runner = CliRunner()


def _img(path: Path, h: int, w: int, value: int = 120) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((h, w, 3), value, np.uint8)).save(path)
    return path


def _mask(out: Path, name: str) -> np.ndarray:
    return np.array(Image.open(out / "masks" / f"{name}.png"))


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


# ------------------------------------------------------------------------------------------ common


def test_painter_lower_id_wins_in_any_order_and_counts_contested_pixels() -> None:
    a = np.zeros((4, 4), bool)
    a[:3, :3] = True
    b = np.zeros((4, 4), bool)
    b[1:, 1:] = True
    c = np.zeros((4, 4), bool)
    c[0, :] = True
    results = []
    for order in ([(a, 2), (b, 1), (c, 2)], [(c, 2), (b, 1), (a, 2)]):
        p = LabelPainter((4, 4))
        for region, k in order:
            p.paint(region, k)
        results.append((p.label.copy(), p.overlap_pixels))
    assert (results[0][0] == results[1][0]).all()
    assert results[0][1] == results[1][1] == 4  # a (2) and b (1) share the 2x2 block [1:3, 1:3]
    assert (results[0][0][1:, 1:] == 1).all() and results[0][0][0, 3] == 2 and results[0][0][3, 0] == 0


def test_class_list_and_classes_yaml(tmp_path: Path) -> None:
    assert parse_class_list("background,a, b") == ["a", "b"]
    assert parse_class_list(["a"]) == ["a"]
    for bad in ("a,,b", "a,a", "a,background"):
        with pytest.raises(ValueError, match="--classes"):
            parse_class_list(bad)
    from steelkd.data.importers.common import make_classes

    classes = make_classes(["x", "y"], None, colors={"y": (1, 2, 3)})
    write_classes_yaml(tmp_path / "classes.yaml", classes)
    assert read_classes_yaml(tmp_path / "classes.yaml") == classes
    (tmp_path / "bad.yaml").write_text("classes:\n- {id: 1, name: a, color: [0, 0, 0]}\n")
    with pytest.raises(ValueError, match=r"bad.yaml: class entry 0"):
        read_classes_yaml(tmp_path / "bad.yaml")


# ------------------------------------------------------------------------------------------ mask-suffix


def _ksdd2_like(src: Path) -> None:
    gt = np.zeros((6, 8), np.uint8)
    gt[2:4, 3:7] = 255
    _img(src / "10000.png", 6, 8)
    Image.fromarray(gt).save(src / "10000_GT.png")
    _img(src / "10001.png", 6, 8)
    Image.fromarray(np.zeros((6, 8), np.uint8)).save(src / "10001_GT.png")
    _img(src / "10002.png", 5, 9)  # no mask
    Image.fromarray(gt).save(src / "10003_GT.png")  # no image


def test_mask_suffix_binary_masks_map_to_one_class_and_problems_are_reported(tmp_path: Path) -> None:
    src, out = tmp_path / "ksdd2", tmp_path / "out"
    _ksdd2_like(src)
    r = import_annotations("mask-suffix", src, out)
    expected = np.zeros((6, 8), np.uint8)
    expected[2:4, 3:7] = 1
    assert (_mask(out, "10000") == expected).all()
    assert not _mask(out, "10001").any()
    assert sorted(p.name for p in (out / "images").iterdir()) == ["10000.png", "10001.png"]
    assert (out / "images" / "10000.png").read_bytes() == (src / "10000.png").read_bytes()
    assert [c.name for c in read_classes_yaml(out / "classes.yaml")] == ["background", "defect"]
    assert (r.images, r.images_with_regions, r.regions) == (2, 1, 1)
    assert r.images_without_annotations == ["10002"] and r.annotations_without_images == ["10003_GT.png"]
    text = "\n".join(r.lines())
    assert "1 images without annotations, skipped" in text and "10003_GT.png" in text
    saved = json.loads((out / "import_report.json").read_text())
    assert saved["images_without_annotations"] == ["10002"]

    r = import_annotations("mask-suffix", src, out, ImportOptions(keep_unannotated=True, classes=["crack"]))
    assert r.images == 3 and _mask(out, "10002").shape == (5, 9) and not _mask(out, "10002").any()
    assert [c.name for c in read_classes_yaml(out / "classes.yaml")] == ["background", "crack"]


def test_mask_suffix_index_masks_keep_their_ids_and_count_unknown_values(tmp_path: Path) -> None:
    src, masks = tmp_path / "img", tmp_path / "gt"
    lab = np.zeros((4, 5), np.uint8)
    lab[0, :2], lab[1, :3], lab[3, 4] = 1, 2, 7
    _img(src / "a.jpg", 4, 5)
    masks.mkdir()
    Image.fromarray(lab).save(masks / "a_mask.png")
    opts = ImportOptions(masks=masks, suffix="_mask", classes=["pit", "scratch"])
    r = import_annotations("mask-suffix", src, tmp_path / "out", opts)
    got = _mask(tmp_path / "out", "a")
    assert (got[:3] == lab[:3]).all() and got[3, 4] == 0
    assert r.unknown_labels == {"value 7": 1} and r.unknown_unit == "pixels"
    assert r.unknown_label_images == ["a"]
    r = import_annotations("mask-suffix", src, tmp_path / "out2", ImportOptions(masks=masks, suffix="_mask"))
    assert r.classes == ["background", *[f"class{i}" for i in range(1, 8)]]  # index mode, ids 1..7
    with pytest.raises(ValueError, match="binary masks map to one class"):
        import_annotations("mask-suffix", src, tmp_path / "o3", ImportOptions(
            mask_values="binary", classes=["a", "b"], masks=masks, suffix="_mask"))


# ------------------------------------------------------------------------------------------ cvat-mask


def _cvat(src: Path) -> np.ndarray:
    (src / "SegmentationClass").mkdir(parents=True)
    (src / "labelmap.txt").write_text(
        "# label:color_rgb:parts:actions\nbackground:0,0,0::\nscratch:250,50,83::\ndent:0,128,0::\n"
    )
    rgb = np.zeros((5, 6, 3), np.uint8)
    rgb[0, :3] = (250, 50, 83)
    rgb[2:4, 2:5] = (0, 128, 0)
    rgb[4, 5] = (10, 10, 10)  # a colour the label map does not have
    Image.fromarray(rgb).save(src / "SegmentationClass" / "frame_1.png")
    _img(src / "JPEGImages" / "frame_1.jpg", 5, 6)
    _img(src / "JPEGImages" / "frame_2.jpg", 5, 6)
    Image.fromarray(rgb).save(src / "SegmentationClass" / "frame_3.png")
    expected = np.zeros((5, 6), np.uint8)
    expected[0, :3] = 1
    expected[2:4, 2:5] = 2
    return expected


def test_cvat_mask_maps_colours_through_the_label_map(tmp_path: Path) -> None:
    src, out = tmp_path / "cvat", tmp_path / "out"
    expected = _cvat(src)
    r = import_annotations("cvat-mask", src, out)
    assert (_mask(out, "frame_1") == expected).all()
    classes = read_classes_yaml(out / "classes.yaml")
    assert [(c.name, c.color) for c in classes] == [
        ("background", (0, 0, 0)), ("scratch", (250, 50, 83)), ("dent", (0, 128, 0))
    ]
    assert r.unknown_labels == {"colour 10,10,10": 1}
    assert r.images_without_annotations == ["frame_2"] and r.annotations_without_images == ["frame_3"]
    assert r.overlap_pixels == 0 and r.regions == 2

    r = import_annotations("cvat-mask", src, out, ImportOptions(classes=["dent"]))
    only = np.where(expected == 2, 1, 0)
    assert (_mask(out, "frame_1") == only).all()
    assert r.unknown_labels == {"colour 10,10,10": 1, "scratch": 3}


def test_cvat_labelmap_errors_name_the_line(tmp_path: Path) -> None:
    (tmp_path / "labelmap.txt").write_text("background:0,0,0::\nscratch:250,50::\n")
    with pytest.raises(ValueError, match=r"labelmap.txt, line 2"):
        import_annotations("cvat-mask", tmp_path, tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"labelmap\.txt: not found"):
        import_annotations("cvat-mask", tmp_path / "empty", tmp_path / "out")


# ------------------------------------------------------------------------------------------ labelme


def _labelme(src: Path) -> np.ndarray:
    src.mkdir(parents=True)
    _img(src / "a.png", 12, 12)
    _img(src / "b.png", 12, 12)
    _img(src / "c.png", 12, 12)  # no JSON
    shapes = [
        {"label": "scratch", "points": [[1, 1], [4, 1], [4, 3], [1, 3]], "shape_type": "polygon"},
        {"label": "dent", "points": [[3, 2], [6, 5]], "shape_type": "rectangle"},
        {"label": "dent", "points": [[9, 9], [9, 11]], "shape_type": "circle"},
        {"label": "scratch", "points": [[0, 11], [11, 11]], "shape_type": "line"},
        {"label": "rust", "points": [[8, 0], [10, 0], [10, 2]], "shape_type": "polygon"},
    ]
    doc = {"imagePath": "a.png", "imageHeight": 12, "imageWidth": 12, "shapes": shapes, "imageData": None}
    (src / "a.json").write_text(json.dumps(doc))
    (src / "b.json").write_text(json.dumps({**doc, "imagePath": "b.png", "shapes": []}))
    (src / "d.json").write_text(json.dumps({**doc, "imagePath": "missing.png"}))
    expected = np.zeros((12, 12), np.uint8)
    expected[1:4, 1:5] = 2  # the polygon, outline included (as LabelMe draws it)
    expected[2:6, 3:7] = 1  # the rectangle: dent (1) wins over scratch (2) where they overlap
    return expected


def test_labelme_polygons_rectangles_circles_overlaps_and_unknown_labels(tmp_path: Path) -> None:
    src, out = tmp_path / "lm", tmp_path / "out"
    expected = _labelme(src)
    r = import_annotations("labelme", src, out, ImportOptions(classes=["dent", "scratch"]))
    got = _mask(out, "a")
    circle = got[7:12, 7:12] == 1  # centre (9, 9), radius 2: a disc inside the box 7..11
    assert circle[2, 2] and not circle[0, 0] and 9 <= circle.sum() <= 21
    assert (circle == circle.T).all() and (circle == circle[::-1]).all() and not got[6, 6:].any()
    got[6:, 6:] = 0
    assert (got == expected).all()
    assert not _mask(out, "b").any()
    assert r.overlap_pixels == 4 and r.overlap_images == ["a"]  # rows 2-3, columns 3-4
    assert r.unknown_labels == {"rust": 1} and r.skipped_shapes == {"line": 1}
    assert r.images_without_annotations == ["c"] and r.annotations_without_images == ["d.json"]
    assert (r.images, r.images_with_regions, r.regions) == (2, 1, 3)
    assert any("rule: the lower class id wins" in line for line in r.lines())
    r = import_annotations("labelme", src, out)  # classes found, sorted by name
    assert r.classes == ["background", "dent", "rust", "scratch"] and not r.unknown_labels


def test_labelme_size_disagreeing_with_the_image_is_an_error_and_out_is_kept(tmp_path: Path) -> None:
    src, out = tmp_path / "lm", tmp_path / "out"
    _labelme(src)
    import_annotations("labelme", src, out)
    before = _digest(out)
    doc = json.loads((src / "b.json").read_text())
    (src / "b.json").write_text(json.dumps({**doc, "imageHeight": 10}))
    with pytest.raises(ValueError, match=r"b: annotation is 10x12 but image .*b.png is 12x12"):
        import_annotations("labelme", src, out)
    assert _digest(out) == before  # atomic: the earlier import is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lm", "out"]  # no temporary folder left


# ------------------------------------------------------------------------------------------ coco


def _coco(root: Path) -> tuple[Path, dict[str, np.ndarray]]:
    h, w = 6, 8
    _img(root / "images" / "p.jpg", h, w)
    _img(root / "images" / "r.jpg", h, w)
    _img(root / "images" / "u.jpg", h, w)
    _img(root / "images" / "e.jpg", h, w)
    _img(root / "images" / "extra.jpg", h, w)  # not in the JSON
    rle_mask = np.zeros((h, w), np.uint8, order="F")
    rle_mask[3:6, 5:8] = 1
    compressed = cocomask.encode(np.asfortranarray(rle_mask))
    anns = [
        {"id": 1, "image_id": 1, "category_id": 7, "segmentation": [[1, 1, 5, 1, 5, 4, 1, 4]]},
        {"id": 2, "image_id": 1, "category_id": 3, "segmentation": [[4, 3, 7, 3, 7, 6, 4, 6]]},
        {"id": 3, "image_id": 2, "category_id": 3, "iscrowd": 1,
         "segmentation": {"size": [h, w], "counts": compressed["counts"].decode()}},
        # uncompressed (column-major) RLE: pixels 1-2 of column 0 and 0-1 of column 1
        {"id": 4, "image_id": 3, "category_id": 7, "iscrowd": 1,
         "segmentation": {"size": [h, w], "counts": [1, 2, 3, 2, 40]}},
        {"id": 5, "image_id": 3, "category_id": 9, "segmentation": [[0, 0, 2, 0, 2, 2]]},
        {"id": 6, "image_id": 3, "category_id": 3, "bbox": [0, 0, 2, 2], "segmentation": []},
        {"id": 7, "image_id": 99, "category_id": 3, "segmentation": [[0, 0, 2, 0, 2, 2]]},
    ]
    doc = {
        "images": [
            {"id": 1, "file_name": "p.jpg", "height": h, "width": w},
            {"id": 2, "file_name": "r.jpg", "height": h, "width": w},
            {"id": 3, "file_name": "u.jpg", "height": h, "width": w},
            {"id": 4, "file_name": "e.jpg", "height": h, "width": w},
            {"id": 5, "file_name": "gone.jpg", "height": h, "width": w},
        ],
        "categories": [{"id": 7, "name": "scratch"}, {"id": 3, "name": "dent"}, {"id": 9, "name": "rust"}],
        "annotations": anns,
    }
    (root / "annotations").mkdir(parents=True)
    path = root / "annotations" / "instances_default.json"
    path.write_text(json.dumps(doc))
    p = np.zeros((h, w), np.uint8)
    p[1:4, 1:5] = 2  # scratch (id 2 with --classes dent,scratch)
    p[3:6, 4:7] = 1  # dent wins the shared pixel (3, 4)
    u = np.zeros((h, w), np.uint8)
    u[1:3, 0] = 2
    u[0:2, 1] = 2
    return path, {"p": p, "r": rle_mask.astype(np.uint8), "u": u, "e": np.zeros((h, w), np.uint8)}


def test_coco_polygons_and_both_rle_forms(tmp_path: Path) -> None:
    path, expected = _coco(tmp_path / "export")
    out = tmp_path / "out"
    r = import_annotations("coco", path, out, ImportOptions(classes=["dent", "scratch"]))
    for name, want in expected.items():
        assert (_mask(out, name) == want).all(), name
    assert r.overlap_pixels == 1 and r.overlap_images == ["p"]
    assert r.unknown_labels == {"rust": 1} and r.skipped_shapes == {"box only": 1}
    assert r.annotations_without_images == ["annotation 7 (image_id 99)", "gone.jpg"]
    assert r.images_without_annotations == ["extra"]
    assert (r.images, r.images_with_regions) == (4, 3)
    r = import_annotations("coco", path, out)  # categories in id order: dent (3), scratch (7), rust (9)
    assert r.classes == ["background", "dent", "scratch", "rust"]


def test_coco_rle_of_another_size_names_the_annotation(tmp_path: Path) -> None:
    path, _ = _coco(tmp_path / "export")
    doc = json.loads(path.read_text())
    doc["annotations"][3]["segmentation"]["size"] = [7, 8]
    path.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match=r"u: annotation 4: RLE size \[7, 8\] differs"):
        import_annotations("coco", path, tmp_path / "out")
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------------------ writer


def test_import_is_idempotent_and_never_replaces_a_foreign_folder(tmp_path: Path) -> None:
    path, _ = _coco(tmp_path / "export")
    a, b = tmp_path / "a", tmp_path / "b"
    import_annotations("coco", path, a)
    first = _digest(a)
    import_annotations("coco", path, a)
    import_annotations("coco", path, b)
    assert _digest(a) == first == _digest(b)
    assert set(first) >= {"classes.yaml", "import_report.json", "images/p.jpg", "masks/p.png"}
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="not an earlier steelkd import"):
        import_annotations("coco", path, foreign)
    assert (foreign / "notes.txt").read_text() == "keep me"


def test_cli_import_prints_the_report_and_errors_are_one_line(tmp_path: Path) -> None:
    src = tmp_path / "ksdd2"
    _ksdd2_like(src)
    out = tmp_path / "out"
    args = ["data", "import", "--format", "mask-suffix", "--src", str(src), "--out", str(out)]
    res = runner.invoke(app, [*args, "--classes", "crack"])
    assert res.exit_code == 0, res.output
    assert "2 images (1 with regions, 1 regions), classes: background, crack" in res.output
    assert "1 annotations without an image file" in res.output and (out / "masks" / "10000.png").is_file()
    res = runner.invoke(app, ["data", "import", "--format", "voc", "--src", str(src), "--out", str(out)])
    assert res.exit_code == 1 and "--format: expected one of" in res.output and "Traceback" not in res.output
