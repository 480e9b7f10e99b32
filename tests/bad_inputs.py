"""The bad inputs of the reliability matrix (``tests/test_bad_input.py``), each built in a temporary folder.

Every case is a :class:`Bad`: a group (the row of ``docs/reliability.md``), a name, and a builder that writes
the bad file(s) under a folder and returns the ``steelkd`` argv that meets them plus a piece of text the
one-line error must contain (the file, row or value it names). The lists are data, so the counts in
``docs/reliability.md`` are counted from them (``tests/test_reliability_doc.py``), never typed.
"""

from __future__ import annotations

import io
import json
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

#: the experiment presets
PRESETS = Path(__file__).resolve().parents[1] / "configs" / "experiments"

#: ``build(folder) -> (argv, text the error line must contain)``.
Builder = Callable[[Path], tuple[list[str], str]]


@dataclass(frozen=True)
class Bad:
    """One bad input: its ``group`` (a row of the reliability table), ``name`` and builder."""

    group: str
    name: str
    build: Builder
    #: run in a fresh ``steelkd`` process (training that reaches the Trainer logs through handlers that
    #: outlive typer's in-process runner)
    fresh: bool = False

    @property
    def id(self) -> str:
        return f"{self.group}:{self.name}"


# ------------------------------------------------------------------------------------------ builders
CSV_HEADER = "ImageId,ClassId,EncodedPixels\n"
SEV_SHAPE = (256, 1600)


def severstal(root: Path, csv_text: str | bytes, images: tuple[str, ...] = ("a.jpg",)) -> Path:
    """A Severstal layout: ``train.csv`` (as given) and small grey JPEGs of the Severstal size."""
    (root / "train_images").mkdir(parents=True, exist_ok=True)
    for name in images:
        Image.fromarray(np.full(SEV_SHAPE, 128, np.uint8)).save(root / "train_images" / name, quality=90)
    data = csv_text.encode() if isinstance(csv_text, str) else csv_text
    (root / "train.csv").write_bytes(data)
    return root


def _stats(csv_text: str | bytes, expect: str) -> Builder:
    """``steelkd data stats`` on a Severstal layout whose train.csv is ``csv_text``."""

    def build(tmp: Path) -> tuple[list[str], str]:
        root = severstal(tmp / "sev", csv_text)
        return ["data", "stats", "--data", str(root)], expect

    return build


def _rle(rle: str, expect: str) -> Builder:
    return _stats(CSV_HEADER + f"a.jpg,1,{rle}\n", expect)


def png_bytes(arr: np.ndarray, mode: str | None = None) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr, mode=mode).save(buf, format="PNG")
    return buf.getvalue()


