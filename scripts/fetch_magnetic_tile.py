"""Convert the Magnetic Tile defect data set into steelkd's flat folder layout (binary: background, defect).

Source: https://github.com/abin24/Magnetic-tile-defect-datasets. (the trailing dot is part of the name),
commit cc4eb530b57b9cb7225bf76023873043ffd50655 (2020-05-09). 1,344 grayscale JPEG images of magnetic
tiles in six folders ``MT_Blowhole``, ``MT_Break``, ``MT_Crack``, ``MT_Fray``, ``MT_Uneven`` and
``MT_Free`` (defect-free); each ``Imgs/`` folder holds ``NAME.jpg`` and its pixel mask ``NAME.png``
(grayscale, 0 background, 255 defect, with anti-aliased edge values in between).

Citation: Y. Huang, C. Qiu, Y. Guo, X. Wang, K. Yuan, "Surface Defect Saliency of Magnetic Tile", IEEE
CASE 2018, pp. 612-617 (the repository's README calls it "Saliency of magnetic tile surface defects";
journal version: Y. Huang, C. Qiu, K. Yuan, The Visual Computer 36:85-96, 2020).
Licence: none stated. The repository has no LICENSE file; its README says "It is welcomed to use our
dataset. And if it is used in your research, please cite our paper." Treat it as research use with
citation; ask the authors before redistributing. **The data is never committed to this repository**:
it lives outside it (``/work/data/magnetic_tile``) and this script recreates it.

What it writes (``--out``, default ``/work/data/magnetic_tile``), through ``steelkd data import``'s
``mask-suffix`` importer::

    images/<type>__<stem>.jpg   the JPEGs byte for byte; <type> is blowhole, break, crack, fray, uneven
                                or free, so the defect type stays in the name
    masks/<type>__<stem>.png    uint8 label maps: 0 background, 1 defect (source mask value > 127)
    classes.yaml                background, defect
    import_report.json          the importer's report
    SOURCE.txt                  where the files came from (repository, commit, counts)

The importer is fed a staging folder (``.<out>.staging`` beside ``--out``, removed afterwards), because
the source masks share the images' stem and folder (``NAME.jpg`` + ``NAME.png``) and are not strictly
0/255: the script renames, thresholds the masks to 0/255 and decodes every image and mask on the way.

Usage (from the repository root)::

    # fetch the repository first; its git directory is then e.g.
    # /work/.mirror/abin24+Magnetic-tile-defect-datasets./repo
    .venv/bin/python scripts/fetch_magnetic_tile.py \\
        --mirror "/work/.mirror/abin24+Magnetic-tile-defect-datasets./repo" --out /work/data/magnetic_tile
    # or, from a checkout / unpacked copy holding the MT_* folders:
    .venv/bin/python scripts/fetch_magnetic_tile.py --src PATH/Magnetic-tile-defect-datasets. \\
        --out /work/data/magnetic_tile
"""

from __future__ import annotations

import argparse
import io
import shutil
import subprocess
import tarfile
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image

from steelkd.data.importers import ImportOptions, import_annotations

REPO_URL = "https://github.com/abin24/Magnetic-tile-defect-datasets."
KNOWN_COMMIT = "cc4eb530b57b9cb7225bf76023873043ffd50655"
TYPES = ("Blowhole", "Break", "Crack", "Fray", "Uneven", "Free")
EXPECTED = {"Blowhole": 115, "Break": 85, "Crack": 57, "Fray": 32, "Uneven": 103, "Free": 952}


def extract_mirror(git_dir: Path, dest: Path) -> str:
    """Unpack ``HEAD`` of the bare repository ``git_dir`` into ``dest``; return the commit id."""
    commit = subprocess.run(
        ["git", "--git-dir", str(git_dir), "rev-parse", "HEAD"], check=True, capture_output=True, text=True
    ).stdout.strip()
    tar = subprocess.run(
        ["git", "--git-dir", str(git_dir), "archive", "--format=tar", commit],
        check=True,
        capture_output=True,
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(tar)) as tf:
        members = [m for m in tf.getmembers() if m.name.startswith("MT_")]
        extra = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        tf.extractall(dest, members=members, **extra)
    return commit


