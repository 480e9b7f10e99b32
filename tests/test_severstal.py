"""Severstal layout: both csv layouts, malformed rows, missing images, split, label maps, overlaps."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import require_shared
from steelkd.data.rle import rle_decode, rle_encode
from steelkd.data.severstal import (
    SeverstalDataset,
    check_images,
    image_classes,
    label_map,
    overlap_stats,
    read_train_csv,
)
from steelkd.data.split import load_or_create_split, load_split, make_split, save_split


def write_new_layout(table: pd.DataFrame, path: Path) -> Path:
    path.write_text(
        "ImageId,ClassId,EncodedPixels\n"
        + "".join(f"{r.ImageId},{r.ClassId},{r.EncodedPixels}\n" for r in table.itertuples())
    )
    return path


def write_old_layout(table: pd.DataFrame, path: Path, extra_images: tuple[str, ...] = ()) -> Path:
    """The 2019 layout: four rows per image, ImageId_ClassId, empty EncodedPixels for no mask."""
    rles = {(r.ImageId, r.ClassId): r.EncodedPixels for r in table.itertuples()}
    lines = ["ImageId_ClassId,EncodedPixels"]
    for image_id in sorted(set(table["ImageId"]) | set(extra_images)):
        for c in (1, 2, 3, 4):
            lines.append(f"{image_id}_{c},{rles.get((image_id, c), '')}")
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def small_table() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "ImageId": ["a1.jpg", "a1.jpg", "b2.jpg", "c3.jpg"],
            "ClassId": [1, 3, 4, 2],
            "EncodedPixels": ["1 3 10 2", "5 4", "2 2 8 1", "16 1"],
        }
    )


def test_both_layouts_load_to_the_same_table(tmp_path: Path, small_table: pd.DataFrame) -> None:
    new = read_train_csv(write_new_layout(small_table, tmp_path / "new.csv"))
    old = read_train_csv(write_old_layout(small_table, tmp_path / "old.csv", extra_images=("z9.jpg",)))
    pd.testing.assert_frame_equal(new, small_table)
    pd.testing.assert_frame_equal(old, small_table)
    assert new["ClassId"].dtype == np.int64


def test_real_subset_both_layouts(tmp_path: Path) -> None:
    src = require_shared("severstal", "train_subset.csv")
    new = read_train_csv(src, shape=(256, 1600))
    assert len(new) == 2845 and new["ImageId"].nunique() == 2667
    assert new["ClassId"].value_counts().sort_index().tolist() == [365, 99, 2061, 320]
    old = read_train_csv(write_old_layout(new, tmp_path / "old.csv"))
    order = ["ImageId", "ClassId"]
    pd.testing.assert_frame_equal(
        old.sort_values(order).reset_index(drop=True), new.sort_values(order).reset_index(drop=True)
    )


def test_new_layout_with_empty_rows_and_blank_lines(tmp_path: Path) -> None:
    p = tmp_path / "t.csv"
    p.write_text("ImageId,ClassId,EncodedPixels\nx.jpg,1,\n\ny.jpg,2,3 4\n")
    t = read_train_csv(p)
    assert t.values.tolist() == [["y.jpg", 2, "3 4"]]


@pytest.mark.parametrize(
    ("body", "match"),
    [
        ("ok.jpg,1,1 2\nbad.jpg,x,1 2\n", r"line 3 \(ImageId bad\.jpg\): ClassId 'x' is not an integer"),
        ("ok.jpg,1,1 2\nbad.jpg,7,1 2\n", r"line 3 \(ImageId bad\.jpg\): ClassId 7 is outside 1\.\.4"),
        ("bad.jpg,1,1 2 3\n", r"line 2 \(ImageId bad\.jpg\): bad EncodedPixels: .*odd number of tokens"),
        ("ok.jpg,1,1 2\n\nbad.jpg,2,5 2 1 1\n", r"line 4 \(ImageId bad\.jpg\): bad EncodedPixels: .*sorted"),
        ("bad.jpg,1\n", r"line 2 \(ImageId bad\.jpg\): expected 3 fields, got 2"),
        (
            "bad.jpg,1,1 2\nbad.jpg,1,5 2\n",
            r"line 3 \(ImageId bad\.jpg\): second mask for class 1 \(first on line 2\)",
        ),
    ],
)
def test_malformed_row_names_line_and_image(tmp_path: Path, body: str, match: str) -> None:
    p = tmp_path / "train.csv"
    p.write_text("ImageId,ClassId,EncodedPixels\n" + body)
    with pytest.raises(ValueError, match=match):
        read_train_csv(p)


def test_malformed_old_layout_rows(tmp_path: Path) -> None:
    p = tmp_path / "train.csv"
    p.write_text("ImageId_ClassId,EncodedPixels\nq.jpg_1,\nq.jpg,1 2\n")
    with pytest.raises(ValueError, match=r"line 3 \(ImageId q\.jpg\): .*no '_<class>' suffix"):
        read_train_csv(p)
    p.write_text("ImageId_ClassId,EncodedPixels\nq.jpg_1,1 x\n")
    with pytest.raises(ValueError, match=r"line 2 \(ImageId q\.jpg\): bad EncodedPixels: RLE token 'x'"):
        read_train_csv(p)


def test_run_past_the_image_with_shape(tmp_path: Path) -> None:
    p = tmp_path / "train.csv"
    p.write_text("ImageId,ClassId,EncodedPixels\nbig.jpg,3,409600 5\n")
    assert len(read_train_csv(p)) == 1  # without a shape only the syntax is checked
    with pytest.raises(ValueError, match=r"line 2 \(ImageId big\.jpg\).*past the 256x1600 image"):
        read_train_csv(p, shape=(256, 1600))


def test_unknown_header_and_missing_file(tmp_path: Path) -> None:
    p = tmp_path / "train.csv"
    p.write_text("Image,Class,Pixels\n")
    with pytest.raises(ValueError, match="unknown header 'Image,Class,Pixels'"):
        read_train_csv(p)
    with pytest.raises(FileNotFoundError, match=r"nope\.csv: train\.csv not found"):
        read_train_csv(tmp_path / "nope.csv")


def test_missing_images_report_count_and_first_names(tmp_path: Path, small_table: pd.DataFrame) -> None:
    img_dir = tmp_path / "train_images"
    img_dir.mkdir()
    (img_dir / "a1.jpg").write_bytes(b"x")
    with pytest.raises(
        FileNotFoundError, match=r"2 image file\(s\) named in train.csv are missing: b2.jpg, c3.jpg"
    ):
        check_images(small_table["ImageId"], img_dir)
    ids = [f"m{i:02d}.jpg" for i in range(9)]
    with pytest.raises(
        FileNotFoundError, match=r"9 image file\(s\).*m00.jpg, m01.jpg, m02.jpg, m03.jpg, m04.jpg, \.\.\."
    ):
        check_images(ids, img_dir)
    csv = write_new_layout(small_table, tmp_path / "train.csv")
    with pytest.raises(FileNotFoundError, match="2 image file"):
        read_train_csv(csv, image_dir=img_dir)


# --------------------------------------------------------------------------------------------- split


def _classes(n: int = 200) -> dict[str, tuple[int, ...]]:
    rng = np.random.default_rng(1)
    sets = [(1,), (2,), (3,), (4,), (1, 3), (3, 4), (1, 2, 3)]
    probs = [0.1, 0.05, 0.5, 0.1, 0.1, 0.1, 0.05]
    return {f"{i:05x}.jpg": sets[int(rng.choice(len(sets), p=probs))] for i in range(n)}


def test_split_is_deterministic_disjoint_and_80_20() -> None:
    classes = _classes()
    a, b = make_split(classes, seed=3), make_split(dict(reversed(list(classes.items()))), seed=3)
    assert a == b  # same seed and images: same split, whatever the input order
    assert make_split(classes, seed=4)["test"] != a["test"]
    assert not set(a["train"]) & set(a["test"])
    assert set(a["train"]) | set(a["test"]) == set(classes)
    assert len(a["test"]) == 40 and len(a["train"]) == 160
    assert a["sizes"] == {"train": 160, "test": 40}


def test_split_is_stratified_by_class_set() -> None:
    classes = _classes()
    split = make_split(classes, seed=0, test_fraction=0.2)
    test = set(split["test"])
    groups: dict[tuple[int, ...], list[str]] = {}
    for k, v in classes.items():
        groups.setdefault(v, []).append(k)
    for members in groups.values():
        n_test = sum(m in test for m in members)
        assert abs(n_test - 0.2 * len(members)) < 1.0, (len(members), n_test)


def test_split_file_is_created_then_reused(tmp_path: Path) -> None:
    classes = _classes(50)
    path = tmp_path / "split.json"
    first = load_or_create_split(path, classes, seed=0)
    assert path.is_file() and json.loads(path.read_text())["test"] == first["test"]
    # a different seed does not matter once the file exists: the file wins
    assert load_or_create_split(path, classes, seed=99)["test"] == first["test"]
    custom = {"train": sorted(classes)[:45], "test": sorted(classes)[45:]}
    save_split(custom, path)
    assert load_or_create_split(path, classes)["test"] == sorted(classes)[45:]
    with pytest.raises(
        ValueError, match=r"split names 1 image\(s\) that are not in the data set \(first: ghost.jpg\)"
    ):
        save_split({"train": ["ghost.jpg"], "test": []}, path)
        load_or_create_split(path, classes)


def test_bad_split_files(tmp_path: Path) -> None:
    p = tmp_path / "s.json"
    p.write_text("{nope")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_split(p)
    p.write_text(json.dumps({"train": ["a"], "test": ["a"]}))
    with pytest.raises(ValueError, match=r"1 image\(s\) are in both train and test, e.g. a"):
        load_split(p)
    with pytest.raises(ValueError, match="test_fraction"):
        make_split({"a": (1,)}, test_fraction=1.0)


def test_image_classes_includes_defect_free() -> None:
    t = pd.DataFrame({"ImageId": ["b", "a", "b"], "ClassId": [3, 2, 1], "EncodedPixels": ["1 1"] * 3})
    assert image_classes(t, ["z"]) == {"a": (2,), "b": (1, 3), "z": ()}


# ------------------------------------------------------------------------------------ label maps


def test_label_map_lower_class_wins_on_overlap() -> None:
    h, w = 6, 5
    m1 = np.zeros((h, w), np.uint8)
    m1[1:3, 1:3] = 1
    m3 = np.zeros((h, w), np.uint8)
    m3[2:5, 0:4] = 1
    m4 = np.zeros((h, w), np.uint8)
    m4[:, 3:] = 1
    masks = [(4, rle_encode(m4)), (1, rle_encode(m1)), (3, rle_encode(m3))]
    lab = label_map(masks, (h, w))
    assert lab.flags.c_contiguous and lab.dtype == np.uint8
    expect = np.zeros((h, w), np.uint8)
    expect[m4 == 1] = 4
    expect[m3 == 1] = 3
    expect[m1 == 1] = 1
    np.testing.assert_array_equal(lab, expect)
    table = pd.DataFrame(
        {"ImageId": ["x"] * 3, "ClassId": [c for c, _ in masks], "EncodedPixels": [r for _, r in masks]}
    )
    n_overlap = int(((m1 + m3 + m4) >= 2).sum())
    assert n_overlap > 0
    assert overlap_stats(table, (h, w)) == {"pixels": n_overlap, "images": 1, "multi_class_images": 1}


def test_dataset_class_pixel_counts_match_masks(tmp_path: Path) -> None:
    import cv2

    h, w = 8, 12
    img_dir = tmp_path / "train_images"
    img_dir.mkdir()
    rng = np.random.default_rng(0)
    rows = []
    for name in ("p.jpg", "q.jpg", "r.jpg"):
        cv2.imwrite(str(img_dir / name), np.zeros((h, w, 3), np.uint8))
    for name, cls in (("p.jpg", 1), ("q.jpg", 2), ("q.jpg", 4)):  # q has two overlapping masks
        rows.append((name, cls, rle_encode(rng.random((h, w)) < 0.4)))
    table = pd.DataFrame(rows, columns=["ImageId", "ClassId", "EncodedPixels"])
    from steelkd.data.severstal import masks_by_image

    ds = SeverstalDataset(
        img_dir, ["p.jpg", "q.jpg", "r.jpg"], masks_by_image(table), ["bg", "a", "b", "c", "d"]
    )
    brute = sum(np.bincount(ds.read_mask(i).ravel(), minlength=5) for i in range(3))
    np.testing.assert_array_equal(ds.class_pixel_counts(), brute)
    assert brute.sum() == 3 * h * w
    q = ds.read_mask(1)
    both = (rle_decode(rows[1][2], (h, w)) == 1) & (rle_decode(rows[2][2], (h, w)) == 1)
    assert both.any() and (q[both] == 2).all()  # the lower class id wins
    with pytest.raises(ValueError, match="masks use ClassId 4 but only 3 class names"):
        SeverstalDataset(img_dir, ["q.jpg"], masks_by_image(table), ["bg", "a", "b"])
