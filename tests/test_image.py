"""The one image reader (data/image.py) and the model card reader (card.py)."""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from conftest import require_shared
from steelkd.card import ModelCard
from steelkd.data.image import image_size, normalize, read_image


def _rgb(h: int = 12, w: int = 20) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (h, w, 3)).astype(np.uint8)


def test_modes_come_back_as_rgb_uint8(tmp_path: Path) -> None:
    rgb = _rgb()
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    np.testing.assert_array_equal(read_image(tmp_path / "rgb.png"), rgb)
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 7, np.uint8)])
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    np.testing.assert_array_equal(read_image(tmp_path / "rgba.png"), rgb)  # alpha dropped
    gray = rgb[..., 0]
    Image.fromarray(gray).save(tmp_path / "gray.png")
    np.testing.assert_array_equal(read_image(tmp_path / "gray.png"), np.dstack([gray] * 3))
    Image.fromarray(gray).convert("P").save(tmp_path / "pal.png")
    assert read_image(tmp_path / "pal.png").shape == (12, 20, 3)
    g16 = (np.arange(12 * 20, dtype=np.uint16).reshape(12, 20) * 270).astype(np.uint16)
    Image.fromarray(g16).save(tmp_path / "g16.png")
    out = read_image(tmp_path / "g16.png")
    np.testing.assert_array_equal(out[..., 0], np.clip(g16 * 255.0 / 65535 + 0.5, 0, 255).astype(np.uint8))


def test_missing_truncated_and_non_image_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nope\.jpg: image file not found"):
        read_image(tmp_path / "nope.jpg")
    buf = io.BytesIO()
    Image.fromarray(_rgb(64, 64)).save(buf, format="JPEG")
    (tmp_path / "cut.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(ValueError, match=r"cut\.jpg: cannot read image"):
        read_image(tmp_path / "cut.jpg")
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(ValueError, match=r"text\.png: cannot read image"):
        read_image(tmp_path / "text.png")
    with pytest.raises(ValueError, match=r"text\.png: cannot read image"):
        image_size(tmp_path / "text.png")


def test_exif_rotation_is_applied_and_the_header_size_agrees(tmp_path: Path) -> None:
    rgb = _rgb(10, 30)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when shown
    Image.fromarray(rgb).save(tmp_path / "rot.jpg", exif=exif, quality=100)
    out = read_image(tmp_path / "rot.jpg")
    assert out.shape == (30, 10, 3)
    assert image_size(tmp_path / "rot.jpg") == (30, 10)


def test_normalize_uses_the_given_statistics() -> None:
    img = np.full((2, 3, 3), 255, np.uint8)
    x = normalize(img, mean=(0.5, 0.5, 0.5), std=(0.5, 0.25, 0.5))
    np.testing.assert_allclose(x[:, 0, 0], [1.0, 2.0, 1.0], atol=1e-6)
    with pytest.raises(ValueError, match="positive stds"):
        normalize(img, std=(0.5, 0.0, 0.5))


def test_model_card_reader_validates_and_refuses_pixel_scale_statistics() -> None:
    norm = {"mean": [0.5] * 3, "std": [0.2] * 3}
    card = ModelCard.from_dict({"num_classes": 3, "normalization": norm}, "m")
    assert card.class_names == ["background", "class1", "class2"] and card.std == (0.2, 0.2, 0.2)
    with pytest.raises(ValueError, match=r"m\.json: .*0\.\.1 scale"):
        ModelCard.from_dict({"num_classes": 2, "normalization": {"mean": [124, 116, 104]}}, "m.json")
    with pytest.raises(ValueError, match="neither class_names nor num_classes"):
        ModelCard.from_dict({}, "m.json")
    with pytest.raises(ValueError, match="3 means"):
        ModelCard.from_dict({"num_classes": 2, "normalization": {"mean": [0.1, 0.2]}}, "m.json")


@pytest.mark.realdata
def test_pillow_decodes_the_real_jpegs_as_opencv_did() -> None:
    """Training read with OpenCV before the decoders were unified: Pillow gives the same pixels."""
    files = sorted(require_shared("severstal", "train_images").glob("*.jpg"))
    files += sorted(require_shared("neu_seg", "images", "test").glob("*.jpg"))[:200]
    assert len(files) >= 200
    for f in files:
        ref = cv2.cvtColor(cv2.imread(str(f), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        np.testing.assert_array_equal(read_image(f), ref, err_msg=str(f))


def test_a_missing_optional_dependency_is_one_line_naming_the_extra() -> None:
    from steelkd.runtime import require_extra

    with pytest.raises(ValueError, match=r"'steelkd_no_such_module'.*pip install 'steelkd\[openvino\]'"):
        require_extra("steelkd_no_such_module", "openvino")