def jpg_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def bomb_png(height: int = 20000, width: int = 20000) -> bytes:
    """A valid 1-bit PNG of ``height x width`` pixels (a few KB on disk, far over Pillow's pixel limit)."""
    raw = zlib.compress(b"".join(b"\x00" + bytes((width + 7) // 8) for _ in range(height)), 9)

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return len(data).to_bytes(4, "big") + body + zlib.crc32(body).to_bytes(4, "big")

    ihdr = height.to_bytes(4, "big")
    ihdr = width.to_bytes(4, "big") + ihdr + bytes([1, 0, 0, 0, 0])
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", raw) + chunk(b"IEND", b"")


FOLDER_NAMES = ("img0", "img1", "img2", "img3")


def flat_folder(root: Path, n: int = 4, size: tuple[int, int] = (64, 64)) -> Path:
    """A flat folder (``images/*.png`` + ``masks/*.png``, labels 0..2) with a split file putting
    ``img0``/``img1`` in train and ``img2``/``img3`` in test (validation)."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for name in FOLDER_NAMES[:n]:
        img = rng.integers(80, 160, size, dtype=np.uint8)
        mask = np.zeros(size, np.uint8)
        mask[8:24, 8:24] = 1
        mask[30:40, 30:60] = 2
        (root / "images" / f"{name}.png").write_bytes(png_bytes(img))
        (root / "masks" / f"{name}.png").write_bytes(png_bytes(mask))
    split = {"train": [f"{n}.png" for n in FOLDER_NAMES[:2]], "test": [f"{n}.png" for n in FOLDER_NAMES[2:n]]}
    (root / "split.json").write_text(json.dumps(split))
    return root


def resplit(root: Path) -> None:
    """Rewrite the split file with the current file names (img0/img1 train, the others test)."""
    names = sorted(p.name for p in (root / "images").iterdir())
    split = {
        "train": [n for n in names if n.startswith(("img0.", "img1."))],
        "test": [n for n in names if not n.startswith(("img0.", "img1."))],
    }
    (root / "split.json").write_text(json.dumps(split))


def severstal_train(tmp: Path, csv_text: str) -> list[str]:
    """``steelkd train`` argv on a Severstal layout with this train.csv (one image a.jpg on disk)."""
    root = severstal(tmp / "sev", csv_text)
    cfg = train_config(
        root,
        tmp / "run",
        data__kind="severstal",
        data__class_names=["background", "a", "b", "c", "d"],
        data__split_file="",
    )
    return _train_argv(tmp, cfg)


def train_config(root: Path, out: Path, **overrides: object) -> dict:
    """A tiny training config on the flat folder ``root`` (CPU, one epoch, 32x32 crops, no workers)."""
    cfg: dict = {
        "name": "bad-input",
        "data": {
            "kind": "folder",
            "root": str(root),
            "class_names": ["background", "a", "b"],
            "split_file": str(root / "split.json"),
            "val_fraction": 0,  # the split file's test side (img2, img3) validates: checked at set-up
            "crop": [32, 32],
            "batch_size": 2,
            "num_workers": 0,
        },
        "model": {"name": "resunet_convnext_atto"},
        "train": {
            "epochs": 1,
            "out_dir": str(out),
            "precision": "32",
            "accelerator": "cpu",
            "log_every": 1,
            "class_weights": "none",
        },
    }
    for dotted, value in overrides.items():
        node = cfg
        *parents, last = dotted.split("__")
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = value
    return cfg


def _train_argv(tmp: Path, cfg: dict | str) -> list[str]:
    path = tmp / "cfg.yaml"
    path.write_text(cfg if isinstance(cfg, str) else yaml.safe_dump(cfg))
    return ["train", "--config", str(path)]


def _predict_argv(tmp: Path, model: Path) -> list[str]:
    """``steelkd predict`` of ``model`` on one small image written to ``tmp/in``."""
    from deploy_helpers import write_images

    write_images(tmp / "in", 1, seed=0, h=32, w=64)
    return ["predict", "-m", str(model), "-i", str(tmp / "in"), "-o", str(tmp / "out"), "--no-progress"]


def _folder_file(
    rel: str, data: bytes | Callable[[Path], bytes], expect: str | None = None, **cfg: object
) -> Builder:
    """``steelkd train`` on a flat folder whose file ``rel`` is replaced by ``data``."""

    def build(tmp: Path) -> tuple[list[str], str]:
        root = flat_folder(tmp / "flat")
        target = root / rel
        for old in target.parent.glob(f"{target.stem}.*"):
            old.unlink()
        target.write_bytes(data(target) if callable(data) else data)
        resplit(root)
        return _train_argv(tmp, train_config(root, tmp / "run", **cfg)), expect or target.name

    return build


def _folder_edit(edit: Callable[[Path], str], **cfg: object) -> Builder:
    """``steelkd train`` on a flat folder changed by ``edit(root) -> expected text``."""

    def build(tmp: Path) -> tuple[list[str], str]:
        root = flat_folder(tmp / "flat")
        expect = edit(root)
        return _train_argv(tmp, train_config(root, tmp / "run", **cfg)), expect

    return build


def _config(
    text_or_cfg: Callable[[Path, Path], dict | str], expect: str, sets: tuple[str, ...] = ()
) -> Builder:
    """``steelkd train`` with a config made by ``text_or_cfg(root, out)`` (and ``--set`` items)."""

    def build(tmp: Path) -> tuple[list[str], str]:
        root = flat_folder(tmp / "flat")
        argv = _train_argv(tmp, text_or_cfg(root, tmp / "run"))
        for s in sets:
            argv += ["--set", s]
        return argv, expect

    return build


def _split(content: object | str, expect: str) -> Builder:
    """``steelkd train`` whose split file holds ``content`` (JSON-dumped unless a string)."""

    def edit(root: Path) -> str:
        (root / "split.json").write_text(content if isinstance(content, str) else json.dumps(content))
        return expect

    return _folder_edit(edit)


def _card(edit: Callable[[dict], object] | str, expect: str) -> Builder:
    """``steelkd predict`` with a copy of the tiny model whose ``model.json`` is edited (or replaced)."""

    def build(tmp: Path) -> tuple[list[str], str]:
        model = tmp / "model"
        (model / "model.safetensors").parent.mkdir(parents=True, exist_ok=True)
        src = Path(CARD_MODEL[0])
        (model / "model.safetensors").write_bytes((src / "model.safetensors").read_bytes())
        card = json.loads((src / "model.json").read_text())
        if isinstance(edit, str):
            text = edit
        else:
            new = edit(card)
            text = json.dumps(card if new is None else new)
        (model / "model.json").write_text(text)
        return _predict_argv(tmp, model), expect

    return build


#: The tiny model folder the card cases copy (set by the test module's fixture).
CARD_MODEL: list[str] = []


def _set(key: str, value: object) -> Callable[[dict], None]:
    def edit(card: dict) -> None:
        card[key] = value

    return edit


def _classes_yaml(text: str, expect: str) -> Builder:
    """``steelkd data stats --kind folder`` on a flat folder with this ``classes.yaml``."""

    def build(tmp: Path) -> tuple[list[str], str]:
        root = flat_folder(tmp / "flat")
        (root / "classes.yaml").write_text(text)
        return ["data", "stats", "--data", str(root), "--kind", "folder"], expect

    return build


def _rgba(tmp_mask: Path) -> bytes:
    return png_bytes(np.dstack([np.full((64, 64), v, np.uint8) for v in (0, 1, 2, 255)]))


# ------------------------------------------------------------------------------------------ the cases
GRAY = np.full((64, 64), 100, np.uint8)

BAD_CSV: list[Bad] = [
    Bad("csv", "empty file", _stats("", "empty file")),
    Bad("csv", "unknown header", _stats("Image,Class,Pixels\na.jpg,1,1 3\n", "unknown header")),
    Bad("csv", "too few fields", _stats(CSV_HEADER + "a.jpg,1\n", "line 2")),
    Bad("csv", "too many fields", _stats(CSV_HEADER + "a.jpg,1,1 3,x\n", "line 2")),
    Bad("csv", "ClassId not an integer", _stats(CSV_HEADER + "a.jpg,one,1 3\n", "'one'")),
    Bad("csv", "ClassId out of range", _stats(CSV_HEADER + "a.jpg,9,1 3\n", "ClassId 9")),
    Bad("csv", "ClassId zero", _stats(CSV_HEADER + "a.jpg,0,1 3\n", "ClassId 0")),
    Bad("csv", "empty ImageId", _stats(CSV_HEADER + ",1,1 3\n", "empty ImageId")),
    Bad(
        "csv",
        "old layout without class suffix",
        _stats("ImageId_ClassId,EncodedPixels\na.jpg,1 3\n", "'_<class>'"),
    ),
    Bad(
        "csv",
        "duplicate ImageId and ClassId",
        _stats(CSV_HEADER + "a.jpg,1,1 3\na.jpg,1,9 2\n", "second mask"),
    ),
    Bad("csv", "NUL byte", _stats(CSV_HEADER + "a.jpg,1,1 3\x00\n", "line")),
    Bad("csv", "not UTF-8", _stats(CSV_HEADER.encode() + b"a\xff\xfe.jpg,1,1 3\n", "train.csv")),
    Bad("csv", "binary garbage", _stats(bytes(range(256)) * 4, "train.csv")),
]

BAD_RLE: list[Bad] = [
    Bad("rle", "odd token count", _rle("1 3 7", "odd number")),
    Bad("rle", "non-numeric token", _rle("1 x", "'x'")),
    Bad("rle", "float token", _rle("1.5 3", "1.5")),
    Bad("rle", "start 0", _rle("0 3", "starts at 0")),
    Bad("rle", "negative start", _rle("-4 3", "-4")),
    Bad("rle", "zero length", _rle("5 0", "length 0")),
    Bad("rle", "overlapping runs", _rle("1 10 5 3", "overlap")),
    Bad("rle", "unsorted runs", _rle("50 3 1 3", "sorted")),
    Bad("rle", "past the image", _rle(f"{256 * 1600} 5", "past")),
    Bad("rle", "huge token", _rle("1 99999999999999999999999", "too large")),
]

BAD_IDS: list[Bad] = [
    Bad(
        "ids",
        "train.csv names a missing image",
        lambda tmp: (severstal_train(tmp, CSV_HEADER + "a.jpg,1,1 3\nzz.jpg,1,1 3\n"), "zz.jpg"),
    ),
    Bad("ids", "image without a mask", _folder_edit(lambda r: (r / "masks" / "img3.png").unlink() or "img3")),
    Bad(
        "ids", "mask without an image", _folder_edit(lambda r: (r / "images" / "img3.png").unlink() or "img3")
    ),
    Bad(
        "ids",
        "two images share a name",
        _folder_edit(lambda r: ((r / "images" / "img1.jpg").write_bytes(jpg_bytes(GRAY)), "img1")[1]),
    ),
]

BAD_IMAGES: list[Bad] = [
    Bad(
        "image",
        "truncated PNG",
        _folder_file(
            "images/img2.png",
            lambda p: png_bytes(np.random.default_rng(1).integers(0, 255, (64, 64), dtype=np.uint8))[:300],
        ),
    ),
    Bad(
        "image",
        "truncated JPEG",
        _folder_file(
            "images/img2.jpg",
            lambda p: jpg_bytes(np.random.default_rng(1).integers(0, 255, (64, 64), dtype=np.uint8))[:400],
        ),
    ),
    Bad(
        "image",
        "corrupt JPEG (header bytes flipped)",
        _folder_file(
            "images/img2.jpg",
            lambda p: (lambda b: b[:2] + bytes(x ^ 0xFF for x in b[2:40]) + b[40:])(
                jpg_bytes(np.random.default_rng(1).integers(0, 255, (64, 64), dtype=np.uint8))
            ),
        ),
    ),
    Bad("image", "zero-byte file", _folder_file("images/img2.png", b"")),
    Bad("image", "not an image (text)", _folder_file("images/img2.png", b"hello, I am not a PNG\n")),
    Bad("image", "huge (decompression bomb)", _folder_file("images/img2.png", lambda p: bomb_png())),
    Bad("image", "1x1 image", _folder_file("images/img2.png", png_bytes(np.zeros((1, 1), np.uint8)), "1x1")),
    Bad(
        "image",
        "image and mask of different sizes",
        _folder_file("images/img2.png", png_bytes(np.zeros((48, 64), np.uint8)), "48x64"),
    ),
    Bad(
        "image",
        "corrupt image met mid-training (train split)",
        _folder_file("images/img0.png", b"\x89PNG junk"),
        fresh=True,
    ),
    Bad(
        "image",
        "validation image smaller than the network's stride",
        _folder_edit(
            lambda r: (
                (r / "images" / "img2.png").write_bytes(png_bytes(np.zeros((1, 1), np.uint8))),
                (r / "masks" / "img2.png").write_bytes(png_bytes(np.zeros((1, 1), np.uint8))),
                "1x1",
            )[2]
        ),
    ),
    Bad(
        "image",
        "corrupt image met mid-training in a DataLoader worker",
        _folder_file("images/img0.png", b"\x89PNG junk", data__num_workers=1),
        fresh=True,
    ),
]

BAD_MASKS: list[Bad] = [
    Bad(
        "mask",
        "label outside the classes",
        _folder_file("masks/img2.png", png_bytes(np.full((64, 64), 7, np.uint8)), "label value 7"),
    ),
    Bad(
        "mask",
        "label 255 (void)",
        _folder_file("masks/img3.png", png_bytes(np.full((64, 64), 255, np.uint8)), "label value 255"),
    ),
    Bad(
        "mask",
        "colour mask",
        _folder_file("masks/img2.png", png_bytes(np.dstack([GRAY, GRAY // 2, GRAY // 3])), "channels"),
    ),
    Bad("mask", "RGBA mask with different channels", _folder_file("masks/img2.png", _rgba, "channels")),
    Bad(
        "mask",
        "truncated mask PNG",
        _folder_file(
            "masks/img2.png",
            lambda p: png_bytes(np.random.default_rng(2).integers(0, 3, (64, 64), dtype=np.uint8))[:100],
        ),
    ),
    Bad(
        "mask",
        "16-bit mask with values over 255",
        _folder_file("masks/img2.png", png_bytes(np.full((64, 64), 1000, np.uint16)), "0..255"),
    ),
]

BAD_EMPTY: list[Bad] = [
    Bad(
        "empty",
        "flat folder without images",
        _folder_edit(
            lambda r: [p.unlink() for p in (*r.glob("images/*"), *r.glob("masks/*"))] and "no images"
        ),
    ),
    Bad(
        "empty",
        "train.csv with a header only",
        lambda tmp: (["data", "split", "--data", str(severstal(tmp / "sev", CSV_HEADER))], "empty"),
    ),
    Bad(
        "empty",
        "empty validation split",
        _split({"train": ["img0.png", "img1.png"], "test": []}, "empty data set"),
    ),
    Bad(
        "empty",
        "empty training split",
        _split({"train": [], "test": ["img2.png", "img3.png"]}, "empty data set"),
    ),
    Bad(
        "empty",
        "prediction input folder without images",
        lambda tmp: (
            (tmp / "in").mkdir()
            or ["predict", "-m", str(tmp / "none"), "-i", str(tmp / "in"), "-o", str(tmp / "o")],
            "no image files",
        ),
    ),
]

BAD_SPLIT: list[Bad] = [
    Bad("split", "not JSON", _split("{train: [", "not valid JSON")),
    Bad("split", "a list, not an object", _split(["img0.png"], "not a steelkd split file")),
    Bad("split", "missing 'test'", _split({"train": ["img0.png"]}, "not a steelkd split file")),
    Bad("split", "ids that are not strings", _split({"train": [[1, 2]], "test": [{"a": 1}]}, "split.json")),
    Bad("split", "an image in both lists", _split({"train": ["img0.png"], "test": ["img0.png"]}, "both")),
    Bad(
        "split",
        "an unknown image",
        _split({"train": ["img0.png", "nope.png"], "test": ["img2.png"]}, "nope.png"),
    ),
    Bad(
        "split",
        "path id escaping the folder",
        _split({"train": ["../../etc/passwd"], "test": ["img2.png"]}, "../../etc/passwd"),
    ),
]


def _cfg_text(text: str) -> Callable[[Path, Path], str]:
    return lambda root, out: text


def _cfg(**overrides: object) -> Callable[[Path, Path], dict]:
    return lambda root, out: train_config(root, out, **overrides)


BAD_CONFIG: list[Bad] = [
    Bad("config", "not YAML", _config(_cfg_text("data: [\n"), "not valid YAML")),
    Bad("config", "a list at the top", _config(_cfg_text("- 1\n- 2\n"), "mapping")),
    Bad("config", "unknown top-level key", _config(_cfg(trian={"epochs": 1}), "trian")),
    Bad("config", "unknown nested key", _config(_cfg(train__lrr=1e-3), "train.lrr")),
    Bad("config", "non-string key", _config(_cfg_text("1: a\nname: x\n"), "1")),
    Bad("config", "section is a list", _config(_cfg(data=[1, 2]), "data")),
    Bad("config", "section is null", _config(_cfg(train=None), "train")),
    Bad("config", "int field gets a word", _config(_cfg(train__epochs="ten"), "train.epochs")),
    Bad("config", "int field gets a float", _config(_cfg(train__epochs=1.5), "train.epochs")),
    Bad("config", "int field gets a bool", _config(_cfg(data__batch_size=True), "data.batch_size")),
    Bad("config", "float field gets a word", _config(_cfg(train__lr="fast"), "train.lr")),
    Bad("config", "list field gets a number", _config(_cfg(data__crop=5), "data.crop")),
    Bad("config", "list of ints gets words", _config(_cfg(data__crop=["a", "b"]), "data.crop")),
    Bad("config", "class names not strings", _config(_cfg(data__class_names=[0, 1, 2]), "data.class_names")),
    Bad("config", "bool field gets a word", _config(_cfg(data__defect_only="maybe"), "data.defect_only")),
    Bad("config", "dict field gets a list", _config(_cfg(model__kwargs=[1]), "model.kwargs")),
    Bad("config", "unknown data.kind", _config(_cfg(data__kind="csv"), "data.kind")),
    Bad("config", "batch size 0", _config(_cfg(data__batch_size=0), "data.batch_size")),
    Bad("config", "negative epochs", _config(_cfg(train__epochs=-1), "train.epochs")),
    Bad("config", "negative workers", _config(_cfg(data__num_workers=-2), "data.num_workers")),
    Bad("config", "test fraction above 1", _config(_cfg(data__test_fraction=1.5), "data.test_fraction")),
    Bad("config", "crop of zero size", _config(_cfg(data__crop=[0, 32]), "data.crop")),
    Bad("config", "NaN learning rate", _config(_cfg(train__lr=float("nan")), "train.lr")),
    Bad("config", "unknown model", _config(_cfg(model__name="resnet_9000"), "resnet_9000")),
    Bad("config", "--set without '='", _config(_cfg(), "train.lr", sets=("train.lr",))),
    Bad("config", "--set value not YAML", _config(_cfg(), "train.lr", sets=("train.lr=[1,",))),
    Bad("config", "--set into a scalar", _config(_cfg(), "train.lr", sets=("train.lr.x=1",))),
    Bad("config", "--set unknown key", _config(_cfg(), "train.nope", sets=("train.nope=1",))),
    Bad(
        "config",
        "config file missing",
        lambda tmp: (["train", "--config", str(tmp / "nope.yaml")], "nope.yaml"),
    ),
    Bad(
        "config",
        "experiment --only names no experiment",
        lambda tmp: (
            ["experiment", "--config", str(PRESETS / "demo.yaml"), "--out", str(tmp / "o"), "--only", "nope"],
            "no experiment named 'nope'",
        ),
    ),
]

BAD_CARD: list[Bad] = [
    Bad("card", "not JSON", _card("{class_names: [", "model.json")),
    Bad("card", "a list, not an object", _card("[1, 2]", "model.json")),
    Bad(
        "card",
        "no class names nor num_classes",
        _card(
            lambda c: {k: v for k, v in c.items() if k not in ("class_names", "num_classes")}, "class_names"
        ),
    ),
    Bad("card", "class names not a list", _card(_set("class_names", "background,a"), "class_names")),
    Bad("card", "class names not strings", _card(_set("class_names", [0, 1, 2, 3, 4]), "class_names")),
    Bad(
        "card",
        "class count differs from the weights",
        _card(_set("class_names", ["background", "a"]), "model.json"),
    ),
    Bad("card", "normalization a list", _card(_set("normalization", [1, 2]), "normalization")),
    Bad(
        "card",
        "normalization mean words",
        _card(_set("normalization", {"mean": ["a", "b", "c"]}), "normalization"),
    ),
    Bad(
        "card",
        "normalization on the 0..255 scale",
        _card(_set("normalization", {"mean": [124, 116, 104], "std": [58, 57, 57], "scale": 1}), "0..1"),
    ),
    Bad("card", "unknown architecture", _card(_set("architecture", "resnet_9000"), "resnet_9000")),
    Bad("card", "model kwargs not a mapping", _card(_set("model_kwargs", [1]), "model_kwargs")),
    Bad("card", "postprocess unknown field", _card(_set("postprocess", {"thresholdz": 0.5}), "thresholdz")),
    Bad(
        "card",
        "postprocess threshold out of range",
        _card(_set("postprocess", {"threshold": 3.0}), "postprocess"),
    ),
    Bad("card", "postprocess not an object", _card(_set("postprocess", "argmax"), "postprocess")),
]


def _model_file(name: str, data: bytes | Callable[[Path], bytes], expect: str) -> Builder:
    """``steelkd predict`` with the model file ``name`` holding ``data`` (``dir/file``: a folder's file)."""

    def build(tmp: Path) -> tuple[list[str], str]:
        src = Path(CARD_MODEL[0])
        if "/" in name:
            folder = tmp / name.split("/")[0]
            folder.mkdir()
            for f in src.iterdir():
                (folder / f.name).write_bytes(f.read_bytes())
            target, model = tmp / name, folder
        else:
            target = model = tmp / name
        target.write_bytes(data(src) if callable(data) else data)
        return _predict_argv(tmp, model), expect

    return build


BAD_MODEL_FILES: list[Bad] = [
    Bad("model", "garbage .ckpt", _model_file("m.ckpt", b"not a checkpoint at all", "m.ckpt")),
    Bad("model", "truncated .ckpt zip", _model_file("m.ckpt", b"PK\x03\x04" + bytes(60), "m.ckpt")),
    Bad("model", "garbage .onnx", _model_file("m.onnx", b"\x08\x07garbage", "m.onnx")),
    Bad("model", "garbage OpenVINO .xml", _model_file("m.xml", b"<net><layers>", "m.xml")),
    Bad(
        "model",
        "truncated model.safetensors",
        _model_file(
            "mdl/model.safetensors",
            lambda src: (src / "model.safetensors").read_bytes()[:1000],
            "model.safetensors",
        ),
    ),
    Bad(
        "model",
        "safetensors of other shapes",
        _model_file("mdl/model.safetensors", lambda src: _other_weights(), "model.safetensors"),
    ),
]


def _other_weights() -> bytes:
    import torch
    from safetensors.torch import save

    return save({"encoder.weight": torch.zeros(2, 2)})


BAD_CLASSES: list[Bad] = [
    Bad("classes", "classes.yaml not YAML", _classes_yaml("classes: [\n", "classes.yaml")),
    Bad("classes", "classes.yaml without a list", _classes_yaml("format: x\n", "classes.yaml")),
    Bad(
        "classes",
        "ids out of order",
        _classes_yaml("classes:\n- {id: 0, name: background}\n- {id: 2, name: a}\n", "class entry 1"),
    ),
    Bad(
        "classes",
        "duplicate names",
        _classes_yaml("classes:\n- {id: 0, name: background}\n- {id: 1, name: background}\n", "unique"),
    ),
    Bad(
        "classes",
        "colour of words",
        _classes_yaml("classes:\n- {id: 0, name: background, color: [a, b, c]}\n", "classes.yaml"),
    ),
    Bad("classes", "a list at the top", _classes_yaml("- background\n", "classes.yaml")),
]

#: Every bad input, by group (the rows of docs/reliability.md).
ALL_BAD: list[Bad] = [
    *BAD_CSV,
    *BAD_RLE,
    *BAD_IDS,
    *BAD_IMAGES,
    *BAD_MASKS,
    *BAD_EMPTY,
    *BAD_SPLIT,
    *BAD_CONFIG,
    *BAD_CARD,
    *BAD_MODEL_FILES,
    *BAD_CLASSES,
]
