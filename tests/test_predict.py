"""Inference library: post-processing, overlays, both backends, TTA, file handling, real Severstal files."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import require_shared
from deploy_helpers import CLASS_NAMES, tiny_model_dir, tiny_onnx, write_images
from steelkd.card import ModelCard
from steelkd.data.image import read_image
from steelkd.data.rle import rle_decode
from steelkd.postprocess import (
    PALETTE,
    SEVERSTAL_MIN_AREA,
    PostProcess,
    labels_from_probs,
    overlay,
    remove_small,
    softmax,
)
from steelkd.predict import Predictor, TorchBackend, resolve_inputs


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_model_dir(tmp_path_factory)


@pytest.fixture(scope="module")
def onnx_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_onnx(tmp_path_factory)


def _read_submission(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        assert reader.fieldnames == ["ImageId", "EncodedPixels", "ClassId"]
        return list(reader)


# ------------------------------------------------------------------------------------ post-processing
def test_thresholds_pick_the_most_probable_qualified_class() -> None:
    probs = np.zeros((5, 1, 4), np.float32)
    probs[:, 0, 0] = [0.1, 0.6, 0.3, 0.0, 0.0]  # class 1 above 0.5
    probs[:, 0, 1] = [0.4, 0.45, 0.15, 0.0, 0.0]  # argmax is class 1 but below 0.5: background
    probs[:, 0, 2] = [0.5, 0.0, 0.0, 0.35, 0.15]  # class 3 qualifies only with a 0.3 threshold
    probs[:, 0, 3] = [0.05, 0.3, 0.0, 0.0, 0.65]
    assert labels_from_probs(probs, np.full(4, 0.5)).tolist() == [[1, 0, 0, 4]]
    assert labels_from_probs(probs, np.array([0.5, 0.5, 0.3, 0.7])).tolist() == [[1, 0, 3, 0]]
    assert labels_from_probs(probs, None).tolist() == [[1, 1, 0, 4]]  # plain argmax


def test_min_area_total_versus_component_and_scaling() -> None:
    label = np.zeros((64, 256), np.uint8)
    label[0:5, 0:5] = 2  # 25 px
    label[10:15, 10:15] = 2  # 25 px, another component: class 2 totals 50 px
    label[30:40, 100:140] = 3  # 400 px
    mins = np.array([0, 30, 500, 0])
    total = remove_small(label, mins, "total")
    assert (total == 2).sum() == 50 and (total == 3).sum() == 0  # class 2 total 50 >= 30 kept
    comp = remove_small(label, mins, "component")
    assert (comp == 2).sum() == 0 and (comp == 3).sum() == 0  # each 25-px component < 30 removed
    # defaults: Severstal minima scaled by area: 64*256 is 1/25 of 256*1600
    scaled = PostProcess().min_areas(5, (64, 256))
    assert scaled.tolist() == [int(np.ceil(a / 25)) for a in SEVERSTAL_MIN_AREA]
    assert PostProcess(scale_min_area=False).min_areas(5, (64, 256)).tolist() == list(SEVERSTAL_MIN_AREA)
    assert PostProcess(min_area=0).min_areas(4, (10, 10)).tolist() == [0, 0, 0]


def test_postprocess_rejects_bad_settings() -> None:
    with pytest.raises(ValueError, match="threshold"):
        PostProcess(threshold=[0.5, 0.5]).thresholds(5)
    with pytest.raises(ValueError, match="min_area"):
        PostProcess(min_area=[-1]).min_areas(5, (8, 8))
    with pytest.raises(ValueError, match="min_area_mode"):
        PostProcess(min_area_mode="blob")


def test_overlay_paints_classes_with_the_palette_and_draws_a_legend() -> None:
    img = np.full((64, 256, 3), 100, np.uint8)
    lab = np.zeros((64, 256), np.uint8)
    lab[40:60, 150:200] = 3
    plain = overlay(img, lab, CLASS_NAMES, legend=False, alpha=0.5)
    inside = plain[50, 175].astype(int)
    assert np.abs(inside - (100 + PALETTE[3].astype(int)) / 2).max() <= 1  # blended with class colour
    assert (plain[40, 175] == PALETTE[3]).all()  # outline in the opaque class colour
    assert (plain[10, 100] == 100).all() and (plain[lab == 0] == 100).all()  # background untouched
    legend = overlay(img, lab, CLASS_NAMES)
    corner = legend[:12, :120]
    assert not (corner == 100).all()  # legend drawn top-left
    for c in range(1, 5):  # every defect class swatch appears in the legend
        assert (legend[:20] == PALETTE[c]).all(axis=-1).any(), c
    gray = overlay(img[:, :, 0], lab, CLASS_NAMES, legend=False, alpha=0.5)
    assert np.array_equal(gray, plain)


def test_overlay_colours_each_class_where_the_mask_has_it_and_nothing_else() -> None:
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (80, 300, 3), dtype=np.uint8)  # textured, so "unchanged" means something
    lab = np.zeros((80, 300), np.uint8)
    lab[30:50, 20:60] = 1
    lab[35:70, 100:130] = 2
    lab[60:75, 200:290] = 4
    bg = lab == 0
    solid = overlay(img, lab, CLASS_NAMES, alpha=1.0, legend=False, outline=False)
    for c in (1, 2, 4):
        assert (solid[lab == c] == PALETTE[c]).all(), c  # the class colour exactly where the class is
    assert np.array_equal(solid[bg], img[bg])  # every other pixel is the image's own
    blended = overlay(img, lab, CLASS_NAMES, alpha=0.45, legend=False, outline=False)
    expected = 0.55 * img.astype(np.float64) + 0.45 * PALETTE[lab].astype(np.float64)
    assert np.abs(blended[~bg] - expected[~bg]).max() <= 1
    assert np.array_equal(blended[bg], img[bg])
    outlined = overlay(img, lab, CLASS_NAMES, legend=False)
    for c, (y0, y1, x0, x1) in {1: (30, 50, 20, 60), 2: (35, 70, 100, 130), 4: (60, 75, 200, 290)}.items():
        border = np.zeros_like(bg)
        border[y0:y1, x0:x1] = True
        border[y0 + 1 : y1 - 1, x0 + 1 : x1 - 1] = False
        assert (outlined[border] == PALETTE[c]).all(), c  # outline: opaque class colour on the boundary
        inner = (slice(y0 + 1, y1 - 1), slice(x0 + 1, x1 - 1))
        assert np.array_equal(outlined[inner], blended[inner])  # inside: the plain blend
    assert np.array_equal(outlined[bg], img[bg])
    with_legend = overlay(img, lab, CLASS_NAMES)
    ys, xs = np.nonzero((with_legend != outlined).any(axis=-1))
    assert ys.size and ys.min() == 0 and xs.min() == 0  # the legend is a box in the top-left corner
    outside = np.ones_like(bg)
    outside[: ys.max() + 1, : xs.max() + 1] = False
    assert np.array_equal(with_legend[outside], outlined[outside])  # and nothing else changes


# ---------------------------------------------------------------------------------- library, torch
def test_predict_files_writes_masks_overlays_and_a_submission_that_decodes_back(
    model_dir: Path, tmp_path: Path
) -> None:
    pairs = write_images(tmp_path / "in", 4, seed=11)
    predictor = Predictor.from_path(model_dir, post=PostProcess(threshold=None, min_area=0), batch_size=3)
    report = predictor.predict_files(tmp_path / "in", tmp_path / "out", keep_label_maps=True)
    assert not report.failures and [r.image_id for r in report.results] == [p.name for p, _ in pairs]
    rows = _read_submission(tmp_path / "out" / "submission.csv")
    assert len(rows) == 4 * 4
    assert [int(r["ClassId"]) for r in rows[:4]] == [1, 2, 3, 4]
    nonempty = 0
    for res in report.results:
        mask = np.asarray(Image.open(tmp_path / "out" / "masks" / f"{res.path.stem}.png"))
        assert mask.dtype == np.uint8 and mask.shape == (64, 256)
        assert np.array_equal(mask, res.label_map)
        assert mask.max() <= 4
        ov = np.asarray(Image.open(tmp_path / "out" / "overlays" / f"{res.path.stem}.png"))
        assert ov.shape == (64, 256, 3)
        for row in (r for r in rows if r["ImageId"] == res.image_id):
            c = int(row["ClassId"])
            decoded = rle_decode(row["EncodedPixels"], shape=mask.shape)
            assert np.array_equal(decoded, (mask == c).astype(np.uint8))
            assert res.class_areas[CLASS_NAMES[c]] == int((mask == c).sum())
            nonempty += bool(row["EncodedPixels"])
    assert nonempty > 0  # the trained model finds defects, so the RLE check is not vacuous
    # the trained model has learnt something: better than "all background" on its kind of images
    acc = np.mean([(r.label_map == lab).mean() for r, (_, lab) in zip(report.results, pairs, strict=True)])
    bg_only = np.mean([(lab == 0).mean() for _, lab in pairs])
    assert acc > bg_only


def test_grayscale_rgb_png_bmp_jpeg_and_odd_sizes_in_one_run(model_dir: Path, tmp_path: Path) -> None:
    d = tmp_path / "in"
    write_images(d, 2, seed=1, ext=".png", prefix="gray_png")
    write_images(d, 2, seed=2, ext=".jpg", rgb=True, prefix="rgb_jpg")
    write_images(d, 1, seed=3, ext=".bmp", prefix="gray_bmp")
    write_images(d, 1, seed=4, ext=".bmp", rgb=True, h=70, w=150, prefix="rgb_bmp_odd")
    write_images(d, 1, seed=5, ext=".png", h=96, w=300, prefix="big")
    deep = (np.random.default_rng(0).random((64, 128)) * 65535).astype(np.uint16)
    Image.fromarray(deep).save(d / "deep.png")
    predictor = Predictor.from_path(model_dir, batch_size=4)
    report = predictor.predict_files(d, tmp_path / "out")
    assert not report.failures
    shapes = {r.image_id: r.shape for r in report.results}
    assert len(shapes) == 8
    assert shapes["rgb_bmp_odd000.bmp"] == (70, 150) and shapes["big000.png"] == (96, 300)
    assert shapes["deep.png"] == (64, 128)
    for r in report.results:
        assert np.asarray(Image.open(r.mask_path)).shape == r.shape
    assert read_image(d / "gray_png000.png").shape == (64, 256, 3)


def test_same_pixels_in_gray_and_rgb_files_give_the_same_masks(model_dir: Path, tmp_path: Path) -> None:
    gray = write_images(tmp_path / "g", 2, seed=7)
    rgb = write_images(tmp_path / "c", 2, seed=7, rgb=True, ext=".bmp")
    predictor = Predictor.from_path(model_dir)
    a = predictor.predict_files([p for p, _ in gray], None).results
    b = predictor.predict_files([p for p, _ in rgb], None).results
    for x, y in zip(a, b, strict=True):
        assert np.array_equal(x.label_map, y.label_map)


def test_max_side_downscales_for_the_network_but_keeps_output_size(model_dir: Path) -> None:
    rng = np.random.default_rng(0)
    from deploy_helpers import synth_sample

    img, _ = synth_sample(rng, 128, 512)
    predictor = Predictor.from_path(model_dir, max_side=256)
    x, size = predictor.preprocess(np.stack([img] * 3, axis=-1))
    assert size == (64, 256) and x.shape == (3, 64, 256)
    assert predictor.predict_image(img).shape == (128, 512)


class _HalfBackend:
    """Fake backend: class 1 certain on the left half of every image, background on the right."""

    name = "fake"

    def __init__(self) -> None:
        self.card = ModelCard(class_names=["background", "defect"])
        self.calls: list[np.ndarray] = []

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        self.calls.append(batch)
        n, _, h, w = batch.shape
        logits = np.zeros((n, 2, h, w), np.float32)
        logits[:, 1, :, : w // 2] = 20.0
        logits[:, 0, :, w // 2 :] = 20.0
        return logits


def test_flip_tta_averages_softmax_over_identity_hflip_and_vflip() -> None:
    img = np.full((32, 64, 3), 128, np.uint8)
    no_tta = Predictor(_HalfBackend(), PostProcess(threshold=0.7, min_area=0)).predict_image(img)
    assert no_tta[:, :32].all() and not no_tta[:, 32:].any()
    backend = _HalfBackend()
    tta = Predictor(backend, PostProcess(threshold=0.6, min_area=0), tta=True)
    # left half: mean of (1, 0, 1) = 2/3 >= 0.6; right half: 1/3
    assert np.array_equal(tta.predict_image(img), no_tta)
    assert len(backend.calls) == 3
    strict = Predictor(_HalfBackend(), PostProcess(threshold=0.7, min_area=0), tta=True)
    assert not strict.predict_image(img).any()  # 2/3 < 0.7: proves the flipped branch was averaged in


def test_bf16_on_cpu_runs_and_mostly_agrees_with_fp32(model_dir: Path, tmp_path: Path) -> None:
    write_images(tmp_path, 2, seed=21)
    post = PostProcess(threshold=None, min_area=0)
    fp32 = Predictor(TorchBackend(model_dir), post).predict_files(tmp_path, None).results
    bf16 = Predictor(TorchBackend(model_dir, bf16=True), post).predict_files(tmp_path, None).results
    agree = np.mean([(a.label_map == b.label_map).mean() for a, b in zip(fp32, bf16, strict=True)])
    assert agree > 0.97


# ------------------------------------------------------------------------------------ onnxruntime
def test_onnxruntime_masks_agree_with_pytorch(model_dir: Path, onnx_path: Path, tmp_path: Path) -> None:
    write_images(tmp_path / "in", 4, seed=31)
    write_images(tmp_path / "in", 1, seed=32, h=70, w=150, prefix="odd")
    torch_rep = Predictor.from_path(model_dir, tta=True).predict_files(tmp_path / "in", None)
    ort_pred = Predictor.from_path(onnx_path, tta=True)
    assert ort_pred.backend.name.startswith("onnxruntime")
    assert ort_pred.class_names == CLASS_NAMES
    ort_rep = ort_pred.predict_files(tmp_path / "in", None)
    total = sum(r.label_map.size for r in torch_rep.results)
    same = sum(int((a.label_map == b.label_map).sum()) for a, b in zip(torch_rep.results, ort_rep.results,
                                                                        strict=True))
    assert same / total >= 0.999
    assert any(r.label_map.any() for r in torch_rep.results)


def test_onnxruntime_backend_needs_no_pytorch_model_code(onnx_path: Path, tmp_path: Path) -> None:
    write_images(tmp_path / "in", 2, seed=41)
    code = (
        "import sys\n"
        "from steelkd.predict import Predictor\n"
        f"rep = Predictor.from_path({str(onnx_path)!r}).predict_files({str(tmp_path / 'in')!r}, "
        f"{str(tmp_path / 'out')!r})\n"
        "assert len(rep.results) == 2, rep\n"
        "bad = [m for m in sys.modules if m.startswith(('steelkd.models', 'steelkd.checkpoint', 'timm'))]\n"
        "assert not bad, bad\n"
        "print('ok')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "out" / "masks" / "img001.png").exists()


def test_onnx_file_without_model_card_is_a_clear_error(model_dir: Path, tmp_path: Path) -> None:
    from steelkd.export import to_onnx
    from steelkd.models.saved import load_model

    model, _ = load_model(model_dir)
    path = to_onnx(model, tmp_path / "bare.onnx", sample_size=(64, 64))
    with pytest.raises(ValueError, match=r"bare\.onnx.*steelkd\.model_card"):
        Predictor.from_path(path)


# ---------------------------------------------------------------------------------- bad inputs
def test_corrupt_files_are_skipped_and_reported(model_dir: Path, tmp_path: Path) -> None:
    pairs = write_images(tmp_path, 3, seed=51, ext=".jpg")
    good = pairs[0][0].read_bytes()
    (tmp_path / "truncated.jpg").write_bytes(good[: len(good) // 2])
    (tmp_path / "notanimage.png").write_bytes(b"hello, not a PNG")
    seen: list[tuple[str, str | None]] = []
    report = Predictor.from_path(model_dir).predict_files(
        tmp_path, tmp_path / "out", on_progress=lambda p, e: seen.append((p.name, e)))
    assert sorted(f.path.name for f in report.failures) == ["notanimage.png", "truncated.jpg"]
    assert all(f.path.name in f.error for f in report.failures)
    assert len(report.results) == 3 and len(seen) == 5
    assert sorted((tmp_path / "out" / "masks").iterdir()) == sorted(
        tmp_path / "out" / "masks" / f"{p.stem}.png" for p, _ in pairs)
    rows = _read_submission(tmp_path / "out" / "submission.csv")
    assert {r["ImageId"] for r in rows} == {p.name for p, _ in pairs}


def test_input_resolution_and_errors(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match="no image files found"):
        resolve_inputs(tmp_path / "empty")
    with pytest.raises(ValueError, match="no image files found"):
        resolve_inputs(str(tmp_path / "*.jpg"))
    with pytest.raises(FileNotFoundError, match=r"missing\.jpg"):
        resolve_inputs(tmp_path / "missing.jpg")
    pairs = write_images(tmp_path / "a", 2, seed=0)
    got = resolve_inputs([str(tmp_path / "a" / "*.png"), pairs[0][0], tmp_path / "a"])
    assert got == [p for p, _ in pairs]  # de-duplicated, order kept


def test_duplicate_stems_are_refused_before_writing(model_dir: Path, tmp_path: Path) -> None:
    write_images(tmp_path / "a", 1, seed=0, ext=".png")
    write_images(tmp_path / "b", 1, seed=0, ext=".jpg")
    with pytest.raises(ValueError, match="img000"):
        Predictor.from_path(model_dir).predict_files([tmp_path / "a", tmp_path / "b"], tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_softmax_is_stable_for_large_logits() -> None:
    p = softmax(np.array([[1000.0, 0.0], [-1000.0, -999.0]]), axis=1)
    assert np.isfinite(p).all() and np.allclose(p.sum(1), 1)


# ----------------------------------------------------------------------------------- real data
@pytest.mark.realdata
def test_real_severstal_images_plumbing(onnx_path: Path, tmp_path: Path) -> None:
    images = require_shared("severstal", "train_images")
    report = Predictor.from_path(onnx_path, batch_size=5).predict_files(images, tmp_path / "out",
                                                                        overlay_format="jpg")
    assert not report.failures and len(report.results) == 25
    masks = sorted((tmp_path / "out" / "masks").glob("*.png"))
    overlays = sorted((tmp_path / "out" / "overlays").glob("*.jpg"))
    assert len(masks) == 25 and len(overlays) == 25
    assert {m.stem for m in masks} == {p.stem for p in images.glob("*.jpg")}
    assert np.asarray(Image.open(masks[0])).shape == (256, 1600)
    assert np.asarray(Image.open(overlays[0])).shape == (256, 1600, 3)
    rows = _read_submission(tmp_path / "out" / "submission.csv")
    assert len(rows) == 100 and {r["ClassId"] for r in rows} == {"1", "2", "3", "4"}
    for row in rows[:8]:
        mask = np.asarray(Image.open(tmp_path / "out" / "masks" / Path(row["ImageId"]).with_suffix(".png")))
        expected = (mask == int(row["ClassId"])).astype(np.uint8)
        assert np.array_equal(rle_decode(row["EncodedPixels"]), expected)
