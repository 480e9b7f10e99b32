"""RLE codec: real Severstal rows, property tests, malformed input."""

from __future__ import annotations

import ast

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy import ndimage

from conftest import require_shared
from steelkd.data.rle import rle_decode, rle_encode, rle_runs


def naive_encode(mask: np.ndarray) -> str:
    """Reference: walk the column-major pixels one by one."""
    flat = (np.asarray(mask) != 0).T.reshape(-1).tolist()
    out, i = [], 0
    while i < len(flat):
        if flat[i]:
            j = i
            while j < len(flat) and flat[j]:
                j += 1
            out += [i + 1, j - i]
            i = j
        else:
            i += 1
    return " ".join(map(str, out))


# ------------------------------------------------------------------------------------------ real data


@pytest.fixture(scope="module")
def subset() -> pd.DataFrame:
    return pd.read_csv(require_shared("severstal", "train_subset.csv"))


def test_real_rows_round_trip(subset: pd.DataFrame) -> None:
    assert len(subset) == 2845
    for rle in subset["EncodedPixels"]:
        mask = rle_decode(rle)
        assert mask.shape == (256, 1600) and mask.dtype == np.uint8
        assert rle_encode(mask) == rle
        assert rle_encode(np.ascontiguousarray(mask)) == rle  # the C-ordered path too


def test_real_single_vector_file() -> None:
    rle = require_shared("severstal", "rle_0002cc93b.jpg_class1.txt").read_text().strip()
    mask = rle_decode(rle)
    assert int(mask.sum()) == 4396
    assert ndimage.label(mask, structure=np.ones((3, 3)))[1] == 5
    assert rle_encode(mask) == rle


def test_real_rows_match_component_boxes(subset: pd.DataFrame) -> None:
    """Decoded masks reproduce the independent 8-connected boxes (checks orientation and offsets)."""
    boxes = pd.read_csv(require_shared("severstal", "train_bboxes.csv"))
    labels = pd.read_csv(require_shared("severstal", "image_labels.csv"))
    # train_bboxes.csv rows follow the full train.csv: by ImageId, then ClassId, one per present class
    present = {
        r.ImageId_ClassId: [c for c in (1, 2, 3, 4) if getattr(r, f"_{c + 1}") == 1]
        for r in labels.itertuples(index=True)
    }
    expected: dict[tuple[str, int], list[list[int]]] = {}
    for image_id, group in boxes.groupby("ImageId", sort=False):
        classes = present[image_id]
        assert len(classes) == len(group), image_id
        for cls, text in zip(classes, group["bboxes"], strict=True):
            expected[(image_id, cls)] = ast.literal_eval(text)
    structure = np.ones((3, 3), dtype=int)
    for row in subset.itertuples(index=False):
        mask = rle_decode(row.EncodedPixels)
        starts, lengths = rle_runs(row.EncodedPixels)
        c0, c1 = int(starts[0]) // 256, int(starts[-1] + lengths[-1] - 1) // 256 + 1  # columns in use
        lab, _ = ndimage.label(mask[:, c0:c1], structure=structure)
        got = [
            [s[0].start, s[1].start + c0, s[0].stop - 1, s[1].stop - 1 + c0]
            for s in ndimage.find_objects(lab)
        ]
        assert sorted(got) == sorted(expected[(row.ImageId, row.ClassId)]), (row.ImageId, row.ClassId)


# ------------------------------------------------------------------------------------- property tests


@st.composite
def masks(draw: st.DrawFn) -> np.ndarray:
    h = draw(st.integers(1, 12))
    w = draw(st.one_of(st.integers(1, 12), st.sampled_from([8, 16, 24])))  # multiples of 8: word path
    values = draw(st.sampled_from([(0, 1), (0, 1, 255)]))
    arr = draw(hnp.arrays(np.uint8, (h, w), elements=st.sampled_from(values)))
    order = draw(st.sampled_from(["C", "F", "bool", "int64", "strided"]))
    if order == "F":
        return np.asfortranarray(arr)
    if order == "bool":
        return arr != 0
    if order == "int64":
        return arr.astype(np.int64)
    if order == "strided":
        big = np.zeros((h, 2 * w), dtype=np.uint8)
        big[:, ::2] = arr
        return big[:, ::2]
    return arr


@settings(max_examples=400, deadline=None)
@given(masks())
def test_round_trip_random_masks(mask: np.ndarray) -> None:
    rle = rle_encode(mask)
    assert rle == naive_encode(mask)
    decoded = rle_decode(rle, mask.shape)
    np.testing.assert_array_equal(decoded, (np.asarray(mask) != 0).astype(np.uint8))
    assert decoded.dtype == np.uint8


