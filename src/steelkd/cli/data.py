"""``steelkd data ...``: annotation import, synthetic data, data-set statistics and the train/test split."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from steelkd.cli._common import console, user_errors

data_app = typer.Typer(
    help="Data sets: annotation import, synthetic data, statistics, train/test split.", no_args_is_help=True
)


def _stats_table(stats: dict[str, Any], names: list[str]) -> Table:
    table = Table(title=f"{stats['images']} images, {stats['images_with_defects']} with defects")
    table.add_column("class")
    table.add_column("name")
    table.add_column("masks", justify="right")
    table.add_column("pixels", justify="right")
    table.add_column("pixel share", justify="right")
    for c, n_masks in stats["masks_per_class"].items():
        name = names[c] if c < len(names) else str(c)
        table.add_row(
            str(c),
            name,
            str(n_masks),
            str(stats["pixels_per_class"][c]),
            f"{100 * stats['pixel_share'][c]:.3f}%",
        )
    return table


@data_app.command()
def synth(
    out: Path = typer.Option(..., "--out", help="Destination folder (train_images/ and train.csv)."),
    n: int = typer.Option(200, "--n", help="Number of images."),
    seed: int = typer.Option(0, "--seed", help="Seed: the same seed gives the same bytes."),
    height: int = typer.Option(256, "--height", help="Image height in pixels."),
    width: int = typer.Option(1600, "--width", help="Image width in pixels."),
) -> None:
    """Generate synthetic steel images with four defect types in the Severstal layout."""
    from steelkd.data.severstal import severstal_stats
    from steelkd.data.synth import generate

    with user_errors():
        root = generate(out, n=n, seed=seed, height=height, width=width)
        stats = severstal_stats(root)
    per = ", ".join(f"{c}: {v}" for c, v in stats["masks_per_class"].items())
    console.print(
        f"wrote {stats['images']} images ({height}x{width}) and train.csv to {root}: "
        f"{stats['images_with_defects']} with defects; masks per class {per}"
    )


@data_app.command()
def stats(
    data: Path = typer.Option(..., "--data", help="Data set folder (or a Severstal train.csv)."),
    kind: str = typer.Option(
        "severstal", "--kind", help="severstal (train.csv + train_images/) or folder (flat or split)."
    ),
    split: list[str] = typer.Option(None, "--split", help="folder kind: sub-folders to count (default all)."),
    class_names: str = typer.Option(
        None, "--class-names", help="Comma-separated label names, background first (folder kind)."
    ),
) -> None:
    """Print images, images with defects, masks and pixel share per class, and overlapping pixels."""
    from steelkd.config import SEVERSTAL_CLASSES
    from steelkd.data.folder import folder_stats
    from steelkd.data.importers.common import CLASSES_FILENAME, read_classes_yaml
    from steelkd.data.severstal import severstal_stats

    with user_errors():
        names = [s.strip() for s in class_names.split(",")] if class_names else None
        if kind == "severstal":
            names = names or list(SEVERSTAL_CLASSES)
            st = severstal_stats(data, num_classes=len(names) - 1)
            where = st["csv"]
        elif kind == "folder":
            if names is None and (data / CLASSES_FILENAME).is_file():
                names = [c.name for c in read_classes_yaml(data / CLASSES_FILENAME)]
            st = folder_stats(data, splits=split or None, class_names=names)
            names = st["class_names"]
            layout = f"splits: {', '.join(st['splits'])}" if st["splits"] else "flat"
            where = f"{st['root']} ({layout})"
        else:
            raise ValueError(f"--kind: expected severstal or folder, got {kind!r}")
    console.print(f"data: {where}")
    console.print(_stats_table(st, names))
    ov = st["overlap"]
    console.print(
        f"overlap: {ov['pixels']} pixels in more than one class mask, in {ov['images']} images "
        f"({ov['multi_class_images']} images have several classes); rule: the lower class id wins"
    )


@data_app.command("split")
def split_cmd(
    data: Path = typer.Option(
        ..., "--data", help="Severstal layout (train.csv + train_images/) or flat folder (images/ + masks/)."
    ),
    out: Path = typer.Option(
        None, "--out", help="Split file (JSON) [default: DATA/steelkd_split.json, which training reads]."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the shuffle."),
    test_fraction: float = typer.Option(0.2, "--test-fraction", help="Share of images in the test split."),
    include_defect_free: bool = typer.Option(
        False,
        "--include-defect-free",
        help="Severstal: also split images without any mask (default: defect images only). "
        "A flat folder always splits all its images.",
    ),
) -> None:
    """Write a deterministic train/test split by image, stratified by the set of classes present."""
    from steelkd.data.build import SPLIT_FILENAME, folder_split
    from steelkd.data.folder import is_flat
    from steelkd.data.severstal import image_classes, list_images, read_train_csv
    from steelkd.data.split import make_split, save_split

    with user_errors():
        if data.is_dir() and is_flat(data):
            target = out or data / SPLIT_FILENAME
            split = folder_split(data, target, seed=seed, test_fraction=test_fraction, reuse=False)
        else:
            csv_path = data if data.is_file() else data / "train.csv"
            target = out or csv_path.parent / SPLIT_FILENAME
            if not csv_path.is_file():
                raise FileNotFoundError(
                    f"{data}: neither train.csv (Severstal layout) nor images/ + masks/ (flat folder)"
                )
            table = read_train_csv(csv_path)
            extra = list_images(csv_path.parent / "train_images") if include_defect_free else []
            split = make_split(image_classes(table, extra), seed=seed, test_fraction=test_fraction)
            save_split(split, target)
    console.print(
        f"wrote {target}: train {split['sizes']['train']} images, test {split['sizes']['test']} images "
        f"(seed {seed}, {len(split['groups'])} class-set groups)",
        highlight=False,
        soft_wrap=True,
    )


@data_app.command("import")
def import_cmd(
    fmt: str = typer.Option(..., "--format", help="cvat-mask, labelme, coco or mask-suffix."),
    src: Path = typer.Option(..., "--src", help="The export folder (the COCO JSON file for coco)."),
    out: Path = typer.Option(..., "--out", help="Destination folder (images/, masks/, classes.yaml)."),
    classes: str = typer.Option(
        None, "--classes", help="Comma-separated class names in id order 1..K (default: the labels found)."
    ),
    images: Path = typer.Option(None, "--images", help="Folder of the image files (default: per format)."),
    keep_unannotated: bool = typer.Option(
        False, "--keep-unannotated", help="Import images no annotation mentions, as defect-free."
    ),
    suffix: str = typer.Option("_GT", "--suffix", help="mask-suffix: mask of NAME.ext is NAME<suffix>.png."),
    masks: Path = typer.Option(None, "--masks", help="mask-suffix: folder of the masks (default: --src)."),
    mask_values: str = typer.Option(
        "auto", "--mask-values", help="mask-suffix: auto, binary (non-zero = one class) or index."
    ),
) -> None:
    """Import annotations into the flat folder layout (images/, masks/, classes.yaml) training reads."""
    from steelkd.data.importers import ImportOptions, import_annotations
    from steelkd.data.importers.common import parse_class_list

    with user_errors():
        opts = ImportOptions(
            classes=parse_class_list(classes),
            images=images,
            keep_unannotated=keep_unannotated,
            suffix=suffix,
            masks=masks,
            mask_values=mask_values,
        )
        report = import_annotations(fmt, src, out, opts)
    console.print(f"imported {fmt} from {src} into {out}", highlight=False, soft_wrap=True)
    for line in report.lines():
        console.print(f"  {line}", highlight=False, soft_wrap=True)


@data_app.command("export-reviewed")
def export_reviewed_cmd(
    db: Path = typer.Option(..., "--db", help="The inspection service's database (steelkd serve --db)."),
    out: Path = typer.Option(..., "--out", help="Destination folder (images/, masks/, classes.yaml)."),
    data_dir: Path = typer.Option(
        None, "--data-dir", help="The service's data folder (default: DB's stem + '-data' beside it)."
    ),
) -> None:
    """Write the reviewed inspections of the service as a flat folder data set that train/distill read."""
    from steelkd.serve.review import export_reviewed
    from steelkd.serve.store import Store, default_data_dir

    with user_errors():
        if not db.is_file():
            raise FileNotFoundError(f"{db}: inspection database not found")
        store = Store(db, data_dir or default_data_dir(db))
        report = export_reviewed(store, out)
    console.print(f"exported {report.images} reviewed image(s) ({report.regions} regions) from {db} into "
                  f"{out}", highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    """Add the ``data`` command group."""
    app.add_typer(data_app, name="data")