def stage(src: Path, staging: Path, threshold: int, skip_free: bool) -> Counter:
    """Copy the images and write thresholded 0/255 masks as ``<type>__<stem>`` into ``staging``."""
    (staging / "images").mkdir(parents=True)
    (staging / "masks").mkdir()
    counts: Counter = Counter()
    for kind in TYPES:
        if skip_free and kind == "Free":
            continue
        folder = src / f"MT_{kind}" / "Imgs"
        if not folder.is_dir():
            raise SystemExit(f"{folder}: not found (is --src the folder holding the MT_* folders?)")
        jpgs = sorted(folder.glob("*.jpg"))
        for jpg in jpgs:
            png = jpg.with_suffix(".png")
            if not png.is_file():
                raise SystemExit(f"{jpg}: no mask {png.name}")
            with Image.open(jpg) as im:
                im.load()  # decode fully: a truncated file or an LFS pointer fails here
                size = im.size
            with Image.open(png) as m:
                mask = np.asarray(m.convert("L"))
            if mask.shape != (size[1], size[0]):
                raise SystemExit(f"{png}: mask {mask.shape} but image {size[1]}x{size[0]}")
            name = f"{kind.lower()}__{jpg.stem}"
            shutil.copyfile(jpg, staging / "images" / f"{name}.jpg")
            binary = np.where(mask > threshold, 255, 0).astype(np.uint8)
            Image.fromarray(binary, mode="L").save(staging / "masks" / f"{name}.png")
            counts[kind] += 1
        if len(jpgs) != EXPECTED[kind]:
            print(f"warning: MT_{kind}: {len(jpgs)} images, the published set has {EXPECTED[kind]}")
    return counts


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    where = ap.add_mutually_exclusive_group(required=True)
    where.add_argument("--mirror", type=Path, help="bare git directory of the fetched repository")
    where.add_argument("--src", type=Path, help="folder holding MT_Blowhole/ ... MT_Free/")
    ap.add_argument("--out", type=Path, default=Path("/work/data/magnetic_tile"), help="destination")
    ap.add_argument("--threshold", type=int, default=127, help="mask value above which a pixel is defect")
    ap.add_argument("--skip-free", action="store_true", help="leave out the 952 defect-free MT_Free images")
    args = ap.parse_args(argv)

    out = args.out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.parent / f".{out.name}.staging"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
            if args.mirror:
                src, commit = Path(tmp), extract_mirror(args.mirror, Path(tmp))
            else:
                src, commit = args.src, "unknown (--src)"
            counts = stage(src, staging, args.threshold, args.skip_free)
        opts = ImportOptions(
            classes=["defect"], suffix="", masks=staging / "masks", mask_values="binary", images=None
        )
        report = import_annotations("mask-suffix", staging / "images", out, opts)
    finally:
        shutil.rmtree(staging, ignore_errors=True)

    lines = [
        "Magnetic Tile defect data set (Huang et al., IEEE CASE 2018), binary: background, defect.",
        f"Repository : {REPO_URL}",
        f"Commit     : {commit}" + ("" if commit == KNOWN_COMMIT else f" (documented: {KNOWN_COMMIT})"),
        "Licence    : none stated (README: welcome to use, cite the paper). Not to be redistributed or"
        " committed.",
        f"Conversion : scripts/fetch_magnetic_tile.py (steelkd repo), mask > {args.threshold} -> 1",
        "Images     : " + ", ".join(f"{k.lower()} {counts[k]}" for k in TYPES if counts[k]),
        f"Total      : {report.images} images, {report.images_with_regions} with defect pixels",
    ]
    (out / "SOURCE.txt").write_text("\n".join(lines) + "\n")
    print("\n".join(report.lines()))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