@settings(max_examples=300, deadline=None)
@given(masks())
def test_encode_is_canonical(mask: np.ndarray) -> None:
    rle = rle_encode(mask)
    if not mask.any():
        assert rle == ""
        return
    assert rle == " ".join(rle.split())  # single spaces, no padding
    vals = np.array(rle.split(), dtype=np.int64)
    starts, lengths = vals[0::2], vals[1::2]
    assert (starts >= 1).all() and (lengths >= 1).all()
    assert (starts[1:] > starts[:-1] + lengths[:-1]).all()  # sorted, disjoint and never touching
    assert int(lengths.sum()) == int(np.count_nonzero(mask))


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_decode_of_canonical_runs_re_encodes_identically(data: st.DataObject) -> None:
    h, w = data.draw(st.integers(1, 10)), data.draw(st.integers(1, 10))
    n = h * w
    cuts = sorted(set(data.draw(st.lists(st.integers(0, n), max_size=12))))
    bounds = cuts[: len(cuts) // 2 * 2]
    pairs = [(s + 1, e - s) for s, e in zip(bounds[0::2], bounds[1::2], strict=True) if e > s]
    # merge touching runs so the string is canonical
    merged: list[list[int]] = []
    for s, length in pairs:
        if merged and merged[-1][0] + merged[-1][1] == s:
            merged[-1][1] += length
        else:
            merged.append([s, length])
    rle = " ".join(f"{s} {length}" for s, length in merged)
    assert rle_encode(rle_decode(rle, (h, w))) == rle


# ------------------------------------------------------------------------------------- special cases


@pytest.mark.parametrize("empty", ["", "   ", None, float("nan"), np.nan])
def test_empty_inputs_give_empty_mask(empty: object) -> None:
    m = rle_decode(empty, (3, 4))
    assert m.shape == (3, 4) and m.dtype == np.uint8 and not m.any()
    assert rle_runs(empty)[0].size == 0


def test_column_major_orientation() -> None:
    # pixel 2 (1-based) is row 1, column 0; pixel 5 is row 0, column 1 of a 4-high image
    m = rle_decode("2 1 5 1", (4, 3))
    assert m[1, 0] == 1 and m[0, 1] == 1 and m.sum() == 2
    assert rle_encode(np.zeros((5, 7), np.uint8)) == ""
    assert rle_encode(np.ones((2, 3), np.uint8)) == "1 6"


def test_whitespace_variants_decode() -> None:
    a = rle_decode(" 1 2\t 5  1\n", (3, 3))
    assert rle_encode(a) == "1 2 5 1"


@pytest.mark.parametrize(
    ("rle", "match"),
    [
        ("1 2 x 4", r"token 'x' \(token 3\) is not an integer"),
        ("1.5 2", r"token '1.5' \(token 1\) is not an integer"),
        ("1 2 3", r"odd number of tokens \(3\)"),
        ("0 2", r"run 1 starts at 0; starts are 1-based"),
        ("-4 2", r"run 1 starts at -4"),
        ("1 2 5 0", r"run 2 has length 0"),
        ("1 2 5 -1", r"run 2 has length -1"),
        ("10 2 3 1", r"run 2 starts at 3, before run 1 ends \(11\).*sorted.*overlap"),
        ("1 5 3 1", r"run 2 starts at 3, before run 1 ends \(5\)"),
        ("12 2", r"run 1 \(12 2\) ends at pixel 13, past the 3x4 image \(12 pixels\)"),
        ("99999999999999999999 1", r"token 1 is too large"),
    ],
)
def test_malformed_rle_raises(rle: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        rle_decode(rle, (3, 4))
    if "past" not in match:
        with pytest.raises(ValueError, match=match):
            rle_runs(rle)


def test_non_string_and_bad_mask_shapes() -> None:
    with pytest.raises(ValueError, match="must be a string"):
        rle_decode(12, (3, 3))
    with pytest.raises(ValueError, match="2-D"):
        rle_encode(np.zeros((2, 2, 2)))
    assert rle_decode("11 2", (3, 4)).sum() == 2  # ends exactly on the last pixel: valid


def naive_decode(tokens: list[int], shape: tuple[int, int]) -> np.ndarray | None:
    """Reference: None for an invalid token list, else the mask, one pixel at a time."""
    n = shape[0] * shape[1]
    if len(tokens) % 2:
        return None
    flat = [0] * n
    last_end = 1
    for s, length in zip(tokens[0::2], tokens[1::2], strict=True):
        if s < 1 or length < 1 or s < last_end or s + length - 1 > n:
            return None
        for p in range(s - 1, s - 1 + length):
            flat[p] = 1
        last_end = s + length
    return np.array(flat, dtype=np.uint8).reshape(shape[1], shape[0]).T


@settings(max_examples=400, deadline=None)
@given(
    st.lists(st.one_of(st.integers(-3, 40), st.sampled_from([0, 2**40, 2**63 - 1])), max_size=10),
    st.integers(1, 6),
    st.integers(1, 6),
    st.sampled_from([" ", "  ", "\t"]),
)
def test_decode_matches_reference_or_raises(tokens: list[int], h: int, w: int, sep: str) -> None:
    """Valid token lists decode like the pixel-by-pixel reference; invalid ones raise ValueError."""
    text = sep.join(map(str, tokens))
    expected = naive_decode(tokens, (h, w))
    if expected is None:
        with pytest.raises(ValueError, match="RLE"):
            rle_decode(text, (h, w))
        with pytest.raises(ValueError, match="RLE"):
            rle_runs(text, (h, w))
    else:
        np.testing.assert_array_equal(rle_decode(text, (h, w)), expected)
        _, lengths = rle_runs(text, (h, w))
        assert int(lengths.sum()) == int(expected.sum())
